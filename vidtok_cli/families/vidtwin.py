"""The VidTwin family (structure and dynamics latents of 16-frame clips) behind the Tokenizer interface.

One latent step per clip: the three streams ``structure`` (F_q, h', w', C), ``dynamics_x`` (d, T, w') and
``dynamics_y`` (d, T, h') keep the official layouts and have no time axis (``time_axis=None``, the whole
per-sample tensor is the step). ``stream_groups`` names the parts ``decode(..., only=...)`` can decode
alone: "structure" and "dynamics". Frames must be ``input_size`` (224x224 at full size): resizing and
cropping is the video path's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..arch.config import ArchConfigError
from ..arch.vidtwin_config import ENGINE_TARGET, VidTwinConfig
from ..errors import ConfigError, UsageError
from ..official_config import resolve_interpolations
from ..tokenizer import Encoded, FrameLayout, LatentSpec, ModuleTokenizer
from . import Family, dict_reader

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from ..arch.vidtwin import VidTwinEncoding, VidTwinModel

STREAM_GROUPS = {"structure": ("structure",), "dynamics": ("dynamics_x", "dynamics_y")}


def _params(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The official ``model.params`` of a YAML structure, or the params themselves (``model_params_used``)."""
    model = data.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("params"), Mapping):
        return model["params"]
    if isinstance(data.get("model_params_used"), Mapping):
        return data["model_params_used"]
    return data if "temporal_qformer_config" in data else None


def _looks_official(data: Mapping[str, Any]) -> bool:
    model = data.get("model")
    if isinstance(model, Mapping) and str(model.get("target", "")).endswith(ENGINE_TARGET):
        return True
    params = _params(data)
    return isinstance(params, Mapping) and "temporal_qformer_config" in params


def config_from_official(data: Mapping[str, Any], where: str = "config") -> VidTwinConfig:
    """A VidTwinConfig from the official YAML structure (model.params.encoder_config, ...)."""
    data = resolve_interpolations(data, data, where)
    model = data.get("model")
    target = str(model.get("target", "")) if isinstance(model, Mapping) else ""
    if target and not target.endswith(ENGINE_TARGET):
        raise ConfigError(f"{where}: model {target} is not supported (only {ENGINE_TARGET})")
    params = _params(data)
    if not isinstance(params, Mapping) or "encoder_config" not in params:
        raise ConfigError(f"{where}: not an official VidTwin config (no model.params.encoder_config)")
    try:
        return VidTwinConfig.from_official(params)
    except (ArchConfigError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: {e}") from e


def _build(cfg: VidTwinConfig) -> VidTwinModel:
    from ..arch.vidtwin import build_model

    return build_model(cfg)


class VidTwinTokenizer(ModuleTokenizer):
    """A loaded VidTwin model as a `Tokenizer` (see the module doc)."""

    family = "vidtwin"

    @property
    def cfg(self) -> VidTwinConfig:
        return self._module.cfg

    @property
    def frame_layout(self) -> FrameLayout:
        c = self.cfg
        t, h, w = c.input_size
        return FrameLayout(t, c.spatial_factor, False, t, (h, w), c.in_channels)

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        c = self.cfg
        dyn = c.dynamics_shape
        return {
            "structure": LatentSpec("structure", "continuous", c.expect_ch, time_axis=None, fixed_shape=c.structure_shape, channel_axis=3),
            "dynamics_x": LatentSpec("dynamics_x", "continuous", c.d_dim, time_axis=None, fixed_shape=dyn, channel_axis=0),
            "dynamics_y": LatentSpec("dynamics_y", "continuous", c.d_dim, time_axis=None, fixed_shape=dyn, channel_axis=0),
        }  # fmt: skip

    @property
    def stream_groups(self) -> dict[str, tuple[str, ...]]:
        return dict(STREAM_GROUPS)

    def _check_clips(self, x: Tensor) -> None:
        want = (self.cfg.in_channels, *self.cfg.input_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            t, h, w = self.cfg.input_size
            raise UsageError(
                f"{self.name} encodes clips of exactly {t} frames of {w}x{h}, got {tuple(x.shape[1:])} "
                "(B, C, T, H, W)"
            )

    def encode_full(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> VidTwinEncoding:
        """Clips (B, 3, T, H, W) in [-1, 1] -> features, latents and the three KL moments."""
        self._check_clips(x)
        return self._module.encode(x, sample=sample, generator=generator)

    def encode(self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Encoded:
        """Clips (B, 3, T, H, W) in [-1, 1] -> the three streams (the posterior mode unless ``sample``).

        ``moments`` stays None: there is no single moments tensor to blend (no tiling); `encode_full`
        gives the three.
        """
        return Encoded(self.encode_full(x, sample, generator).latents)

    def decode(self, latents: Mapping[str, Tensor], only: str | None = None) -> Tensor:
        """Clips (B, 3, T, H, W) from the streams; ``only``: a `stream_groups` name decodes that part alone."""
        if only is not None and only not in STREAM_GROUPS:
            raise UsageError(f"--only {only}: a VidTwin model has the parts {', '.join(STREAM_GROUPS)}")
        need = [n for g, names in STREAM_GROUPS.items() if only in (None, g) for n in names]
        missing = [n for n in need if n not in latents]
        if missing:
            raise UsageError(f"cannot decode: the latent stream(s) {', '.join(missing)} are missing")
        dev, dt = self.device, self.dtype
        z = {n: latents[n].to(device=dev, dtype=dt) for n in need}
        return self._module.decode(z.get("structure"), z.get("dynamics_x"), z.get("dynamics_y"), only=only)

    def encode_chunk(self, x: Tensor, state: Any = None) -> tuple[Encoded, Any]:
        """Non-causal: a chunk is a batch of whole clips, encoded independently (no state)."""
        return self.encode(x), None

    def decode_chunk(
        self, latents: Mapping[str, Tensor], state: Any = None, final: bool = False
    ) -> tuple[Tensor, Any]:
        """Non-causal: decodes whole clips independently (no state)."""
        return self.decode(latents), None

    def blend_encoded(self, moments: Tensor) -> Encoded:
        raise UsageError("--tile: VidTwin encodes whole fixed-size clips; spatial tiling is not supported")


FAMILY = Family(
    name="vidtwin",
    config_class=VidTwinConfig,
    config_from_dict=dict_reader(VidTwinConfig),
    config_to_dict=VidTwinConfig.to_dict,
    config_from_official=config_from_official,
    build=_build,
    wrap=VidTwinTokenizer,
    key_prefixes=(
        "encoder.",
        "decoder.",
        "temporal_qformer.",
        "cont_emb.",
        "conv_in.",
        "content_downsample_blocks.",
        "content_upsample_blocks.",
        "bottle_down.",
        "bottle_up.",
        "conv_out.",
        "motion_emb.",
        "motion_head.",
        "downsample_motion_module.",
        "up_motion.",
    ),  # fmt: skip
    training_prefixes=("loss.", "model_ema."),
    looks_official=_looks_official,
)
