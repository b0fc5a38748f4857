"""The models of a training run: where the autoencoder comes from (``--config``, ``--model``, ``--init``
or ``--resume``; loaded with ``loading.load_model`` and built through the family registry), how it is
prepared (posterior log-variance, freezing, gradient checkpointing), the ``Autoencoder`` that DDP wraps
and the perceptual loss network. The trainable families are VidTok and VidTwin (the same official loss:
L1 + LPIPS + GAN + KL); other families are refused here, and the family-specific parts live here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..arch.config import VidTokConfig
from ..arch.layers import FrameAttention, ResnetBlock2D, ResnetBlock3D, StreamState, TemporalResBlock
from ..arch.regularizers import FSQ
from ..arch.transformer import STBlock
from ..arch.vidtok import VidTokModel
from ..arch.vidtwin import VidTwinModel
from ..arch.vidtwin_config import VidTwinConfig
from ..errors import ConfigError, UsageError, WeightsUnavailableError
from ..tokenizer import ModuleTokenizer
from .config import TrainConfig
from .run_dir import find_checkpoint, load_state
from .trivial_init import trivial_init_

__all__ = [
    "TRIVIAL_INIT",
    "Autoencoder",
    "ModelSource",
    "check_clip_length",
    "enable_gradient_checkpointing",
    "init_posterior_logvar",
    "last_layer",
    "load_perceptual",
    "model_for_resume",
    "model_from_options",
    "prepare_model",
]

TRIVIAL_INIT = "trivial"  # --init keyword: start from weights that compute the trivial codec
FAMILY = "vidtok"  # the model family --init trivial and untagged card files mean
TRAINABLE = ("vidtok", "vidtwin")  # the families the trainer trains
Model = VidTokModel | VidTwinModel
Arch = VidTokConfig | VidTwinConfig


# ---------------------------------------------------------------------------- where the weights come from


@dataclass
class ModelSource:
    """The autoencoder a run starts from, on CPU in float32.

    ``state``: the training state saved with the weights (the checkpoint resumed, or the run given to
    ``--init``), if any. ``base_name``: the name of what the run starts from, for its model card.
    """

    model: Model
    arch: Arch
    from_scratch: bool
    base_name: str | None = None
    state: dict[str, Any] | None = None


def model_for_resume(ckpt: Path) -> ModelSource:
    """The weights and training state of the checkpoint directory ``ckpt``."""
    model, arch = _load_weights(ckpt / "model.safetensors", None)
    state = load_state(ckpt / "state.pt")
    return ModelSource(model, arch, bool(state.get("from_scratch", False)), state.get("base_name"), state)


def model_from_options(cfg: TrainConfig) -> ModelSource:
    """The starting model of a new run: ``--model`` / ``--init`` weights (checked against ``--config``
    when given), the trivial codec (``--init trivial``) or a random initialisation of ``--config``."""
    explicit, base_name = arch_from_config(cfg.config) if cfg.config else (None, None)
    trivial = cfg.init == TRIVIAL_INIT and not Path(cfg.init).exists()
    ref = None if trivial else cfg.init or cfg.model
    if ref is not None:
        return _init_from(ref, explicit, base_name)
    if explicit is None:  # only --init trivial gets here without --config
        raise UsageError("--init trivial needs --config (the architecture to initialise)")
    from .. import families

    torch.manual_seed(cfg.seed)
    model = families.for_config(explicit).build(explicit)
    if trivial:
        if not isinstance(model, VidTokModel):
            raise UsageError("--init trivial initialises VidTok architectures only")
        logvar = -10.0 if cfg.posterior_logvar_init is None else cfg.posterior_logvar_init
        try:
            trivial_init_(model, logvar=logvar)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        base_name = "the trivial codec"
    return ModelSource(model, explicit, not trivial, base_name)


def arch_from_config(config: str) -> tuple[Arch, str]:
    """Architecture from a card TOML (weights not needed), an official YAML/JSON or a zoo name, and the
    name of that source."""
    from .. import families
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
        family = str(data.get("family", FAMILY))
        _check_family(family, str(p))
        try:
            cfg = families.get(family).config_from_dict(dict(arch))
        except (ConfigError, ValueError, TypeError) as e:
            raise ConfigError(f"{p}: [architecture]: {e}") from e
        return cfg, str(data.get("name") or p.stem)
    cfg, card = resolve_config(config)
    assert cfg is not None
    _check_family(families.for_config(cfg).name, config)
    return cfg, card.name if card is not None else p.stem


def _check_family(family: str, ref: Any) -> None:
    if family not in TRAINABLE:
        raise UsageError(
            f"{ref}: a model of the {family} family; vidtok train trains VidTok and VidTwin models only"
        )


def _trainable(tok: ModuleTokenizer, ref: Any) -> tuple[Model, Arch]:
    """The module and architecture of a loaded tokenizer (UsageError for a family the trainer cannot train)."""
    _check_family(tok.family, ref)
    module = tok.module
    assert isinstance(module, (VidTokModel, VidTwinModel))
    return module, module.cfg


def _load_weights(path: Path, explicit: Arch | None) -> tuple[Model, Arch]:
    from ..loading import load_model

    return _trainable(load_model(path, config=explicit, device="cpu", dtype="float32"), path)


def _init_from(ref: str, explicit: Arch | None, base_name: str | None) -> ModelSource:
    """Initial weights from a zoo name, a weights file or a run directory (plus, for a run, its training
    state: discriminator and output log-variance). ``base_name`` stays for a run without a state."""
    from ..loading import load_model

    p = Path(ref).expanduser()
    state: dict[str, Any] | None = None
    if p.is_dir():
        ckpt = find_checkpoint(p) if not (p / "model.safetensors").is_file() else p
        model, arch = _load_weights(ckpt / "model.safetensors", explicit)
        if (ckpt / "state.pt").is_file():
            state = load_state(ckpt / "state.pt")
            base_name = state.get("base_name")
    else:
        tok = load_model(ref, config=explicit, device="cpu", dtype="float32")
        model, arch = _trainable(tok, ref)
        base_name = tok.card.get("name")
    if explicit is not None and explicit != arch:
        raise ConfigError(f"--config describes another architecture than the weights of {ref}")
    for prm in model.parameters():
        prm.requires_grad_(True)
    return ModelSource(model, arch, False, base_name, state)


# ---------------------------------------------------------------------------- preparing the model


def check_clip_length(a: Arch, frames: int, option: str) -> None:
    """UsageError unless clips of ``frames`` frames fit the temporal factor of ``a``."""
    if isinstance(a, VidTwinConfig):
        if frames != a.clip_frames:
            raise UsageError(
                f"{option} {frames}: a VidTwin model takes clips of exactly {a.clip_frames} frames"
            )
        return
    if a.causal and (frames - 1) % a.time_downsample_factor:
        raise UsageError(
            f"{option} {frames}: a causal model with temporal factor {a.time_downsample_factor} takes "
            f"1 + k*{a.time_downsample_factor} frames (e.g. {1 + 4 * a.time_downsample_factor})"
        )
    if not a.causal and frames % a.time_downsample_factor:
        raise UsageError(
            f"{option} {frames}: a non-causal model takes multiples of {a.time_downsample_factor} frames"
        )


def check_clip_size(a: Arch, size: int, option: str) -> None:
    """UsageError unless square clips of ``size`` pixels fit ``a`` (VidTwin: exactly its input size)."""
    if isinstance(a, VidTwinConfig) and (size, size) != a.input_size[1:]:
        raise UsageError(f"{option} {size}: a VidTwin model takes {a.input_size[2]}x{a.input_size[1]} frames")


def init_posterior_logvar(model: Model, value: float) -> None:
    """Sets the bias of the encoder's log-variance outputs (KL) to ``value``."""
    if isinstance(model, VidTwinModel):
        with torch.no_grad():
            model.bottle_down.bias[model.cfg.expect_ch :].fill_(value)
            model.motion_head.bias[model.cfg.d_dim :].fill_(value)
        return
    z_channels = model.cfg.z_channels
    conv = model.encoder.conv_out
    conv = conv.conv if hasattr(conv, "conv") else conv
    with torch.no_grad():
        conv.bias[z_channels:].fill_(value)


def prepare_model(model: Model, cfg: TrainConfig, device: torch.device) -> Model:
    """The model on ``device`` in float32 and training mode, frozen parts and checkpointing applied."""
    model = model.to(device, torch.float32).train()
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    if cfg.freeze_decoder:
        model.decoder.requires_grad_(False)
    if cfg.grad_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def enable_gradient_checkpointing(model: Model) -> int:
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

        elif isinstance(m, STBlock):  # VidTwin
            plain = m.forward

            def fwd(x: Tensor, *args: Any, _f: Callable[..., Tensor] = plain) -> Tensor:  # type: ignore[misc]
                return checkpoint(_f, x, *args, use_reentrant=False)

        else:
            continue
        m.forward = fwd  # type: ignore[method-assign]
        m._vidtok_ckpt = True  # type: ignore[attr-defined]
        n += 1
    return n


def last_layer(model: Model) -> Tensor:
    """The decoder's output layer weight (the adaptive GAN weight is computed on it)."""
    if isinstance(model, VidTwinModel):
        return model.decoder.final_layer.linear.weight
    conv = model.decoder.conv_out
    return conv.conv.weight if hasattr(conv, "conv") else conv.weight


class Autoencoder(nn.Module):
    """What DDP wraps on the generator side: the VidTok model plus the learned output log-variance."""

    def __init__(self, model: Model, logvar_init: float = 0.0, learn_logvar: bool = True):
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
        """(reconstruction, encoder moments, latent fed to the decoder).

        VidTwin: the three KL moments flattened into one (B, 2, N) tensor (mean | log-variance), whose KL
        is the sum of the three; the latent is the structure latent.
        """
        m = self.model
        if isinstance(m, VidTwinModel):
            return self._vidtwin(x, sample, noise, logvar_max, frozen_encoder)
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

    def _vidtwin(
        self, x: Tensor, sample: bool, noise: torch.Generator | None, logvar_max: float | None, frozen: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        assert isinstance(m, VidTwinModel)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            _, *moments = m.encode_moments(x)
        hi = 20.0 if logvar_max is None else min(20.0, logvar_max)
        latents, flat = [], []
        for mom in moments:
            mean, logvar = mom.chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, hi)
            latent = mean
            if sample:
                eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=torch.float32)
                latent = mean + torch.exp(0.5 * logvar) * eps.to(mean.dtype)
            latents.append(latent)
            flat.append(torch.stack([mean.flatten(1), logvar.flatten(1)], dim=1))
        structure = latents[0].permute(0, 2, 3, 4, 1)
        return m.decode(structure, latents[1], latents[2]), torch.cat(flat, dim=2), structure


# ---------------------------------------------------------------------------- the perceptual loss


def load_perceptual(weights_dir: str | None, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """The bench's VGG LPIPS, frozen, for the perceptual loss term."""
    hint = "or pass --perceptual-weight 0 to train without the perceptual loss"
    try:
        from ..metrics.lpips import load_lpips  # type: ignore[import-not-found]
    except ImportError as e:
        raise WeightsUnavailableError(
            f"the LPIPS perceptual loss is not available in this installation (vidtok_cli.metrics.lpips); {hint}"
        ) from e
    try:
        lp = load_lpips(weights_dir=weights_dir, device=device)
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"{e}; {hint}") from e
    lp.eval()
    lp.requires_grad_(False)
    return lp
