"""The VidTok family (causal / non-causal 3D-conv autoencoders, KL or FSQ) behind the Tokenizer interface.

One latent stream: ``latent`` (continuous, (C, t, h, w)) for KL models, ``tokens`` (FSQ indices,
(t, h, w)) for FSQ models. The VidTok conveniences ``.cfg``, ``decode_indices`` and the ``.latent`` /
``.indices`` of `Encoded` stay available.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..arch.config import ArchConfigError, VidTokConfig
from ..errors import ConfigError, UsageError
from ..official_config import resolve_interpolations
from ..tokenizer import Encoded, FrameLayout, LatentSpec, ModuleTokenizer
from . import Family

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from ..arch.vidtok import VidTokModel

_ARCH_KEYS = (
    "ch", "ch_mult", "num_res_blocks", "in_channels", "out_ch", "z_channels", "time_downsample_factor",
    "spatial_ds", "tempo_ds", "spatial_us", "tempo_us", "norm_type", "init_pad_mode", "interpolation_mode",
    "double_z",
)  # fmt: skip


def config_from_official(data: Mapping[str, Any], where: str = "config") -> VidTokConfig:
    """A VidTokConfig from the official YAML structure (model.params.encoder_config, ...)."""
    data = resolve_interpolations(data, data, where)
    params = data.get("model", {}).get("params") if isinstance(data.get("model"), Mapping) else None
    if params is None and "encoder_config" in data:
        params = data
    if not isinstance(params, Mapping) or "encoder_config" not in params:
        raise ConfigError(f"{where}: not an official VidTok config (no model.params.encoder_config)")
    try:
        enc = params["encoder_config"]
        dec = params.get("decoder_config", enc)
        reg = params.get("regularizer_config")
        if not isinstance(reg, Mapping) or "target" not in reg:
            raise ConfigError(f"{where}: regularizer_config.target is missing")
        enc_params = dict(enc.get("params") or {})
        dec_params = dict(dec.get("params") or {})
        for key in _ARCH_KEYS:
            if key in dec_params and key in enc_params and dec_params[key] != enc_params[key]:
                raise ConfigError(f"{where}: decoder {key} differs from the encoder's ({dec_params[key]!r})")
        if "target" not in enc:
            raise ConfigError(f"{where}: encoder_config.target is missing")
        return VidTokConfig.from_official(enc["target"], enc_params, reg["target"], reg.get("params") or {})
    except (ArchConfigError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: {e}") from e


def _looks_official(data: Mapping[str, Any]) -> bool:
    model = data.get("model")
    params = model.get("params") if isinstance(model, Mapping) else None
    return "encoder_config" in data or (isinstance(params, Mapping) and "encoder_config" in params)


def _config_from_dict(d: Mapping[str, Any]) -> VidTokConfig:
    try:
        return VidTokConfig.from_dict(dict(d))
    except (ArchConfigError, TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e


def _build(cfg: VidTokConfig) -> VidTokModel:
    from ..arch.vidtok import build_model

    return build_model(cfg)


class VidTokTokenizer(ModuleTokenizer):
    """A loaded VidTok model as a `Tokenizer` (see the module doc)."""

    family = "vidtok"

    @property
    def cfg(self) -> VidTokConfig:
        """The architecture config (VidTok convenience)."""
        return self._module.cfg

    @property
    def frame_layout(self) -> FrameLayout:
        c = self.cfg
        return FrameLayout(c.time_downsample_factor, c.spatial_factor, c.causal, 16, None, c.in_channels)

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        c = self.cfg
        if c.regularizer == "fsq":
            spec = LatentSpec("tokens", "fsq", c.z_channels, tuple(c.fsq_levels), None, 0, c.spatial_factor)
        else:
            spec = LatentSpec(
                "latent", "continuous", c.z_channels, time_axis=1, spatial_factor=c.spatial_factor
            )
        return {spec.name: spec}

    def _encoded(self, out: Any) -> Encoded:
        if out.indices is not None:
            return Encoded({"tokens": out.indices}, out.moments, out.latent)
        return Encoded({"latent": out.latent}, out.moments)

    def encode(self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Encoded:
        """Encodes a whole clip x (B, 3, T, H, W) in [-1, 1] (KL: the posterior mean unless ``sample``)."""
        return self._encoded(self._module.encode(x, sample=sample, generator=generator))

    def encode_chunk(
        self, x: Tensor, state: Any = None, sample: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Encoded, Any]:
        """Encodes the next frames of a causal stream; pass the returned state with the next chunk."""
        out, state = self._module.encode_chunk(x, state, sample=sample, generator=generator)
        return self._encoded(out), state

    def blend_encoded(self, moments: Tensor) -> Encoded:
        """The regularizer applied to encoder moments (e.g. blended spatial tiles)."""
        return self._encoded(self._module.regularize(moments))

    def _decoder_input(self, latents: Mapping[str, Tensor] | Tensor, only: str | None = None) -> Tensor:
        if only is not None:
            raise UsageError(f"--only {only}: a VidTok model has a single latent stream")
        if not isinstance(latents, Mapping):
            return latents
        if "tokens" in latents:
            return self.indices_to_latent(latents["tokens"])
        if "latent" in latents:
            return latents["latent"]
        raise UsageError(f"no 'latent' or 'tokens' stream among {sorted(latents)}")

    def decode(self, latents: Mapping[str, Tensor] | Tensor, only: str | None = None) -> Tensor:
        """Frames from ``{"latent": z}`` or ``{"tokens": indices}`` (a bare latent tensor also works)."""
        return self._module.decode(self._decoder_input(latents, only))

    def decode_chunk(
        self, latents: Mapping[str, Tensor] | Tensor, state: Any = None, final: bool = False
    ) -> tuple[Tensor, Any]:
        """Decodes the next latents of a causal stream; ``final`` flushes look-ahead layers."""
        return self._module.decode_chunk(self._decoder_input(latents), state, final=final)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decodes FSQ token indices (B, t, h, w) (VidTok convenience)."""
        return self._module.decode_indices(indices)

    def indices_to_latent(self, indices: Tensor) -> Tensor:
        """The FSQ codes of token indices, in the decoder's dtype."""
        return self._module.indices_to_latent(indices)

    def __call__(self, x: Tensor) -> Tensor:
        return self._module(x)


def _finish_meta(module: VidTokModel, cfg: VidTokConfig) -> None:
    """Rebuilds the regularizer (its buffers are not in the state dict) after building on the meta device."""
    from ..arch.regularizers import FSQ, DiagonalGaussian

    module.regularization = FSQ(cfg.fsq_levels) if cfg.regularizer == "fsq" else DiagonalGaussian()


FAMILY = Family(
    name="vidtok",
    config_class=VidTokConfig,
    config_from_dict=_config_from_dict,
    config_to_dict=VidTokConfig.to_dict,
    config_from_official=config_from_official,
    build=_build,
    wrap=VidTokTokenizer,
    key_prefixes=("encoder.", "decoder."),
    training_prefixes=("loss.", "model_ema."),
    looks_official=_looks_official,
    finish_meta=_finish_meta,
)
