"""Frozen config of Video-LaVIT's motion tokenizer: the official constructor arguments (no torch).

``LavitMotionConfig(encoder, decoder, decoder_out_dim, n_embed, embed_dim)`` as in
``MotionTransformerTokenizer``; the defaults are the released model (``build_motion_tokenizer``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .config import ArchConfigError

# The official architecture's fixed schedule: 4 stages of 3 blocks; per stage the encoder's Conv3d
# (k3) stride and explicit zero padding (w0, w1, h0, h1, t0, t1), and the decoder's nearest upsampling.
STAGE_BLOCKS = 3
DOWN_STRIDES = ((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 2, 2))
DOWN_PADS = ((0, 1, 0, 1, 1, 1), (1, 1, 1, 1, 0, 1), (1, 1, 1, 1, 0, 1), (0, 1, 0, 1, 0, 1))
UP_SCALES = ((2.0, 2.0, 2.0), (2.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 2.0, 2.0))


@dataclass(frozen=True)
class MotionStackConfig:
    """One transformer stack (encoder or decoder): the official ``TokenizerEncoder`` arguments.

    ``img_size`` is (width, height) of the motion grid, as in the official code; ``layer_norm_eps``
    stands for the official ``norm_layer`` (LayerNorm, eps 1e-5). ``drop``/``attn_drop`` are accepted and
    have no effect at inference.
    """

    in_channel: int = 2
    dim: int = 512
    num_heads: int = 8
    img_size: tuple[int, int] = (36, 20)
    depth: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop: float = 0.0
    attn_drop: float = 0.0
    layer_norm_eps: float = 1e-5
    num_frames: int = 24

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", tuple(int(v) for v in self.img_size))
        if len(self.img_size) != 2 or min(self.img_size) <= 0:
            raise ArchConfigError(f"img_size must be (width, height), got {self.img_size!r}")
        if self.depth != 4 * STAGE_BLOCKS:
            raise ArchConfigError(
                f"depth must be {4 * STAGE_BLOCKS} (4 stages of 3 blocks), got {self.depth}"
            )
        if self.dim <= 0 or self.num_heads <= 0 or self.dim % self.num_heads:
            raise ArchConfigError(f"dim {self.dim} must be a positive multiple of num_heads {self.num_heads}")
        if self.in_channel <= 0 or self.num_frames <= 0 or self.mlp_ratio <= 0:
            raise ArchConfigError("in_channel, num_frames and mlp_ratio must be positive")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> MotionStackConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArchConfigError(f"{where}: unknown argument(s) {', '.join(unknown)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d


def _default_decoder() -> MotionStackConfig:
    return MotionStackConfig(in_channel=32)


@dataclass(frozen=True)
class LavitMotionConfig:
    """The official ``MotionTransformerTokenizer(encoder_config, decoder_config, decoder_out_dim, n_embed,
    embed_dim)`` arguments; the defaults are the released model (``build_motion_tokenizer``)."""

    encoder: MotionStackConfig = field(default_factory=MotionStackConfig)
    decoder: MotionStackConfig = field(default_factory=_default_decoder)
    decoder_out_dim: int = 2
    n_embed: int = 1024
    embed_dim: int = 32
    motion_scale_factor: float = 10.0

    def __post_init__(self) -> None:
        if self.encoder.in_channel != 2 or self.decoder_out_dim != 2:
            raise ArchConfigError("the motion tokenizer takes and gives 2 channels (x and y motion)")
        if self.decoder.in_channel != self.embed_dim:
            raise ArchConfigError(
                f"decoder in_channel ({self.decoder.in_channel}) must equal embed_dim ({self.embed_dim})"
            )
        if self.n_embed <= 0 or self.embed_dim <= 0:
            raise ArchConfigError("n_embed and embed_dim must be positive")
        t, h, w = self.token_grid
        if min(t, h, w) <= 0:
            raise ArchConfigError(f"the input grid {self.input_shape} is too small for 4 downsamplings")
        if self.decoded_shape != self.input_shape:
            raise ArchConfigError(
                f"the decoder gives {self.decoded_shape}, not the input grid {self.input_shape}"
            )

    # --- derived facts the adapter needs
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(frames, height, width) of one motion clip."""
        w, h = self.encoder.img_size
        return self.encoder.num_frames, h, w

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(t, h, w) of the token grid (released model: (3, 5, 9))."""
        size = list(self.input_shape)
        for stride, pad in zip(DOWN_STRIDES, DOWN_PADS, strict=True):
            pads = (pad[4] + pad[5], pad[2] + pad[3], pad[0] + pad[1])
            size = [(n + p - 3) // s + 1 for n, p, s in zip(size, pads, stride, strict=True)]
        return size[0], size[1], size[2]

    @property
    def decoded_shape(self) -> tuple[int, int, int]:
        t, h, w = self.token_grid
        for st, sh, sw in UP_SCALES:
            t, h, w = int(t * st), int(h * sh), int(w * sw)
        return t, h, w

    @property
    def num_tokens(self) -> int:
        return math.prod(self.token_grid)

    @property
    def codebook_size(self) -> int:
        return self.n_embed

    @property
    def causal(self) -> bool:
        return False

    @property
    def temporal_factor(self) -> int:
        return self.encoder.num_frames

    @property
    def regularizer(self) -> str:
        return "vq"

    @property
    def latent_channels(self) -> int:
        return self.embed_dim

    # --- (de)serialisation
    @classmethod
    def from_official(cls, d: Mapping[str, Any], where: str = "config") -> LavitMotionConfig:
        """From the constructor arguments as JSON: ``encoder`` (or ``encoder_config``), ``decoder`` (or
        ``decoder_config``), ``decoder_out_dim``, ``n_embed``, ``embed_dim``; other keys are ignored (the
        official constructor ignores extra keyword arguments)."""
        enc = d.get("encoder", d.get("encoder_config"))
        dec = d.get("decoder", d.get("decoder_config"))
        if not isinstance(enc, Mapping) or not isinstance(dec, Mapping):
            raise ArchConfigError(f"{where}: needs 'encoder' and 'decoder' tables of constructor arguments")
        enc = {k: v for k, v in enc.items() if k not in ("act_layer", "norm_layer")}
        dec = {k: v for k, v in dec.items() if k not in ("act_layer", "norm_layer")}
        try:
            return cls(
                encoder=MotionStackConfig.from_dict(enc, f"{where}: encoder"),
                decoder=MotionStackConfig.from_dict(dec, f"{where}: decoder"),
                decoder_out_dim=int(d.get("decoder_out_dim", 2)),
                n_embed=int(d.get("n_embed", 1024)),
                embed_dim=int(d.get("embed_dim", 32)),
                motion_scale_factor=float(d.get("motion_scale_factor", 10.0)),
            )
        except TypeError as e:
            raise ArchConfigError(f"{where}: {e}") from e

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LavitMotionConfig:
        """From `to_dict`'s structure (a card's [architecture] table); unknown keys are errors."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ArchConfigError(f"unknown motion tokenizer option(s) {', '.join(unknown)}")
        return cls.from_official(d, "architecture")

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.to_dict(),
            "decoder": self.decoder.to_dict(),
            "decoder_out_dim": self.decoder_out_dim,
            "n_embed": self.n_embed,
            "embed_dim": self.embed_dim,
            "motion_scale_factor": self.motion_scale_factor,
        }
