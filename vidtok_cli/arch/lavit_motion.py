"""Video-LaVIT's motion tokenizer (``MotionTransformerTokenizer``), official state-dict keys.

A motion clip (B, 2, 24, 20, 36) (x and y motion of 24 frames on a 20x36 grid, normalised by the
extraction) goes through a spatio-temporal transformer encoder that downsamples it to a (3, 5, 9) grid,
a Linear-Tanh-Linear task layer and a vector quantiser (`vq.VectorQuantizer`): 135 tokens. The decoder
upsamples the codebook rows back to (2, 24, 20, 36). Each block attends over space within a frame, then
over time at each position, then applies an MLP; attention has separate ``q_bias``/``v_bias`` (no k
bias). The config (`lavit_config.LavitMotionConfig`) takes the official constructor arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lavit_config import (
    DOWN_PADS,
    DOWN_STRIDES,
    STAGE_BLOCKS,
    UP_SCALES,
    LavitMotionConfig,
    MotionStackConfig,
)
from .vq import VectorQuantizer

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
        qkv = (
            F.linear(x, self.qkv.weight, bias)
            .reshape(n, length, 3, self.num_heads, -1)
            .permute(2, 0, 3, 1, 4)
        )
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
