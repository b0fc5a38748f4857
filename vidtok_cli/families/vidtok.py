"""The VidTok family (causal / non-causal 3D-conv autoencoders, KL or FSQ) behind the Tokenizer interface.

One latent stream: ``latent`` (continuous, (C, t, h, w)) for KL models, ``tokens`` (FSQ indices,
(t, h, w)) for FSQ models. The VidTok conveniences ``.cfg``, ``decode_indices`` and the ``.latent`` /
``.indices`` of `Encoded` stay available.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..arch.config import ArchConfigError, VidTokConfig
from ..errors import ConfigError
from ..official_config import resolve_interpolations
from ..tokenizer import FrameLayout, LatentSpec
from . import Family, dict_reader
from .autoencoder import SingleStreamTokenizer

if TYPE_CHECKING:
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
    if "temporal_qformer_config" in data or (
        isinstance(params, Mapping) and "temporal_qformer_config" in params
    ):
        return False  # VidTwin's configs have an encoder_config too
    return "encoder_config" in data or (isinstance(params, Mapping) and "encoder_config" in params)


def _build(cfg: VidTokConfig) -> VidTokModel:
    from ..arch.vidtok import build_model

    return build_model(cfg)


class VidTokTokenizer(SingleStreamTokenizer):
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

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decodes FSQ token indices (B, t, h, w) (VidTok convenience)."""
        return self._module.decode_indices(indices)

    def __call__(self, x: Tensor) -> Tensor:
        return self._module(x)


def _finish_meta(module: VidTokModel, cfg: VidTokConfig) -> None:
    """Rebuilds the regularizer (its buffers are not in the state dict) after building on the meta device."""
    from ..arch.regularizers import FSQ, DiagonalGaussian

    module.regularization = FSQ(cfg.fsq_levels) if cfg.regularizer == "fsq" else DiagonalGaussian()


FAMILY = Family(
    name="vidtok",
    config_class=VidTokConfig,
    config_from_dict=dict_reader(VidTokConfig),
    config_to_dict=VidTokConfig.to_dict,
    config_from_official=config_from_official,
    build=_build,
    wrap=VidTokTokenizer,
    key_prefixes=("encoder.", "decoder."),
    training_prefixes=("loss.", "model_ema."),
    looks_official=_looks_official,
    finish_meta=_finish_meta,
)
