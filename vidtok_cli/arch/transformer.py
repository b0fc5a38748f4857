"""VidTwin's spatial-temporal transformer (STT) encoder and decoder, with the official state-dict names.

Each block attends within a frame (spatial, all tokens) and then along time per token position (temporal,
causal when ``temporal_causal``, as the official flash-attn path computes it), with adaLN-style
modulation from a learned ``scale_shift_table``, norms without affine parameters and a tanh-GELU MLP.

Numerics follow the official block: the norm, the modulation and the residual around the attentions run
in float64, the sin-cos position tables are float64 buffers. Where the official code casts the attention
input and output to bfloat16, vidtok casts to ``attention_dtype``: float32 by default (exact float32
math), bfloat16 with ``official_casts``, which also runs the blocks under fp16 autocast as the official
code does (the official GPU numerics; everything outside the blocks stays float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """(M, dim) float64 table: sin of positions * 10000^(-2i/dim) then cos (the official layout)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.reshape(-1).to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """(h*w, dim) float64 table: the first half encodes the column, the second the row (official order)."""
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, upcast: bool = False) -> Tensor:
    """Scaled dot-product attention on (N, heads, L, d); ``upcast``: float32 math, result in q's dtype."""
    if not upcast:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with torch.autocast(q.device.type, enabled=False):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    return out.to(q.dtype)


class Attention(nn.Module):
    """Multi-head self-attention (``qkv``, ``proj``) over (N, L, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool, upcast: bool = False) -> Tensor:
        n, length, c = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2], causal, upcast)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class Mlp(nn.Module):
    """fc1 -> tanh-approximated GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class STBlock(nn.Module):
    """Spatial attention per frame, temporal attention per token, MLP; modulated by ``scale_shift_table``."""

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, grid_t: int, grid_s: int, causal: bool
    ):
        super().__init__()
        self.grid_t, self.grid_s, self.causal = grid_t, grid_s, causal
        self.attn = Attention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)
        self.attn_temp = Attention(hidden_size, num_heads)

    def forward(self, x: Tensor, tpe: Tensor | None, attention_dtype: torch.dtype, upcast: bool) -> Tensor:
        b, t, s, c = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.scale_shift_table[None].chunk(
            6, 1
        )
        x = x.to(torch.float64)
        x_m = _modulate(_norm(x), shift_msa, scale_msa).to(torch.float64)
        # spatial: all tokens of one frame
        x_s = x_m.reshape(b * t, s, c).to(attention_dtype)
        x_s = self.attn(x_s, causal=False, upcast=upcast).to(attention_dtype).reshape(b, t, s, c)
        x = x + gate_msa * x_s
        # temporal: one token position across frames (the official block reuses gate_msa here)
        x_t = x.permute(0, 2, 1, 3).reshape(b * s, t, c)
        if tpe is not None:
            x_t = x_t + tpe
        x_t = self.attn_temp(x_t.to(attention_dtype), causal=self.causal, upcast=upcast)
        x_t = x_t.reshape(b, s, t, c).permute(0, 2, 1, 3).to(attention_dtype)
        x = x + gate_msa * x_t
        x = x.to(torch.float32)
        x = x + gate_mlp * self.mlp(_modulate(_norm(x), shift_mlp, scale_mlp))
        return x.to(torch.float32)


class PatchEmbed3D(nn.Module):
    """Video (B, C, T, H, W) -> tokens (B, T*h*w, hidden) by a strided Conv3d (zero-padded to whole patches)."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        pt, ph, pw = self.patch_size
        t, h, w = x.shape[-3:]
        x = F.pad(x, (0, -w % pw, 0, -h % ph, 0, -t % pt))
        return self.proj(x).flatten(2).transpose(1, 2)


class FinalLayer(nn.Module):
    """Norm, modulation by ``scale_shift_table`` and a linear map to patch pixels."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_patch * out_channels, bias=True)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: Tensor) -> Tensor:
        shift, scale = self.scale_shift_table[None].chunk(2, dim=1)
        return self.linear(_modulate(_norm(x), shift, scale))


class STTransformer(nn.Module):
    """The official STTEncoder / STTDecoder body (both hold every submodule; each uses its own part).

    ``encode``: video (B, C, T, H, W) -> features (B, hidden, T, h, w); ``decode``: features -> video.
    """

    def __init__(
        self,
        input_size: tuple[int, int, int],
        patch_size: tuple[int, int, int],
        in_channels: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        temporal_causal: bool = True,
    ):
        super().__init__()
        self.input_size, self.patch_size = tuple(input_size), tuple(patch_size)
        self.in_channels, self.hidden_size = in_channels, hidden_size
        self.grid = tuple(i // p for i, p in zip(input_size, patch_size, strict=True))
        t, h, w = self.grid
        self.official_casts = False
        self.register_buffer("pos_embed", sincos_2d(hidden_size, h, w)[None])
        self.register_buffer("pos_embed_temporal", sincos_1d(hidden_size, torch.arange(t))[None])
        self.x_embedder = PatchEmbed3D(self.patch_size, in_channels, hidden_size)
        self.blocks = nn.ModuleList(
            STBlock(hidden_size, num_heads, mlp_ratio, t, h * w, temporal_causal) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, math.prod(self.patch_size), in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: xavier linears, zero temporal projection and output layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for block in self.blocks:
            nn.init.zeros_(block.attn_temp.proj.weight)
            nn.init.zeros_(block.attn_temp.proj.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def _blocks(self, x: Tensor) -> Tensor:
        t, h, w = self.grid
        x = x.reshape(x.shape[0], t, h * w, x.shape[-1])
        x = x + self.pos_embed.to(torch.float64)
        attention_dtype = torch.bfloat16 if self.official_casts else torch.float32
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=self.official_casts):
            for i, block in enumerate(self.blocks):
                tpe = self.pos_embed_temporal.to(torch.float64) if i == 0 else None
                x = block(x, tpe, attention_dtype, self.official_casts)
        return x.reshape(x.shape[0], t * h * w, x.shape[-1])

    def encode(self, x: Tensor) -> Tensor:
        """Video (B, C, T, H, W) -> features (B, hidden, t, h, w) (the STTEncoder forward)."""
        y = self._blocks(self.x_embedder(x))
        t, h, w = self.grid
        return y.transpose(1, 2).reshape(y.shape[0], y.shape[-1], t, h, w)

    def decode(self, z: Tensor) -> Tensor:
        """Features (B, hidden, t, h, w) -> video (B, C, T, H, W) (the STTDecoder forward)."""
        b, c = z.shape[:2]
        y = self.final_layer(self._blocks(z.reshape(b, c, -1).transpose(1, 2)))
        t, h, w = self.grid
        pt, ph, pw = self.patch_size
        y = y.reshape(b, t, h, w, pt, ph, pw, self.in_channels)
        return y.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, self.in_channels, t * pt, h * ph, w * pw)
