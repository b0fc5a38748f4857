"""The options of a training run (``TrainConfig``: checks, automatic values, loss settings) and the
learning-rate schedule (``lr_factor``: linear warm-up, then cosine decay)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from . import data as datamod
from .losses import LossConfig

__all__ = ["TrainConfig", "lr_factor"]


@dataclass
class TrainConfig:
    """Every option of a training run (the CLI's options, one to one; see ``vidtok train --help``).

    Exactly one architecture source is needed: ``config`` (card TOML, official YAML, JSON or zoo name;
    random initialisation), ``model`` (zoo name, weights file or run directory; fine-tuning), ``init``
    (a run directory: weights plus its discriminator and output log-variance) or ``resume``.
    ``None`` for ``lr``, ``warmup``, ``kl_warmup`` and ``posterior_logvar_init`` means "chosen from the situation"
    (see :meth:`resolved`).
    """

    out: str | None = None
    data: str | None = None
    data_root: str | None = None
    val: str | None = None
    config: str | None = None
    model: str | None = None
    init: str | None = None
    resume: str | None = None
    name: str | None = None
    # clips
    size: int = 256
    resize: str | None = None
    frames: int = 17
    fps: float | None = 3.0
    val_fps: float | None = 8.0
    val_size: int | None = None
    val_frames: int | None = None
    val_videos: int = 16
    crop: str = "random"
    # optimisation
    steps: int = 50000
    batch_size: int = 2
    lr: float | None = None
    disc_lr: float | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int | None = None
    min_lr_ratio: float = 0.1
    grad_accum: int = 1
    clip_grad: float = 20.0
    ema: float = 0.999
    # loss
    perceptual_weight: float = 1.0
    lpips_weights: str | None = None
    disc_start: int = 10000
    disc_weight: float = 0.2
    disc_loss: str = "hinge"
    gen_loss: str = "non-saturating"
    disc_dim: str = "2d"
    disc_layers: int = 3
    lecam_weight: float = 0.005
    learn_logvar: bool = True
    kl_weight: float = 1e-6
    kl_warmup: int | None = None
    posterior_logvar_init: float | None = None
    posterior_logvar_max: float | None = None
    mean_steps: int = 0
    entropy_weight: float = 0.1
    entropy_annealing_steps: int = 2000
    entropy_annealing_factor: float = 3.0
    commitment_weight: float = 0.25
    freeze_encoder: bool = False
    freeze_decoder: bool = False
    grad_checkpointing: bool = False
    # bookkeeping
    save_every: int = 5000
    val_every: int = 2000
    log_every: int = 10
    stop_at: int | None = None
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    tensorboard: bool = False
    quiet: bool = False
    force: bool = False

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
        datamod.parse_resize(self.resize)
        if self.crop not in ("random", "center"):
            raise UsageError("--crop must be 'random' or 'center'")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UsageError("--precision must be auto, fp32 or bf16")
        if not 0 <= self.ema < 1:
            raise UsageError("--ema must be in [0, 1) (0 disables it)")
        if self.perceptual_weight < 0 or self.kl_weight < 0:
            raise UsageError("loss weights must be >= 0")
        try:
            self.loss_config()
        except ValueError as e:
            raise UsageError(str(e)) from e

    def resolved(self, from_scratch: bool, regularizer: str) -> TrainConfig:
        """A copy with the automatic values filled in.

        ``warmup``: min(1000, steps / 10). ``lr``: 1e-4 from scratch, 1e-5 (the official value) when
        fine-tuning. ``kl_warmup``: 2000 steps
        from scratch, 0 when fine-tuning. ``posterior_logvar_init``: -6 for a KL model from scratch (none
        otherwise).
        """
        c = dataclasses.replace(self)
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
