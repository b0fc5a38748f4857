"""Training VidTok tokenizers: ``vidtok train`` and ``vidtok_cli.train.train(TrainConfig(...))``.

``data`` (clips from a folder or CSV, PyAV decoding, per-rank shards), ``losses`` (the official VidTok
loss: L1 + LPIPS with a learned output log-variance, PatchGAN with adaptive weight and LeCam, KL or FSQ
entropy/commitment), ``discriminator`` (2-D and 3-D PatchGAN) and ``trainer`` (the loop: AdamW with
warm-up and cosine decay, accumulation, clipping, EMA, bf16 autocast on CUDA, DDP under torchrun,
atomic checkpoints, exact resume, JSON-lines logs, validation PSNR/SSIM).

Importing this package is cheap; torch is loaded with the submodules.
"""

from typing import Any

__all__ = ["TrainConfig", "Trainer", "resume_config", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
