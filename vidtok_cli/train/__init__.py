"""Training VidTok tokenizers: ``vidtok train`` and ``vidtok_cli.train.train(TrainConfig(...))``.

``data`` (clips from a folder or CSV, PyAV decoding, per-rank shards), ``losses`` (the official VidTok
loss: L1 + LPIPS with a learned output log-variance, PatchGAN with adaptive weight and LeCam, KL or FSQ
entropy/commitment), ``discriminator`` (2-D and 3-D PatchGAN), ``config`` (``TrainConfig``: every
option with its flags and help, from which ``vidtok train`` is built; the learning-rate schedule),
``setup`` (the model a run starts from and its preparation), ``trivial_init`` (``--init trivial``),
``ema``, ``run_dir`` (run directories, checkpoints, saved state, model card), ``distributed`` (torchrun
process group and collectives), ``progress`` (terminal display), ``run_log`` (log.jsonl, TensorBoard) and ``trainer`` (the loop: AdamW with
warm-up and cosine decay, accumulation, clipping, EMA, bf16 autocast on CUDA, TF32 on CUDA during the run
only, DDP under torchrun, atomic checkpoints, exact resume, JSON-lines logs, validation PSNR/SSIM).

Importing this package is cheap; torch is loaded with the submodules.
"""

from typing import Any

__all__ = ["TrainConfig", "Trainer", "resume_config", "train"]

_MODULES = {"TrainConfig": "config", "Trainer": "trainer", "resume_config": "trainer", "train": "trainer"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
