"""The options of a training run (``TrainConfig``: checks, automatic values, loss settings; each field that
is a ``vidtok train`` option carries its flags and help text, from which the command is built) and the
learning-rate schedule (``lr_factor``: linear warm-up, then cosine decay).

Importing this module loads no torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .data import parse_resize

if TYPE_CHECKING:
    from .losses import LossConfig

__all__ = ["TrainConfig", "cli_fields", "flags", "lr_factor", "option"]


# The official loss settings of each trainable family (VidTok configs; VidTwin's
# vidtwin_structure_7_7_8_dynamics_7_8.yaml: no LeCam, no cross-entropy generator loss).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "vidtok": {"perceptual_weight": 1.0, "disc_weight": 0.2, "kl_weight": 1e-6, "lecam_weight": 0.005,
               "gen_loss": "non-saturating"},
    "vidtwin": {"perceptual_weight": 0.05, "disc_weight": 0.05, "kl_weight": 1e-3, "lecam_weight": 0.0,
                "gen_loss": "hinge"},
}  # fmt: skip


def option(default: Any, help: str, *flags: str, choices: tuple[str, ...] | None = None) -> Any:
    """A `TrainConfig` field that is a ``vidtok train`` option.

    ``flags``: the option's names (long first, then a short alias; ``--on/--off`` for a switch pair);
    by default ``--field-name``. ``choices``: the accepted values, checked by :meth:`TrainConfig.validate`.
    """
    meta: dict[str, Any] = {"help": help}
    if flags:
        meta["flags"] = flags
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


def cli_fields() -> list[dataclasses.Field[Any]]:
    """The fields of `TrainConfig` that are ``vidtok train`` options, in the order ``--help`` lists them."""
    return [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]


def flags(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The command-line names of an option field (``--field-name`` unless its metadata says otherwise)."""
    return tuple(f.metadata.get("flags", ())) or ("--" + f.name.replace("_", "-"),)


@dataclass
class TrainConfig:
    """Every option of a training run (the fields made with :func:`option` are ``vidtok train``'s options,
    one to one; see ``vidtok train --help``).

    Exactly one architecture source is needed: ``config`` (card TOML, official YAML, JSON or zoo name;
    random initialisation), ``model`` (zoo name, weights file or run directory; fine-tuning), ``init``
    (a run directory: weights plus its discriminator and output log-variance) or ``resume``.
    ``None`` for ``lr``, ``warmup``, ``kl_warmup`` and ``posterior_logvar_init`` means "chosen from the situation"
    (see :meth:`resolved`).
    """

    data: str | None = option(None, "Folder of videos (recursive) or CSV with a 'videos' column.")
    out: str | None = option(None, "Run directory (checkpoints, log.jsonl).", "--out", "-o")
    config: str | None = option(
        None, "Architecture to train from scratch: card TOML, official YAML or zoo name.", "--config", "-c"
    )
    model: str | None = option(
        None, "Fine-tune these weights: zoo name, weights file or run directory.", "--model", "-m"
    )
    init: str | None = option(
        None,
        "Start from a run directory (weights, discriminator, log-variance), e.g. stage 2; or 'trivial' (with "
        "--config): weights that compute the trivial codec, a warm start for small models.",
    )
    resume: str | None = option(None, "Continue an interrupted run directory.")
    val: str | None = option(None, "Validation videos (folder or CSV): PSNR/SSIM.")
    data_root: str | None = option(None, "Folder the CSV paths are relative to.")
    name: str | None = option(None, "Model card name of the result.")
    # clips
    size: int = option(256, "Clip side: short side resized, then a square crop.")
    resize: str | None = option(
        None, "Short side before cropping: N, or MIN-MAX drawn per clip (default --size)."
    )
    frames: int = option(17, "Frames per clip (1 + 4k for causal 4x models).")
    fps: float | None = option(3.0, "Sampling frame rate of training clips (0: every frame).")
    val_fps: float | None = option(8.0, "Sampling frame rate of validation clips (0: every frame).")
    val_size: int | None = option(None, "Validation clip side (default --size).")
    val_frames: int | None = option(None, "Validation clip length (default --frames).")
    val_videos: int = option(16, "Validation videos used (one clip each).")
    crop: str = option("random", "random or center crop of training clips.", choices=("random", "center"))
    # optimisation
    steps: int = option(50000, "Optimiser steps in total.")
    batch_size: int = option(2, "Clips per step and process.", "--batch-size", "-b")
    lr: float | None = option(None, "Peak learning rate (default 1e-4 from scratch, 1e-5 fine-tuning).")
    disc_lr: float | None = option(None, "Discriminator learning rate (default --lr).")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    betas: tuple[float, float] = (0.9, 0.999)  # not a command-line option
    warmup: int | None = option(
        None, "Linear learning-rate warm-up steps, then cosine decay (default min(1000, steps/10))."
    )
    min_lr_ratio: float = option(0.1, "Final learning rate / peak.")
    grad_accum: int = option(1, "Micro-batches per optimiser step.")
    clip_grad: float = option(20.0, "Gradient-norm clipping (0: off).")
    ema: float = option(0.999, "EMA decay of the weights (0: off).")
    # loss
    perceptual_weight: float | None = option(None, "LPIPS weight (0: no LPIPS; default 1, VidTwin 0.05).")
    lpips_weights: str | None = option(None, "Folder with the LPIPS VGG16 weights.")
    disc_start: int = option(10000, "Step at which the GAN loss starts.")
    disc_weight: float | None = option(
        None, "GAN weight (times the adaptive weight; default 0.2, VidTwin 0.05)."
    )
    disc_loss: str = option("hinge", "Discriminator loss: hinge or vanilla.", choices=("hinge", "vanilla"))
    gen_loss: str | None = option(
        None,
        "Generator GAN loss: non-saturating or hinge (default non-saturating, VidTwin hinge).",
        choices=("non-saturating", "hinge"),
    )
    disc_dim: str = option("2d", "PatchGAN on frames (2d) or clips (3d).", choices=("2d", "3d"))
    disc_layers: int = option(3, "PatchGAN depth.")
    lecam_weight: float | None = option(None, "LeCam regularisation weight (default 0.005, VidTwin 0).")
    learn_logvar: bool = option(True, "Learn the output log-variance.", "--learn-logvar/--fixed-logvar")
    kl_weight: float | None = option(None, "KL weight (KL models; default 1e-6, VidTwin 1e-3).")
    kl_warmup: int | None = option(None, "KL warm-up steps (default 2000 from scratch).")
    posterior_logvar_init: float | None = option(
        None, "Initial encoder log-variance (default -6 for KL from scratch)."
    )
    posterior_logvar_max: float | None = option(
        None, "Clamp the encoder log-variance to at most this in training."
    )
    mean_steps: int = option(0, "Decode the posterior mean (no sampling, no KL) first.")
    entropy_weight: float = option(0.1, "FSQ entropy weight.")
    entropy_annealing_steps: int = option(2000, "FSQ entropy annealing.")
    entropy_annealing_factor: float = option(3.0, "Initial entropy factor.")
    commitment_weight: float = option(0.25, "FSQ commitment weight.")
    freeze_encoder: bool = option(False, "Train the decoder only (tokens unchanged).")
    freeze_decoder: bool = option(False, "Train the encoder only.")
    grad_checkpointing: bool = option(False, "Recompute activations (less memory).")
    # bookkeeping
    save_every: int = option(5000, "Checkpoint every N steps.")
    val_every: int = option(2000, "Validate every N steps.")
    log_every: int = option(10, "Log every N steps.")
    stop_at: int | None = option(None, "Stop (with a checkpoint) at this step; resume later.")
    workers: int = option(4, "DataLoader worker processes per training process.")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu, cuda ...")
    precision: str = option(
        "auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16.", choices=("auto", "fp32", "bf16")
    )
    tensorboard: bool = option(False, "Also write TensorBoard logs.")
    force: bool = option(False, "Start over in a run directory that holds a run.", "--force", "-f")
    quiet: bool = option(False, "No progress output or summary.", "--quiet", "-q")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys ignored, so older runs still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)

    def validate(self) -> None:
        """Raises UsageError for impossible combinations."""
        sources = [n for n in ("config", "model", "init") if getattr(self, n)]
        if not self.resume and not sources:
            raise UsageError(
                "say what to train: --config (from scratch), --model / --init (fine-tune) or --resume"
            )
        if self.model and self.init:
            raise UsageError("pass either --model or --init, not both")
        if not self.out and not self.resume:
            raise UsageError("--out is required (the run directory)")
        if not self.data:
            raise UsageError("--data is required (a folder of videos or a CSV with a 'videos' column)")
        for name in ("steps", "batch_size", "grad_accum", "frames", "save_every", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
        if self.freeze_encoder and self.freeze_decoder:
            raise UsageError("--freeze-encoder and --freeze-decoder together leave nothing to train")
        parse_resize(self.resize)
        for f in cli_fields():
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in (*choices, None):
                raise UsageError(f"{flags(f)[0]} must be {', '.join(choices[:-1])} or {choices[-1]}")
        if not 0 <= self.ema < 1:
            raise UsageError("--ema must be in [0, 1) (0 disables it)")
        if any(
            (w or 0) < 0
            for w in (self.perceptual_weight, self.kl_weight, self.disc_weight, self.lecam_weight)
        ):
            raise UsageError("loss weights must be >= 0")
        try:
            self.resolved(False, "kl").loss_config()
        except ValueError as e:
            raise UsageError(str(e)) from e

    def resolved(self, from_scratch: bool, regularizer: str, family: str = "vidtok") -> TrainConfig:
        """A copy with the automatic values filled in.

        The loss weights left unset are the official ones of the model ``family`` (`LOSS_DEFAULTS`).
        ``warmup``: min(1000, steps / 10). ``lr``: 1e-4 from scratch, 1e-5 (the official value) when
        fine-tuning. ``kl_warmup``: 2000 steps
        from scratch, 0 when fine-tuning. ``posterior_logvar_init``: -6 for a KL model from scratch (none
        otherwise).
        """
        c = dataclasses.replace(self)
        for name, value in LOSS_DEFAULTS.get(family, LOSS_DEFAULTS["vidtok"]).items():
            if getattr(c, name) is None:
                setattr(c, name, value)
        if c.warmup is None:
            c.warmup = min(1000, c.steps // 10)
        if c.lr is None:
            c.lr = 1e-4 if from_scratch else 1e-5
        if c.disc_lr is None:
            c.disc_lr = c.lr
        if c.kl_warmup is None:
            c.kl_warmup = 2000 if from_scratch and regularizer == "kl" else 0
        if c.posterior_logvar_init is None and from_scratch and regularizer == "kl":
            c.posterior_logvar_init = -6.0
        return c

    def loss_config(self) -> LossConfig:
        """The loss settings of this run."""
        from .losses import LossConfig

        return LossConfig(
            perceptual_weight=self.perceptual_weight,
            disc_start=self.disc_start,
            disc_weight=self.disc_weight,
            disc_dim=self.disc_dim,
            disc_layers=self.disc_layers,
            disc_loss=self.disc_loss,
            gen_loss=self.gen_loss,
            lecam_weight=self.lecam_weight,
            kl_weight=self.kl_weight,
            kl_warmup=self.kl_warmup or 0,
            kl_start=self.mean_steps,
            entropy_weight=self.entropy_weight,
            entropy_annealing_steps=self.entropy_annealing_steps,
            entropy_annealing_factor=self.entropy_annealing_factor,
            commitment_weight=self.commitment_weight,
        )


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier at 0-based ``step``: linear warm-up to 1, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
