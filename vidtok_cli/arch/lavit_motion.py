"""Video-LaVIT's motion tokenizer (``MotionTransformerTokenizer``), official state-dict keys.

A motion clip (B, 2, 24, 20, 36) (x and y motion of 24 frames on a 20x36 grid, normalised by the
extraction) goes through a spatio-temporal transformer encoder that downsamples it to a (3, 5, 9) grid,
a Linear-Tanh-Linear task layer and a vector quantiser (`vq.VectorQuantizer`): 135 tokens. The decoder
upsamples the codebook rows back to (2, 24, 20, 36). Each block attends over space within a frame, then
over time at each position, then applies an MLP; attention has separate ``q_bias``/``v_bias`` (no k
bias). The config takes the official constructor arguments (`LavitMotionConfig.from_official`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vq import VectorQuantizer

# The official architecture's fixed schedule: 4 stages of 3 blocks; per stage the encoder's Conv3d
# (k3) stride and explicit zero padding (w0, w1, h0, h1, t0, t1), and the decoder's nearest upsampling.
STAGE_BLOCKS = 3
DOWN_STRIDES = ((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 2, 2))
DOWN_PADS = ((0, 1, 0, 1, 1, 1), (1, 1, 1, 1, 0, 1), (1, 1, 1, 1, 0, 1), (0, 1, 0, 1, 0, 1))
UP_SCALES = ((2.0, 2.0, 2.0), (2.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 2.0, 2.0))


class ArchConfigError(ValueError):
    """An invalid motion tokenizer configuration."""


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
            raise ArchConfigError(f"depth must be {4 * STAGE_BLOCKS} (4 stages of 3 blocks), got {self.depth}")
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


# ----------------------------------------------------------------------------- layers


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over (N, L, C); one qkv projection whose bias is (q_bias, 0, v_bias)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(n, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class SpatioTemporalBlock(nn.Module):
    """Spatial attention within each frame, temporal attention at each position, then an MLP (pre-norm)."""

    def __init__(self, cfg: MotionStackConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.layer_norm_eps
        self.norm0 = nn.LayerNorm(dim, eps=eps)
        self.spatial_attention = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.qk_scale)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.temporal_attention = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, L, C) -> same shape."""
        b, t, length, c = x.shape
        x = x.reshape(b * t, length, c)
        x = x + self.spatial_attention(self.norm0(x))
        x = x.reshape(b, t, length, c).transpose(1, 2).reshape(b * length, t, c)
        x = x + self.temporal_attention(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x.reshape(b, length, t, c).transpose(1, 2)


class Downsample(nn.Module):
    """Zero padding (w0, w1, h0, h1, t0, t1) and a k3 Conv3d over (B, T, H, W, C) tensors."""

    def __init__(self, dim: int, stride: tuple[int, int, int], pad: tuple[int, ...]):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, stride=stride, padding=0)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x.permute(0, 4, 1, 2, 3), self.pad)
        return self.conv(x).permute(0, 2, 3, 4, 1)


class Upsample(nn.Module):
    """Nearest upsampling by ``scale`` (t, h, w) (in float32) and a k3 p1 Conv3d over (B, C, T, H, W)."""

    def __init__(self, dim: int, scale: tuple[float, float, float]):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, stride=1, padding=1)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x.float(), scale_factor=self.scale, mode="nearest").to(x.dtype)
        return self.conv(up)


# ----------------------------------------------------------------------------- encoder / decoder


class TokenizerEncoder(nn.Module):
    """(B, 2, T, H, W) motion -> (B, t, h, w, dim) features (after the final LayerNorm)."""

    def __init__(self, cfg: MotionStackConfig):
        super().__init__()
        w, h = cfg.img_size
        self.pos_embed = nn.Parameter(torch.zeros(1, w * h, cfg.dim))
        self.temp_pos = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.dim))
        self.blocks = nn.ModuleList(SpatioTemporalBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.down_sample_layers = nn.ModuleList(
            Downsample(cfg.dim, s, p) for s, p in zip(DOWN_STRIDES, DOWN_PADS, strict=True)
        )
        self.in_proj = nn.Linear(cfg.in_channel, cfg.dim)
        self.dim = cfg.dim

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        x = self.in_proj(x.permute(0, 2, 3, 4, 1)).reshape(b, t, h * w, self.dim)
        x = x + self.pos_embed.unsqueeze(0) + self.temp_pos.unsqueeze(2)
        for stage, down in enumerate(self.down_sample_layers):
            for block in self.blocks[stage * STAGE_BLOCKS : (stage + 1) * STAGE_BLOCKS]:
                x = block(x)
            x = down(x.reshape(b, t, h, w, self.dim))
            t, h, w = x.shape[1:4]
            x = x.reshape(b, t, h * w, self.dim)
        return self.norm(x).reshape(b, t, h, w, self.dim)


class TokenizerDecoder(nn.Module):
    """(B, t, h, w, embed_dim) codes -> (B, T, H, W, dim) features (after the final LayerNorm)."""

    def __init__(self, cfg: MotionStackConfig):
        super().__init__()
        self.blocks = nn.ModuleList(SpatioTemporalBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.in_proj = nn.Linear(cfg.in_channel, cfg.dim)
        self.up_sample_layers = nn.ModuleList(Upsample(cfg.dim, s) for s in UP_SCALES)
        self.dim = cfg.dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_proj(x)
        for stage, up in enumerate(self.up_sample_layers):
            x = up(x.permute(0, 4, 1, 2, 3))
            b, c, t, h, w = x.shape
            x = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
            for block in self.blocks[stage * STAGE_BLOCKS : (stage + 1) * STAGE_BLOCKS]:
                x = block(x)
            x = x.reshape(b, t, h, w, c)
        return self.norm(x)


def _task_layer(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, out))


class MotionTransformerTokenizer(nn.Module):
    """The whole motion tokenizer (see the module doc); ``cfg`` is its `LavitMotionConfig`."""

    def __init__(self, cfg: LavitMotionConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = TokenizerEncoder(cfg.encoder)
        self.decoder = TokenizerDecoder(cfg.decoder)
        self.encode_task_layer = _task_layer(cfg.encoder.dim, cfg.embed_dim)
        self.decode_task_layer = _task_layer(cfg.decoder.dim, cfg.decoder_out_dim)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)

    def check_input(self, x: Tensor) -> None:
        """Raises ValueError unless x is (B, 2, T, H, W) with the configured clip shape."""
        if x.ndim != 5 or x.shape[1] != 2 or tuple(x.shape[2:]) != self.cfg.input_shape:
            raise ValueError(
                f"motion clips must be (B, 2, {', '.join(map(str, self.cfg.input_shape))}), got {tuple(x.shape)}"
            )

    def quantizer_input(self, x: Tensor) -> Tensor:
        """What the quantiser gets (before its l2-normalisation): (B, t, h, w, embed_dim)."""
        self.check_input(x)
        feats = self.encoder(x)
        return self.encode_task_layer(feats.to(self.encode_task_layer[-1].weight.dtype))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(codebook rows (B, t, h, w, embed_dim), tokens (B, t*h*w) int64, row-major over (t, h, w))."""
        z = self.quantizer_input(x)
        rows, ids = self.quantize.tokenize(z)
        return rows.view(z.shape).to(z.dtype), ids.view(x.shape[0], -1)

    def decode(self, quantize: Tensor) -> Tensor:
        """Codes (B, t, h, w, embed_dim) -> motion (B, 2, T, H, W) in the input's units."""
        return self.decode_task_layer(self.decoder(quantize)).permute(0, 4, 1, 2, 3)

    def codes(self, tokens: Tensor) -> Tensor:
        """Token ids (B, t*h*w) -> codebook rows (B, t, h, w, embed_dim)."""
        t, h, w = self.cfg.token_grid
        if tokens.ndim != 2 or tokens.shape[1] != t * h * w:
            raise ValueError(f"motion tokens must be (B, {t * h * w}), got {tuple(tokens.shape)}")
        return self.quantize.lookup(tokens).reshape(tokens.shape[0], t, h, w, -1)

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """Token ids (B, t*h*w) -> motion (B, 2, T, H, W) in the input's units."""
        return self.decode(self.codes(tokens))

    def rescale(self, motion: Tensor, height: int, width: int) -> Tensor:
        """The official ``reconstruct`` output: bicubic resize of each frame to (height, width) (no
        antialias, align_corners False), divided by ``motion_scale_factor``."""
        b, c, t, h, w = motion.shape
        frames = motion.transpose(1, 2).reshape(b * t, c, h, w).float()
        up = F.interpolate(frames, (height, width), mode="bicubic", align_corners=False)
        up = up.reshape(b, t, c, height, width).transpose(1, 2) / self.cfg.motion_scale_factor
        return up.to(motion.dtype)

    def reconstruct(self, x: Tensor, height: int, width: int) -> Tensor:
        """The official ``reconstruct(x, height, width)``."""
        return self.rescale(self.decode(self.encode(x)[0]), height, width)

    def reconstruct_from_token(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """The official ``reconstruct_from_token(tokens, height, width)``."""
        return self.rescale(self.decode_tokens(tokens), height, width)


def build_model(cfg: LavitMotionConfig) -> MotionTransformerTokenizer:
    """A randomly initialised motion tokenizer for ``cfg``."""
    return MotionTransformerTokenizer(cfg)
