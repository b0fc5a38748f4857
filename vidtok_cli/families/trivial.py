"""The trivial codec (keep every 4th frame at 1/8 size) as a model family: ``--model trivial``.

It is the baseline every tokenizer must beat, and the proof that a family other than VidTok passes through
unchanged streaming, file and bench code. It needs no weights; its one stream ``latent`` is continuous
(3, t, H/8, W/8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..tokenizer import FrameLayout, LatentSpec
from . import Family
from .autoencoder import SingleStreamTokenizer

if TYPE_CHECKING:
    from torch import nn

NAME = "trivial"


@dataclass(frozen=True)
class TrivialConfig:
    """The trivial codec has no architecture options; the factors are fixed (4x8x8)."""

    temporal_factor: int = 4
    spatial_factor: int = 8

    def to_dict(self) -> dict[str, Any]:
        return {"temporal_factor": self.temporal_factor, "spatial_factor": self.spatial_factor}


def _config_from_dict(d: Mapping[str, Any]) -> TrivialConfig:
    cfg = TrivialConfig(**{k: int(v) for k, v in d.items() if k in ("temporal_factor", "spatial_factor")})
    if cfg != TrivialConfig() or set(d) - {"temporal_factor", "spatial_factor"}:
        raise ConfigError(f"the trivial codec is fixed at 4x8x8; got {dict(d)}")
    return cfg


def _build(cfg: TrivialConfig) -> nn.Module:
    from ..arch.trivial import TrivialCodec

    return TrivialCodec()


class TrivialTokenizer(SingleStreamTokenizer):
    """The trivial codec as a `Tokenizer`: a causal 4x8x8 stream of 3-channel latents."""

    family = NAME

    def __init__(self, module: nn.Module, card: Mapping[str, Any] | None = None, weights_path: Any = None):
        card = dict(card or {})
        card.setdefault("name", NAME)
        card.setdefault("family", NAME)
        card.setdefault("description", "baseline: every 4th frame at 1/8 size, bilinear up, linear in time")
        super().__init__(module, card, weights_path)

    @property
    def frame_layout(self) -> FrameLayout:
        return FrameLayout(4, 8, True)

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        return {"latent": LatentSpec("latent", "continuous", 3, time_axis=1, spatial_factor=8)}


FAMILY = Family(
    name=NAME,
    config_class=TrivialConfig,
    config_from_dict=_config_from_dict,
    config_to_dict=TrivialConfig.to_dict,
    config_from_official=None,
    build=_build,
    wrap=TrivialTokenizer,
    key_prefixes=("anchor",),
    weightless=True,
)
