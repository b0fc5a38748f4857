"""Frozen architecture config of a VidTwin model, and its translation from the official YAML params."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ArchConfigError, FlatConfig

ENGINE_TARGET = "VidAutoEncoderQformerCompactSymVidVAE"  # the official model class (model.target)
_STT_KEYS = (
    "in_channels", "input_size", "patch_size", "hidden_size", "depth", "num_heads", "temporal_casual", "mlp_ratio",
)  # fmt: skip


def _halve(n: int, times: int) -> int:
    """The size after ``times`` stride-2, padding-1, kernel-3 convolutions."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


@dataclass(frozen=True)
class VidTwinConfig(FlatConfig):
    """Everything needed to build the official ``VidAutoEncoderQformerCompactSymVidVAE`` (official names).

    The STT encoder and decoder share ``input_size`` (T, H, W), ``patch_size``, ``hidden_size``, ``depth``
    and ``num_heads``; ``temporal_causal`` is the official ``temporal_casual`` (causal temporal attention,
    as the flash-attn path applies it). The Q-Former is BLIP-2's with the Blip2QFormerConfig defaults
    (GELU, LayerNorm eps 1e-12, cross-attention every ``qformer_cross_attention_frequency`` layers).
    """

    input_size: tuple[int, int, int] = (16, 224, 224)
    patch_size: tuple[int, int, int] = (1, 16, 16)
    in_channels: int = 3
    hidden_size: int = 768
    depth: int = 16
    num_heads: int = 12
    mlp_ratio: float = 4.0
    temporal_causal: bool = True
    num_query_tokens: int = 16
    query_hidden_size: int = 64
    qformer_num_hidden_layers: int = 6
    qformer_num_attention_heads: int = 8
    qformer_intermediate_size: int = 768
    qformer_cross_attention_frequency: int = 2
    init_ch: int = 128
    cont_num_blocks: int = 1
    expect_ch: int = 8
    d_dim: int = 8
    downsample_motion: bool = True
    motion_num_blocks: int = 1

    def __post_init__(self) -> None:
        for name in ("input_size", "patch_size"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        self.validate()

    # ----------------------------------------------------------------- derived
    @property
    def grid(self) -> tuple[int, int, int]:
        """The token grid (T, h, w) of the STT encoder."""
        return tuple(i // p for i, p in zip(self.input_size, self.patch_size, strict=True))  # type: ignore[return-value]

    @property
    def structure_shape(self) -> tuple[int, int, int, int]:
        """Per-sample structure latent (F_q, h', w', C)."""
        _, h, w = self.grid
        n = self.cont_num_blocks
        return (self.num_query_tokens, _halve(h, n), _halve(w, n), self.expect_ch)

    @property
    def dynamics_size(self) -> int:
        """The spatial length of the dynamics latents (w' of x, h' of y)."""
        n = self.motion_num_blocks if self.downsample_motion else 0
        return _halve(self.grid[1], n)

    @property
    def dynamics_shape(self) -> tuple[int, int, int]:
        """Per-sample dynamics latent (d_dim, T, w') (x) or (d_dim, T, h') (y)."""
        return (self.d_dim, self.grid[0], self.dynamics_size)

    @property
    def regularizer(self) -> str:
        """Always "kl" (the diagonal Gaussian of the official VAE)."""
        return "kl"

    @property
    def clip_frames(self) -> int:
        return self.input_size[0]

    @property
    def spatial_factor(self) -> int:
        return self.patch_size[1]

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ArchConfigError(msg)

        if len(self.input_size) != 3 or len(self.patch_size) != 3:
            bad("input_size and patch_size are (T, H, W)")
        if any(i <= 0 for i in (*self.input_size, *self.patch_size)):
            bad("input_size and patch_size must be positive")
        if any(i % p for i, p in zip(self.input_size, self.patch_size, strict=True)):
            bad(f"input_size {self.input_size} must be a multiple of patch_size {self.patch_size}")
        if self.patch_size[0] != 1:
            bad("only a temporal patch size of 1 is supported (as in the official configs)")
        if self.patch_size[1] != self.patch_size[2] or self.input_size[1] != self.input_size[2]:
            bad("VidTwin needs square frames and patches (the dynamics up-projection is shared by x and y)")
        if self.hidden_size % self.num_heads or self.hidden_size % 4:
            bad("hidden_size must be a multiple of num_heads and of 4 (sin-cos tables)")
        if self.query_hidden_size % self.qformer_num_attention_heads:
            bad("query_hidden_size must be a multiple of qformer_num_attention_heads")
        for name in ("depth", "num_query_tokens", "qformer_num_hidden_layers", "qformer_intermediate_size",
                     "init_ch", "expect_ch", "d_dim", "in_channels", "qformer_cross_attention_frequency"):  # fmt: skip
            if getattr(self, name) <= 0:
                bad(f"{name} must be positive")
        if self.cont_num_blocks < 0 or self.motion_num_blocks < 0:
            bad("cont_num_blocks and motion_num_blocks must be >= 0")

    # ----------------------------------------------------------- conversions

    @classmethod
    def from_official(cls, params: Mapping[str, Any]) -> VidTwinConfig:
        """Build from the official ``model.params`` (encoder/decoder/temporal_qformer configs and heads)."""
        enc = dict((params.get("encoder_config") or {}).get("params") or {})
        dec = dict((params.get("decoder_config") or {}).get("params") or enc)
        q = dict((params.get("temporal_qformer_config") or {}).get("params") or {})
        for key in _STT_KEYS:
            if enc.get(key) != dec.get(key):
                raise ArchConfigError(f"decoder {key} differs from the encoder's ({dec.get(key)!r})")
        for key in ("space_scale", "time_scale"):
            if float(enc.get(key, 1.0)) != 1.0 or float(dec.get(key, 1.0)) != 1.0:
                raise ArchConfigError(f"{key} other than 1 is not supported")
        for key in ("no_temporal", "temporal_group", "pred_sigma"):
            if enc.get(key):
                raise ArchConfigError(f"encoder {key}: true is not supported")
        if params.get("shuffle_content"):
            raise ArchConfigError("shuffle_content: true is a training variant that is not supported")
        if int(q.get("encoder_hidden_size", enc.get("hidden_size", 768))) != int(enc.get("hidden_size", 768)):
            raise ArchConfigError("temporal_qformer encoder_hidden_size must equal the STT hidden_size")
        return cls(
            input_size=tuple(enc["input_size"]),
            patch_size=tuple(enc.get("patch_size", (1, 2, 2))),
            in_channels=int(enc.get("in_channels", 3)),
            hidden_size=int(enc["hidden_size"]),
            depth=int(enc["depth"]),
            num_heads=int(enc["num_heads"]),
            mlp_ratio=float(enc.get("mlp_ratio", 4.0)),
            temporal_causal=bool(enc.get("temporal_casual", True)),
            num_query_tokens=int(q.get("num_query_tokens", 3)),
            query_hidden_size=int(q.get("query_hidden_size", 64)),
            qformer_num_hidden_layers=int(q.get("num_hidden_layers", 6)),
            qformer_num_attention_heads=int(q.get("num_attention_heads", 8)),
            qformer_intermediate_size=int(q.get("intermediate_size", 768)),
            init_ch=int(params.get("init_ch", 128)),
            cont_num_blocks=int(params.get("cont_num_blocks", 2)),
            expect_ch=int(params.get("expect_ch", 4)),
            d_dim=int(params.get("d_dim", 16)),
            downsample_motion=bool(params.get("downsample_motion", False)),
            motion_num_blocks=int(params.get("motion_num_blocks", 2)),
        )
