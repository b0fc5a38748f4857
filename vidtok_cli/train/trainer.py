"""The VidTok training loop: fine-tuning and training from scratch, one process or many under torchrun.

``train(TrainConfig(...))`` runs a whole training; ``vidtok train`` is a thin wrapper around it.

What one step does (``grad_accum`` micro-batches, then one optimiser step each):

1. A batch of clips (B, 3, T, S, S) in [-1, 1] from ``data.VideoClipDataset`` (PyAV decoding in
   DataLoader workers, per-rank shards, deterministic order and crops).
2. Autoencoder forward (bf16 autocast on CUDA, float32 on CPU): encoder -> posterior sample (KL) or
   FSQ codes -> decoder; ``losses.VidTokLoss.generator_loss``; backward.
3. From ``disc_start`` on, the discriminator loss on (x, detached reconstruction); backward.
4. Gradient clipping (``clip_grad``, official 20), AdamW steps with linear warm-up then cosine decay,
   EMA update of the weights.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised from the
environment (NCCL on GPU, gloo on CPU); the autoencoder and the discriminator are wrapped in
``DistributedDataParallel``; rank 0 alone logs and writes checkpoints; the end record of ``log.jsonl``
holds a hash of every rank's final weights.

Run directory (``out``)::

    log.jsonl            one JSON object per line: loss terms, lr, grad norms, throughput, validation
    train_config.json    the options of the run
    step_000100/         every ``save_every`` steps, written atomically (temporary folder + rename)
      model.safetensors      weights + the metadata ``vidtok convert`` writes (config, card)
      model_ema.safetensors  EMA weights (when ``ema`` > 0), same metadata
      card.toml              a model card (``zoo.card_from_toml`` reads it)
      state.pt               optimisers, discriminator, loss state, step; torch.load(weights_only=True)
    final/               the same at the end; ``load_model(out)`` and ``vidtok encode --model out`` use it

Resuming (``resume``) restores everything above and continues the data stream where it stopped; on
CPU the losses are then bit-identical to an uninterrupted run (random numbers are derived from
``(seed, step, rank)``, not from a global stream).

The KL trap: with Adam, even a tiny KL weight moves the encoder's log-variance towards 0 at full speed
(Adam normalises gradient size), and a latent drowned in unit noise teaches the decoder to ignore it.
Defaults for a KL model trained from scratch: the log-variance output starts at
``posterior_logvar_init`` (-6: noise std 0.05) and the KL weight ramps up over ``kl_warmup`` steps;
``mean_steps`` (train on the posterior mean first) and ``posterior_logvar_max`` (clamp) are there too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import checkpoints, zoo
from .._version import __version__
from ..arch.config import VidTokConfig
from ..arch.layers import FrameAttention, ResnetBlock2D, ResnetBlock3D, StreamState, TemporalResBlock
from ..arch.regularizers import FSQ
from ..arch.vidtok import VidTokModel, build_model
from ..errors import CheckpointError, ConfigError, UsageError, VidtokError, WeightsUnavailableError
from . import data as datamod
from .losses import LossConfig, VidTokLoss
from .trivial_init import trivial_init_

TRIVIAL_INIT = "trivial"  # --init keyword: start from weights that compute the trivial codec

__all__ = [
    "EMA",
    "TrainConfig",
    "Trainer",
    "enable_gradient_checkpointing",
    "find_checkpoint",
    "lr_factor",
    "train",
]

STATE_FORMAT = 1
LOG_NAME = "log.jsonl"


# ============================================================================ configuration


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


# ============================================================================ model helpers


def enable_gradient_checkpointing(model: VidTokModel) -> int:
    """Recompute every residual/attention block in the backward pass instead of storing activations.

    Valid for whole-clip training (each block then starts with empty causal caches, so running it on a
    fresh ``StreamState`` gives the same numbers). Returns the number of wrapped blocks.
    """
    from torch.utils.checkpoint import checkpoint

    n = 0
    for m in model.modules():
        if getattr(m, "_vidtok_ckpt", False):
            continue
        if isinstance(m, (ResnetBlock2D, FrameAttention)):
            plain = m.forward

            def fwd(x: Tensor, _f: Callable[..., Tensor] = plain) -> Tensor:
                return checkpoint(_f, x, use_reentrant=False)

        elif isinstance(m, (TemporalResBlock, ResnetBlock3D)):
            plain = m.forward

            def fwd(x: Tensor, state: StreamState, _f: Callable[..., Tensor] = plain) -> Tensor:  # type: ignore[misc]
                final = state.final
                return checkpoint(lambda y: _f(y, StreamState(final=final)), x, use_reentrant=False)

        else:
            continue
        m.forward = fwd  # type: ignore[method-assign]
        m._vidtok_ckpt = True  # type: ignore[attr-defined]
        n += 1
    return n


class _Autoencoder(nn.Module):
    """What DDP wraps on the generator side: the VidTok model plus the learned output log-variance."""

    def __init__(self, model: VidTokModel, logvar_init: float = 0.0, learn_logvar: bool = True):
        super().__init__()
        self.model = model
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)), requires_grad=learn_logvar)

    def forward(
        self,
        x: Tensor,
        sample: bool,
        noise: torch.Generator | None,
        logvar_max: float | None,
        frozen_encoder: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, encoder moments, latent fed to the decoder)."""
        m = self.model
        with torch.no_grad() if frozen_encoder else contextlib.nullcontext():
            enc = m.encode(x)
        moments = enc.moments
        if isinstance(m.regularization, FSQ):
            latent = enc.latent
        else:
            mean, logvar = moments.chunk(2, dim=1)
            hi = 20.0 if logvar_max is None else min(20.0, logvar_max)
            logvar = logvar.clamp(-30.0, hi)
            latent = mean
            if sample:
                eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=torch.float32)
                latent = mean + torch.exp(0.5 * logvar) * eps.to(mean.dtype)
            moments = torch.cat([mean, logvar], dim=1)
        return m.decode(latent), moments, latent


def _last_layer(model: VidTokModel) -> Tensor:
    conv = model.decoder.conv_out
    return conv.conv.weight if hasattr(conv, "conv") else conv.weight


def _kl(moments: Tensor) -> Tensor:
    mean, logvar = moments.float().chunk(2, dim=1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.sum() / kl.shape[0]


class EMA:
    """Exponential moving average of the trainable weights (official LitEma: decay warm-up
    ``min(decay, (1 + n) / (10 + n))``). Frozen weights are the model's own."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        params = dict(model.named_parameters())
        cur = [params[n].detach().float() for n in self.names]
        torch._foreach_lerp_(self.shadow, cur, 1.0 - d)

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state dict with the averaged weights in place of the trainable ones."""
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        for n, s in zip(self.names, self.shadow, strict=True):
            sd[n] = s.to(sd[n].dtype)
        return sd

    def load(self, state: dict[str, Tensor], num_updates: int) -> None:
        for i, n in enumerate(self.names):
            if n in state:
                self.shadow[i].copy_(state[n].float())
        self.num_updates = num_updates

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Temporarily put the EMA weights into ``model``."""
        params = dict(model.named_parameters())
        saved = [params[n].detach().clone() for n in self.names]
        with torch.no_grad():
            for n, s in zip(self.names, self.shadow, strict=True):
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, s in zip(self.names, saved, strict=True):
                    params[n].copy_(s)


# ============================================================================ run directories


def _step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def find_checkpoint(run: str | os.PathLike[str]) -> Path:
    """The newest checkpoint directory of a run (``final/`` or the highest ``step_*``), or the directory
    itself when it is a checkpoint. Raises CheckpointError when there is none."""
    p = Path(run).expanduser()
    if (p / "state.pt").is_file() and (p / "model.safetensors").is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory")
    best: tuple[int, Path] | None = None
    for d in [p / "final", *sorted(p.glob("step_*"))]:
        if not ((d / "state.pt").is_file() and (d / "model.safetensors").is_file()):
            continue
        meta = checkpoints.read_safetensors_metadata(d / "model.safetensors")
        step = int(meta.get("vidtok.train.step", "-1"))
        if best is None or step > best[0]:
            best = (step, d)
    if best is None:
        raise CheckpointError(f"{p}: no checkpoint (step_*/ or final/ with model.safetensors and state.pt)")
    return best[1]


def _load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: cannot read the training state ({str(e).splitlines()[0][:200]})"
        ) from e


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and not math.isfinite(v)) else '"nan"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(i) for i in v) + "]"
    return json.dumps(str(v))


def _card_toml(card: dict[str, Any], arch: dict[str, Any], metrics: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in card.items() if v is not None]
    lines += ["", "[architecture]"] + [f"{k} = {_toml_value(v)}" for k, v in arch.items()]
    if metrics:
        lines += ["", "[metrics]"] + [f"{k} = {_toml_value(v)}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def _card_name(base: str | None, out: Path) -> str:
    run = zoo.normalize_name(out.resolve().name) or "run"
    run = "".join(ch for ch in run if ch.isalnum() or ch in "-.") or "run"
    name = f"{zoo.normalize_name(base)}-{run}" if base else f"vidtok-{run}"
    name = name.lstrip("-.") or "vidtok-run"
    try:
        if zoo.find_card(name) is not None:
            name += "-run"
    except VidtokError:
        pass
    return name


# ============================================================================ distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        owns = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, owns_group=owns)


# ============================================================================ the trainer


class Trainer:
    """One training run (see the module doc). ``Trainer(cfg).run()`` returns a summary dict.

    ``perceptual``: a perceptual-loss callable ``(x, y) -> (N,)`` on frames in [-1, 1] to use instead of
    loading the bench's VGG LPIPS (tests inject a small one).
    """

    def __init__(self, cfg: TrainConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None):
        cfg.validate()
        self.device = self._device(cfg.device)
        self.dist = _init_distributed(self.device.type)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.autocast_dtype = (
            torch.bfloat16 if self.device.type == "cuda" and cfg.precision in ("auto", "bf16") else None
        )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        # ---------------------------------------------------------------- where the run lives
        self.resume_dir: Path | None = find_checkpoint(cfg.resume) if cfg.resume else None
        self.out = Path(cfg.out or cfg.resume or ".").expanduser()
        self._check_out(cfg)
        files = datamod.find_videos(cfg.data, cfg.data_root)  # type: ignore[arg-type]
        self.val_files = datamod.find_videos(cfg.val, cfg.data_root) if cfg.val else []

        # ---------------------------------------------------------------- model
        resume_state: dict[str, Any] | None = None
        init_state: dict[str, Any] | None = None
        self.base_name: str | None = None
        if self.resume_dir is not None:
            model, arch = self._load_weights(self.resume_dir / "model.safetensors", None)
            resume_state = _load_state(self.resume_dir / "state.pt")
            self.base_name = resume_state.get("base_name")
            from_scratch = bool(resume_state.get("from_scratch", False))
        else:
            explicit = self._arch_from_config(cfg.config) if cfg.config else None
            trivial = cfg.init == TRIVIAL_INIT and not Path(cfg.init).exists()
            ref = None if trivial else cfg.init or cfg.model
            if ref is not None:
                model, arch, init_state = self._init_from(ref, explicit)
                from_scratch = False
            else:
                if explicit is None:  # only --init trivial gets here without --config
                    raise UsageError("--init trivial needs --config (the architecture to initialise)")
                arch = explicit
                torch.manual_seed(cfg.seed)
                model = build_model(arch)
                from_scratch = not trivial
                if trivial:
                    logvar = -10.0 if cfg.posterior_logvar_init is None else cfg.posterior_logvar_init
                    try:
                        trivial_init_(model, logvar=logvar)
                    except ValueError as e:
                        raise ConfigError(str(e)) from None
                    self.base_name = "the trivial codec"
        self.from_scratch = from_scratch
        self.arch: VidTokConfig = arch
        self.cfg = cfg = cfg.resolved(from_scratch, arch.regularizer)
        if (
            self.resume_dir is None
            and from_scratch
            and arch.regularizer == "kl"
            and cfg.posterior_logvar_init is not None
        ):
            self._init_posterior_logvar(model, cfg.posterior_logvar_init)
        self._check_clip_length(cfg.frames, "--frames")
        if cfg.val_frames is not None:
            self._check_clip_length(cfg.val_frames, "--val-frames")
        model = model.to(self.device, torch.float32).train()
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)
        if cfg.freeze_decoder:
            model.decoder.requires_grad_(False)
        if cfg.grad_checkpointing:
            enable_gradient_checkpointing(model)
        self.model = model
        self.ae = _Autoencoder(model, 0.0, cfg.learn_logvar).to(self.device)
        if init_state is not None and "logvar" in init_state:
            with torch.no_grad():
                self.ae.logvar.copy_(init_state["logvar"].reshape(()))

        # ---------------------------------------------------------------- loss
        if cfg.perceptual_weight > 0 and perceptual is None:
            perceptual = self._load_lpips(cfg)
        self.loss = VidTokLoss(cfg.loss_config(), perceptual, arch.in_channels).to(self.device)
        if self.dist.active:
            self.loss.all_reduce_mean = self._all_reduce_mean
        if init_state is not None and "discriminator" in init_state:
            try:
                self.loss.discriminator.load_state_dict(init_state["discriminator"])
            except RuntimeError:
                self._note("the initial run's discriminator does not fit this one; starting a fresh one")

        # ---------------------------------------------------------------- DDP
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ae_ddp: nn.Module = DDP(self.ae, device_ids=ids)
            self.disc_ddp: nn.Module = DDP(self.loss.discriminator, device_ids=ids)
        else:
            self.ae_ddp = self.ae
            self.disc_ddp = self.loss.discriminator

        # ---------------------------------------------------------------- optimisers, EMA
        self.ae_params = [p for p in self.ae.parameters() if p.requires_grad]
        self.disc_params = list(self.loss.discriminator.parameters())
        self.opt_g = torch.optim.AdamW(
            self.ae_params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.opt_d = torch.optim.AdamW(
            self.disc_params, lr=cfg.disc_lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.ema = EMA(model, cfg.ema) if cfg.ema > 0 else None

        # ---------------------------------------------------------------- data
        fps = cfg.fps if cfg.fps else None
        spec = datamod.ClipSpec(
            cfg.frames,
            fps,
            cfg.size,
            random_crop=cfg.crop == "random",
            resize=datamod.parse_resize(cfg.resize),
        )
        self.dataset = datamod.VideoClipDataset(files, spec)
        self.sampler = datamod.ClipSampler(len(files), cfg.seed, self.dist.rank, self.dist.world)
        self._val_cache: list[Tensor] | None = None

        # ---------------------------------------------------------------- state
        self.step = 0
        self.skipped: dict[str, str] = {}
        self.seen_clips = 0
        if resume_state is not None:
            self._restore(resume_state)
        self.sampler.start_at(self.step * cfg.grad_accum * cfg.batch_size)
        self._tb: Any = None
        self._log_fh: Any = None

    # ------------------------------------------------------------------ setup helpers
    @staticmethod
    def _device(name: str) -> torch.device:
        from ..loading import resolve_device

        return resolve_device(name)

    def _note(self, msg: str) -> None:
        cfg = getattr(self, "cfg", None)
        if self.dist.main and not (cfg is not None and cfg.quiet):
            print(f"vidtok train: {msg}", file=sys.stderr)

    def _check_out(self, cfg: TrainConfig) -> None:
        if self.resume_dir is not None:
            return
        existing = [self.out / LOG_NAME, self.out / "final", *self.out.glob("step_*")]
        found = [p for p in existing if p.exists()]
        if found and not cfg.force:
            raise UsageError(
                f"{self.out} already holds a training run; continue it with --resume {self.out}, "
                "or pass --force to start over"
            )
        if found and cfg.force and self.dist.main:
            for p in found:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        if self.dist.active:
            self._barrier()

    def _check_clip_length(self, frames: int, option: str) -> None:
        a = self.arch
        if a.causal and (frames - 1) % a.time_downsample_factor:
            raise UsageError(
                f"{option} {frames}: a causal model with temporal factor {a.time_downsample_factor} takes "
                f"1 + k*{a.time_downsample_factor} frames (e.g. {1 + 4 * a.time_downsample_factor})"
            )
        if not a.causal and frames % a.time_downsample_factor:
            raise UsageError(
                f"{option} {frames}: a non-causal model takes multiples of {a.time_downsample_factor} frames"
            )

    def _arch_from_config(self, config: str) -> VidTokConfig:
        """Architecture from a card TOML (weights not needed), an official YAML/JSON or a zoo name."""
        from ..loading import resolve_config

        p = Path(config).expanduser()
        if p.is_file() and p.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            try:
                data = tomllib.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"{p}: cannot read the card: {str(e).splitlines()[0]}") from e
            arch = data.get("architecture")
            if not isinstance(arch, dict):
                raise ConfigError(f"{p}: the card has no [architecture] table")
            try:
                cfg = VidTokConfig.from_dict(dict(arch))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{p}: [architecture]: {e}") from e
            self.base_name = str(data.get("name") or p.stem)
            return cfg
        cfg, card = resolve_config(config)
        assert cfg is not None
        self.base_name = card.name if card is not None else p.stem
        return cfg

    def _load_weights(self, path: Path, explicit: VidTokConfig | None) -> tuple[VidTokModel, VidTokConfig]:
        from ..loading import load_model

        model = load_model(path, config=explicit, device="cpu", dtype="float32")
        return model, model.cfg

    def _init_from(
        self, ref: str, explicit: VidTokConfig | None
    ) -> tuple[VidTokModel, VidTokConfig, dict[str, Any] | None]:
        """Initial weights from a zoo name, a weights file or a run directory (plus, for a run, its
        discriminator and output log-variance)."""
        from ..loading import load_model

        p = Path(ref).expanduser()
        state: dict[str, Any] | None = None
        if p.is_dir():
            ckpt = find_checkpoint(p) if not (p / "model.safetensors").is_file() else p
            model, arch = self._load_weights(ckpt / "model.safetensors", explicit)
            if (ckpt / "state.pt").is_file():
                state = _load_state(ckpt / "state.pt")
                self.base_name = state.get("base_name")
        else:
            model = load_model(ref, config=explicit, device="cpu", dtype="float32")
            arch = model.cfg
            self.base_name = (model.card or {}).get("name")
        if explicit is not None and explicit != arch:
            raise ConfigError(f"--config describes another architecture than the weights of {ref}")
        for prm in model.parameters():
            prm.requires_grad_(True)
        return model, arch, state

    def _init_posterior_logvar(self, model: VidTokModel, value: float) -> None:
        conv = model.encoder.conv_out
        conv = conv.conv if hasattr(conv, "conv") else conv
        with torch.no_grad():
            conv.bias[self.arch.z_channels :].fill_(value)

    def _load_lpips(self, cfg: TrainConfig) -> Callable[[Tensor, Tensor], Tensor]:
        hint = "or pass --perceptual-weight 0 to train without the perceptual loss"
        try:
            from ..metrics.lpips import load_lpips  # type: ignore[import-not-found]
        except ImportError as e:
            raise WeightsUnavailableError(
                f"the LPIPS perceptual loss is not available in this installation (vidtok_cli.metrics.lpips); {hint}"
            ) from e
        try:
            lp = load_lpips(weights_dir=cfg.lpips_weights, device=self.device)
        except WeightsUnavailableError as e:
            raise WeightsUnavailableError(f"{e}; {hint}") from e
        lp.eval()
        lp.requires_grad_(False)
        return lp

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.resume_dir}: unknown training-state format {state.get('format')!r}")
        assert self.resume_dir is not None
        self.step = int(state["step"])
        self.seen_clips = int(state.get("seen_clips", 0))
        self.skipped = dict(state.get("skipped", {}))
        try:
            self.opt_g.load_state_dict(state["optimizer_g"])
            self.opt_d.load_state_dict(state["optimizer_d"])
            self.loss.discriminator.load_state_dict(state["discriminator"])
        except (ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(
                f"{self.resume_dir}: the saved optimiser/discriminator state does not fit this run "
                f"({str(e).splitlines()[0][:160]}); resume with the same --freeze-*/--disc-* options"
            ) from e
        with torch.no_grad():
            self.ae.logvar.copy_(state["logvar"].reshape(()))
            self.loss.lecam_ema_real.copy_(state["lecam"]["real"])
            self.loss.lecam_ema_fake.copy_(state["lecam"]["fake"])
        ema_file = self.resume_dir / "model_ema.safetensors"
        if self.ema is not None and ema_file.is_file():
            sd, _ = checkpoints.read_state_dict(ema_file)
            self.ema.load(sd, int(state.get("ema_updates", 0)))
        if int(state.get("world_size", 1)) != self.dist.world:
            self._note(
                f"resuming a run of {state.get('world_size')} processes with {self.dist.world}: "
                "the data order differs from an uninterrupted run"
            )

    # ------------------------------------------------------------------ distributed helpers
    def _barrier(self) -> None:
        if self.dist.active:
            import torch.distributed as dist

            dist.barrier()

    def _all_reduce_mean(self, t: Tensor) -> Tensor:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
        return t / self.dist.world

    def _all_reduce_sum(self, t: Tensor) -> Tensor:
        if not self.dist.active:
            return t
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
        return t

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ one step
    def _train_step(self, batches: Iterator[dict[str, Any]], step: int) -> tuple[dict[str, Tensor], float]:
        cfg, arch = self.cfg, self.arch
        accum = cfg.grad_accum
        disc_on = self.loss.disc_active(step)
        sample = arch.regularizer == "kl" and step >= cfg.mean_steps
        last_layer = _last_layer(self.model)
        terms: dict[str, Tensor] = {}
        wait = 0.0
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t0
            for f in batch["failed"]:
                path, _, why = f.partition(": ")
                self._new_skips.setdefault(path, why)
            x = batch["video"].to(self.device, non_blocking=True)
            self.seen_clips += x.shape[0] * self.dist.world
            seed = datamod.sample_seed(cfg.seed, 0xA11CE, step, micro, self.dist.rank)
            torch.manual_seed(seed)
            self._noise.manual_seed(seed)
            sync = micro == accum - 1 or not self.dist.active
            self.loss.discriminator.requires_grad_(False)
            with contextlib.nullcontext() if sync else self.ae_ddp.no_sync():  # type: ignore[operator]
                with self._autocast():
                    xrec, moments, _ = self.ae_ddp(
                        x, sample, self._noise, cfg.posterior_logvar_max, cfg.freeze_encoder
                    )
                    if arch.regularizer == "kl":
                        reg = _kl(moments)
                    else:  # float32 even under autocast, as official (logits are scaled by 200)
                        with torch.autocast(self.device.type, enabled=False):
                            reg = self.model.regularization.aux_loss(
                                moments.float(), self.loss.entropy_weight_at(step), cfg.commitment_weight
                            )
                    loss_g, logs = self.loss.generator_loss(
                        x, xrec, self.ae.logvar, step, arch.regularizer, reg, last_layer
                    )
                (loss_g / accum).backward()
            self.loss.discriminator.requires_grad_(True)
            if disc_on:
                with contextlib.nullcontext() if sync else self.disc_ddp.no_sync():  # type: ignore[operator]
                    with self._autocast():
                        loss_d, dlogs = self.loss.discriminator_loss(x, xrec, step, self.disc_ddp)
                    (loss_d / accum).backward()
                logs.update(dlogs)
            if arch.regularizer == "fsq":
                logs["entropy_weight"] = torch.tensor(self.loss.entropy_weight_at(step))
            for k, v in logs.items():
                v = v.detach().float().to(self.device)
                terms[k] = terms[k] + v / accum if k in terms else v / accum
        max_norm = cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
        terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.ae_params, max_norm).detach().float()
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        if disc_on:
            terms["disc_grad_norm"] = (
                torch.nn.utils.clip_grad_norm_(self.disc_params, max_norm).detach().float()
            )
            self.opt_d.step()
            self.opt_d.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return terms, wait

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        log = self.out / LOG_NAME
        if self.resume_dir is not None and log.is_file():
            # drop what the interrupted run logged after the checkpoint we resume from
            kept = []
            for line in log.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "end" or int(rec.get("step", 0)) > self.step:
                    continue
                kept.append(line)
            tmp = log.with_name(f".{LOG_NAME}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text("".join(k + "\n" for k in kept))
            os.replace(tmp, log)
        self._log_fh = open(log, "a", buffering=1)  # noqa: SIM115 - closed in run()
        (self.out / "train_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise UsageError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from e
            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)

    def _write(self, rec: dict[str, Any]) -> None:
        if self._log_fh is not None:
            self._log_fh.write(json.dumps(rec) + "\n")
        if self._tb is not None and "step" in rec:
            prefix = "val/" if rec.get("event") == "val" else "train/"
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(prefix + k, v, rec["step"])

    def _flush_train_log(
        self, acc: dict[str, list[Tensor]], n_steps: int, elapsed: float, wait: float
    ) -> dict[str, Any]:
        keys = sorted(acc)
        vals = torch.stack([torch.stack(acc[k]).mean() for k in keys]) if keys else torch.zeros(0)
        if self.dist.active and keys:
            vals = self._all_reduce_mean(vals.to(self.device))
        rec: dict[str, Any] = {"step": self.step}
        rec["lr"] = self.opt_g.param_groups[0]["lr"]
        rec.update({k: float(v) for k, v in zip(keys, vals.tolist(), strict=True)})
        clips = n_steps * self.cfg.batch_size * self.cfg.grad_accum * self.dist.world
        rec["steps_per_s"] = n_steps / elapsed if elapsed > 0 else 0.0
        rec["clips_per_s"] = clips / elapsed if elapsed > 0 else 0.0
        rec["frames_per_s"] = rec["clips_per_s"] * self.cfg.frames
        rec["data_wait"] = wait / elapsed if elapsed > 0 else 0.0
        new = self._gather_skips()
        for path, why in new.items():
            if path not in self.skipped:
                self.skipped[path] = why
                self._write({"event": "skipped", "step": self.step, "path": path, "reason": why})
        rec["skipped_videos"] = len(self.skipped)
        rec["time"] = time.time()
        self._write(rec)
        return rec

    def _gather_skips(self) -> dict[str, str]:
        new, self._new_skips = self._new_skips, {}
        if not self.dist.active:
            return new
        import torch.distributed as dist

        allnew: list[dict[str, str]] = [{} for _ in range(self.dist.world)]
        dist.all_gather_object(allnew, new)
        merged: dict[str, str] = {}
        for d in allnew:
            merged.update(d)
        return merged

    # ------------------------------------------------------------------ validation
    def _val_clips(self) -> list[Tensor]:
        if self._val_cache is not None:
            return self._val_cache
        cfg = self.cfg
        spec = datamod.ClipSpec(
            cfg.val_frames or cfg.frames,
            cfg.val_fps or None,
            cfg.val_size or cfg.size,
            random_crop=False,
            resize=datamod.parse_resize(cfg.resize) if not cfg.val_size else None,
        )
        clips = []
        for index, seed in datamod.validation_keys(
            len(self.val_files), self.dist.rank, self.dist.world, cfg.val_videos
        ):
            try:
                clips.append(datamod.read_clip(self.val_files[index], spec, random.Random(seed)))
            except Exception as e:  # noqa: BLE001 - a bad validation video is skipped and reported
                self._new_skips.setdefault(str(self.val_files[index]), str(e).splitlines()[0][:300])
        self._val_cache = clips
        return clips

    @torch.no_grad()
    def _eval(self) -> Tensor:
        from ..metrics.psnr import psnr
        from ..metrics.ssim import ssim

        sums = torch.zeros(3, dtype=torch.float64)
        for clip in self._val_clips():
            x = clip[None].to(self.device)
            with self._autocast():
                y = self.model.decode(self.model.encode(x).latent)
            x01 = (x.float()[0].transpose(0, 1) + 1) / 2  # (T, 3, H, W) in [0, 1]
            y01 = (y.float()[0].transpose(0, 1).clamp(-1, 1) + 1) / 2
            p = psnr(x01, y01)
            try:
                s = ssim(x01, y01, dtype=torch.float32).sum().item()
            except ValueError:  # frames smaller than the SSIM window
                s = float("nan")
            sums += torch.tensor([p.sum().item(), s, p.numel()], dtype=torch.float64)
        return sums

    def _validate(self) -> dict[str, Any] | None:
        if not self.val_files:
            return None
        self.model.eval()
        try:
            sums = [self._eval()]
            if self.ema is not None:
                with self.ema.swapped(self.model):
                    sums.append(self._eval())
        finally:
            self.model.train()
        total = self._all_reduce_sum(torch.cat(sums).to(self.device)).cpu().tolist()
        n = total[2]
        rec: dict[str, Any] = {"event": "val", "step": self.step, "frames": int(n)}
        if n:
            rec.update(psnr=total[0] / n, ssim=total[1] / n)
            if self.ema is not None:
                rec.update(psnr_ema=total[3] / n, ssim_ema=total[4] / n)
        self._write(rec)
        self.last_val = rec
        return rec

    # ------------------------------------------------------------------ checkpoints
    def _card(self) -> dict[str, Any]:
        a = self.arch
        name = self.cfg.name or _card_name(self.base_name, self.out)
        desc = f"VidTok trained with `vidtok train` ({'from scratch' if self.from_scratch else 'fine-tuned'}"
        desc += f" from {self.base_name})" if self.base_name else ")"
        return {
            "name": name,
            "family": "vidtok",
            "version": a.version,
            "description": desc,
            "causal": a.causal,
            "temporal_factor": a.time_downsample_factor,
            "spatial_factor": a.spatial_factor,
            "regularizer": a.regularizer,
            "latent_channels": a.z_channels,
            "fsq_levels": list(a.fsq_levels),
            "codebook_size": a.codebook_size,
            "weights": "model.safetensors",
        }

    def _save(self, dirname: str) -> Path:
        final = self.out / dirname
        if self.dist.main:
            tmp = self.out / f".{dirname}.tmp-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                card = self._card()
                metrics: dict[str, Any] = {"step": float(self.step)}
                val = getattr(self, "last_val", None)
                if val:
                    metrics.update(
                        {
                            f"val_{k}": float(v)
                            for k, v in val.items()
                            if k in ("psnr", "ssim", "psnr_ema", "ssim_ema")
                        }
                    )
                    metrics["val_step"] = float(val["step"])
                card_meta = {
                    **card,
                    "config": self.arch.to_dict(),
                    "metrics": metrics,
                    "training_run": str(self.out),
                }
                card_meta.pop("weights")
                meta = {
                    checkpoints.META_FORMAT_VERSION: checkpoints.FORMAT_VERSION,
                    checkpoints.META_CONFIG: json.dumps(self.arch.to_dict(), sort_keys=True),
                    checkpoints.META_CARD: json.dumps(card_meta, sort_keys=True),
                    "vidtok.tool_version": __version__,
                    "vidtok.train.step": str(self.step),
                }
                sd = {k: v.detach() for k, v in self.model.state_dict().items()}
                checkpoints.save_safetensors(sd, tmp / "model.safetensors", meta)
                if self.ema is not None:
                    ema_meta = {**meta, "vidtok.train.ema_decay": str(self.cfg.ema)}
                    checkpoints.save_safetensors(
                        self.ema.state_dict(self.model), tmp / "model_ema.safetensors", ema_meta
                    )
                (tmp / "card.toml").write_text(_card_toml(card, self.arch.to_dict(), metrics))
                state = {
                    "format": STATE_FORMAT,
                    "step": self.step,
                    "seen_clips": self.seen_clips,
                    "world_size": self.dist.world,
                    "optimizer_g": self.opt_g.state_dict(),
                    "optimizer_d": self.opt_d.state_dict(),
                    "discriminator": {
                        k: v.detach().cpu() for k, v in self.loss.discriminator.state_dict().items()
                    },
                    "lecam": {
                        "real": self.loss.lecam_ema_real.detach().cpu(),
                        "fake": self.loss.lecam_ema_fake.detach().cpu(),
                    },
                    "logvar": self.ae.logvar.detach().cpu(),
                    "ema_updates": self.ema.num_updates if self.ema is not None else 0,
                    "skipped": dict(self.skipped),
                    "config": self.cfg.to_dict(),
                    "arch": self.arch.to_dict(),
                    "base_name": self.base_name,
                    "from_scratch": self.from_scratch,
                    "tool_version": __version__,
                }
                torch.save(state, tmp / "state.pt")
                for f in tmp.iterdir():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                old = None
                if final.exists():
                    old = self.out / f".{dirname}.old-{uuid.uuid4().hex[:8]}"
                    os.replace(final, old)
                os.replace(tmp, final)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._write({"event": "checkpoint", "step": self.step, "path": str(final)})
        self._barrier()
        return final

    # ------------------------------------------------------------------ the loop
    def _weights_hash(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        if self.ema is not None:
            for s in self.ema.shadow:
                h.update(s.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def run(self) -> dict[str, Any]:
        """Trains up to ``steps`` (or ``stop_at``); returns a summary (last losses, validation, speed, paths)."""
        from torch.utils.data import DataLoader

        cfg = self.cfg
        self._noise = torch.Generator(device=self.device)
        self._new_skips: dict[str, str] = {}
        self.last_val: dict[str, Any] | None = None
        loader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_size=cfg.batch_size,
            sampler=self.sampler,  # type: ignore[arg-type]
            num_workers=cfg.workers,
            collate_fn=datamod.collate_clips,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if cfg.workers > 0 else None,
        )
        self._open_logs()
        total = cfg.steps
        stop = min(total, cfg.stop_at) if cfg.stop_at else total
        n_params = sum(p.numel() for p in self.ae_params)
        self._write({
            "event": "resume" if self.resume_dir is not None else "start", "step": self.step,
            "world_size": self.dist.world, "device": str(self.device), "trainable_params": n_params,
            "videos": len(self.dataset), "from": str(self.resume_dir or cfg.init or cfg.model or cfg.config),
            "lr": cfg.lr, "kl_warmup": cfg.kl_warmup, "posterior_logvar_init": cfg.posterior_logvar_init,
            "time": time.time(),
        })  # fmt: skip
        progress = _Progress(self.dist.main and not cfg.quiet, self.step, total)
        batches = iter(loader)
        acc: dict[str, list[Tensor]] = {}
        n_acc, t_acc, wait_acc = 0, 0.0, 0.0
        train_time, train_steps = 0.0, 0
        last_rec: dict[str, Any] = {}
        saved_at = -1
        try:
            with progress:
                while self.step < stop:
                    t0 = time.perf_counter()
                    f = lr_factor(self.step, cfg.warmup, total, cfg.min_lr_ratio)
                    for g in self.opt_g.param_groups:
                        g["lr"] = cfg.lr * f
                    for g in self.opt_d.param_groups:
                        g["lr"] = cfg.disc_lr * f
                    terms, wait = self._train_step(batches, self.step)
                    self.step += 1
                    for k, v in terms.items():
                        acc.setdefault(k, []).append(v)
                    n_acc += 1
                    wait_acc += wait
                    if self.device.type == "cuda" and self.step % cfg.log_every == 0:
                        torch.cuda.synchronize(self.device)
                    dt = time.perf_counter() - t0
                    t_acc += dt
                    train_time += dt
                    train_steps += 1
                    if self.step % cfg.log_every == 0 or self.step == stop:
                        last_rec = self._flush_train_log(acc, n_acc, t_acc, wait_acc)
                        acc, n_acc, t_acc, wait_acc = {}, 0, 0.0, 0.0
                    progress.update(self.step, last_rec)
                    if self.val_files and self.step % cfg.val_every == 0 and self.step < total:
                        progress.note(self._val_text(self._validate()))
                    if self.step % cfg.save_every == 0 and self.step < total:
                        self._save(_step_dir_name(self.step))
                        saved_at = self.step
            if self.step >= total:
                if self.val_files:
                    progress.note(self._val_text(self._validate()))
                ckpt = self._save("final")
            else:
                ckpt = self.out / _step_dir_name(self.step)
                if saved_at != self.step:
                    ckpt = self._save(_step_dir_name(self.step))
            hashes = [self._weights_hash()]
            if self.dist.active:
                import torch.distributed as dist

                allh: list[str] = [""] * self.dist.world
                dist.all_gather_object(allh, hashes[0])
                hashes = allh
            steps_per_s = train_steps / train_time if train_time > 0 else 0.0
            self._write({
                "event": "end", "step": self.step, "checkpoint": str(ckpt), "weights_sha256": hashes,
                "steps_per_s": steps_per_s, "skipped_videos": len(self.skipped), "time": time.time(),
            })  # fmt: skip
        finally:
            del batches
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None
            if self._tb is not None:
                self._tb.close()
            if self.dist.active:
                self._shutdown_distributed()
        keep = (
            "loss",
            "l1",
            "rec_loss",
            "p_loss",
            "kl",
            "aux_loss",
            "g_loss",
            "disc_loss",
            "lr",
            "grad_norm",
        )
        summary: dict[str, Any] = {
            "out": str(self.out),
            "checkpoint": str(ckpt),
            "step": self.step,
            "steps": total,
        }
        summary.update({k: last_rec[k] for k in keep if k in last_rec})
        if self.last_val:
            summary.update({k: v for k, v in self.last_val.items() if k.startswith(("psnr", "ssim"))})
        summary.update(steps_per_s=steps_per_s, world_size=self.dist.world, skipped_videos=len(self.skipped))
        return summary

    def _shutdown_distributed(self) -> None:
        """Releases the DDP wrappers (their reducers hold the process group), then the group if ours."""
        import gc

        import torch.distributed as dist

        self.ae_ddp, self.disc_ddp = self.ae, self.loss.discriminator
        gc.collect()
        if self.dist.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.barrier()
            dist.destroy_process_group()

    @staticmethod
    def _val_text(rec: dict[str, Any] | None) -> str:
        if not rec or "psnr" not in rec:
            return ""
        text = f"step {rec['step']}: val PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.4f}"
        if "psnr_ema" in rec:
            text += f" (EMA {rec['psnr_ema']:.2f} dB, {rec['ssim_ema']:.4f})"
        return text


class _Progress:
    """Rich progress bar (step rate, ETA, loss) on a terminal; one plain line per log record otherwise."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.enabled = enabled
        self.total = total
        self.bar: Any = None
        self.last_step = -1
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )  # fmt: skip
            self.task = self.bar.add_task("train", total=total, completed=start, rate="", info="")

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, step: int, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        fresh = rec.get("step") == step
        info = ""
        if rec:
            info = f"loss {rec.get('loss', float('nan')):.4g} rec {rec.get('rec_loss', float('nan')):.4f}"
        if self.bar is not None:
            rate = f"{rec['steps_per_s']:.2f} step/s" if rec else ""
            self.bar.update(self.task, completed=step, rate=rate, info=info)
        elif fresh:
            print(f"step {step}/{self.total} {info} lr {rec.get('lr', 0):.3g} {rec.get('steps_per_s', 0):.2f} step/s",
                  file=sys.stderr, flush=True)  # fmt: skip

    def note(self, text: str) -> None:
        if not self.enabled or not text:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)


# ============================================================================ entry points


def resume_config(run: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """The options of the run being resumed (from its newest checkpoint), with ``overrides`` applied.

    ``stop_at`` and ``force`` are not inherited (they belong to one invocation).
    """
    ckpt = find_checkpoint(run)
    saved = _load_state(ckpt / "state.pt").get("config", {})
    cfg = TrainConfig.from_dict(saved)
    cfg.stop_at, cfg.force = None, False  # options of one invocation, not of the run
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.resume = str(run)
    cfg.out = str(overrides.get("out") or run)
    cfg.config = cfg.model = cfg.init = None
    return cfg


def train(cfg: TrainConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, Any]:
    """Runs one training (see :class:`Trainer`); returns its summary."""
    return Trainer(cfg, perceptual).run()
