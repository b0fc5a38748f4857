"""VidTwin (the official ``VidAutoEncoderQformerCompactSymVidVAE``) in pure PyTorch, official key names.

Encoding: the STT encoder gives features z (B, hidden, T, h, w). *Structure*: a BLIP-2 Q-Former reads each
token position's time series and returns ``num_query_tokens`` queries; convolutions shrink the (h, w) map
to KL moments, whose mode is the structure latent (B, F_q, h', w', C). *Dynamics*: z (optionally
down-sampled by strided convolutions) averaged over y gives the x-profile, over x the y-profile; a shared
convolution over (time, position) gives KL moments of ``dynamics_x`` (B, d, T, w') and ``dynamics_y``
(B, d, T, h'). Decoding maps each part back to (B, hidden, T, h, w), adds them (or takes one part:
``only="structure"`` / ``"dynamics"``, the official ``only_part`` "content" / "motion") and runs the STT
decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .regularizers import DiagonalGaussian
from .transformer import STTransformer
from .vidtwin_config import VidTwinConfig

ONLY_PARTS = ("structure", "dynamics")
STREAMS = ("structure", "dynamics_x", "dynamics_y")


# ----------------------------------------------------------------------------- BLIP-2 Q-Former


class _QFormerMultiHeadAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_dim, hidden)
        self.value = nn.Linear(kv_dim, hidden)

    def _split(self, x: Tensor) -> Tensor:
        n, length, c = x.shape
        return x.view(n, length, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(context)), self._split(self.value(context))
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)


class _QFormerResidual(nn.Module):
    """dense -> add the block input -> LayerNorm (the BERT output sub-layer)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _QFormerAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_dim: int):
        super().__init__()
        self.attention = _QFormerMultiHeadAttention(hidden, heads, kv_dim)
        self.output = _QFormerResidual(hidden, hidden)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return self.output(self.attention(x, context), x)


class _QFormerIntermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class _QFormerLayer(nn.Module):
    """Self-attention of the queries, cross-attention to the encoder features (every ``frequency`` layers),
    feed-forward."""

    def __init__(self, cfg: VidTwinConfig, index: int):
        super().__init__()
        hidden, heads = cfg.query_hidden_size, cfg.qformer_num_attention_heads
        self.attention = _QFormerAttention(hidden, heads, hidden)
        self.has_cross_attention = index % cfg.qformer_cross_attention_frequency == 0
        if self.has_cross_attention:
            self.crossattention = _QFormerAttention(hidden, heads, cfg.hidden_size)
        self.intermediate_query = _QFormerIntermediate(hidden, cfg.qformer_intermediate_size)
        self.output_query = _QFormerResidual(cfg.qformer_intermediate_size, hidden)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.attention(x, x)
        if self.has_cross_attention:
            x = self.crossattention(x, context)
        return self.output_query(self.intermediate_query(x), x)


class _QFormerEncoder(nn.Module):
    def __init__(self, cfg: VidTwinConfig):
        super().__init__()
        self.layer = nn.ModuleList(_QFormerLayer(cfg, i) for i in range(cfg.qformer_num_hidden_layers))


class _QFormerModel(nn.Module):
    def __init__(self, cfg: VidTwinConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(cfg.query_hidden_size, eps=1e-12)
        self.encoder = _QFormerEncoder(cfg)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        x = self.layernorm(queries)
        for layer in self.encoder.layer:
            x = layer(x, context)
        return x


class TemporalQFormer(nn.Module):
    """Learned queries (``query_embeds``) read a sequence (N, L, hidden) -> (N, num_query_tokens, d_q)."""

    def __init__(self, cfg: VidTwinConfig):
        super().__init__()
        self.qformer = _QFormerModel(cfg)
        self.query_embeds = nn.Parameter(torch.randn(cfg.num_query_tokens, cfg.query_hidden_size))

    def forward(self, sequence: Tensor) -> Tensor:
        queries = self.query_embeds[None].expand(sequence.shape[0], -1, -1)
        return self.qformer(queries, sequence)


# ----------------------------------------------------------------------------- the model


@dataclass
class VidTwinEncoding:
    """Everything one encoding gives: raw features ``z``, the three latents and their KL moments."""

    z: Tensor
    structure: Tensor
    dynamics_x: Tensor
    dynamics_y: Tensor
    structure_moments: Tensor
    dynamics_x_moments: Tensor
    dynamics_y_moments: Tensor

    @property
    def latents(self) -> dict[str, Tensor]:
        return {"structure": self.structure, "dynamics_x": self.dynamics_x, "dynamics_y": self.dynamics_y}

    def kl_loss(self) -> Tensor:
        """The sum of the three KL losses (each summed over a sample, averaged over the batch)."""
        reg = DiagonalGaussian()
        moments = (self.structure_moments, self.dynamics_x_moments, self.dynamics_y_moments)
        return sum((reg.kl_loss(m.float()) for m in moments), torch.zeros((), device=self.z.device))


class VidTwinModel(nn.Module):
    """The official VidTwin autoencoder (see the module doc); ``cfg`` is a `VidTwinConfig`."""

    def __init__(self, cfg: VidTwinConfig):
        super().__init__()
        self.cfg = cfg
        stt = dict(
            input_size=cfg.input_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
            hidden_size=cfg.hidden_size, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
            temporal_causal=cfg.temporal_causal,
        )  # fmt: skip
        self.encoder = STTransformer(**stt)
        self.decoder = STTransformer(**stt)
        self.regularization = DiagonalGaussian()
        self.temporal_qformer = TemporalQFormer(cfg)
        t, h, _ = cfg.grid
        hidden, dq = cfg.hidden_size, cfg.query_hidden_size
        self.cont_emb = nn.Sequential(
            nn.Linear(dq, hidden), nn.ReLU(), nn.Conv1d(cfg.num_query_tokens, t, 1), nn.ReLU()
        )
        self.conv_in = nn.Conv2d(dq, cfg.init_ch, 3, 1, 1)
        ch, down = cfg.init_ch, []
        for _ in range(cfg.cont_num_blocks):
            down += [nn.Conv2d(ch, 2 * ch, 3, 2, 1), nn.ReLU()]
            ch *= 2
        self.content_downsample_blocks = nn.Sequential(*down)
        max_ch, up = ch, []
        for _ in range(cfg.cont_num_blocks):
            up += [nn.Conv2d(ch, ch // 2, 3, 1, 1), nn.ReLU(), nn.Upsample(scale_factor=2)]
            ch //= 2
        self.content_upsample_blocks = nn.Sequential(*up)
        self.bottle_down = nn.Conv2d(max_ch, 2 * cfg.expect_ch, 3, 1, 1)
        self.bottle_up = nn.Sequential(nn.Conv2d(cfg.expect_ch, max_ch, 3, 1, 1), nn.ReLU())
        self.conv_out = nn.Conv2d(cfg.init_ch, dq, 3, 1, 1)
        self.motion_emb = nn.Sequential(
            nn.Linear(cfg.d_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.motion_head = nn.Conv2d(hidden, 2 * cfg.d_dim, 3, 1, 1)
        if cfg.downsample_motion:
            blocks = []
            for _ in range(cfg.motion_num_blocks):
                blocks += [nn.Conv2d(hidden, hidden, 3, 2, 1), nn.ReLU()]
            self.downsample_motion_module = nn.Sequential(*blocks)
            self.up_motion = nn.Sequential(
                nn.Linear(cfg.dynamics_size, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()
            )

    @property
    def official_casts(self) -> bool:
        """Whether the STT blocks cast attention to bfloat16 as the official code does (with fp16 autocast:
        the official GPU numerics); False: exact float32 math."""
        return self.encoder.official_casts

    @official_casts.setter
    def official_casts(self, value: bool) -> None:
        self.encoder.official_casts = self.decoder.official_casts = bool(value)

    # ------------------------------------------------------------------ encode
    def _check_input(self, x: Tensor) -> None:
        want = (self.cfg.in_channels, *self.cfg.input_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(f"VidTwin takes (B, {', '.join(map(str, want))}) clips, got {tuple(x.shape)}")

    def encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(z, structure moments (B, 2C, F_q, h', w'), dynamics_x moments, dynamics_y moments)."""
        self._check_input(x)
        z = self.encoder.encode(x)
        b, c, t, h, w = z.shape
        seq = z.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        q = self.temporal_qformer(seq)
        fq, dq = q.shape[1:]
        q = q.reshape(b, h, w, fq, dq).permute(0, 3, 4, 1, 2).reshape(b * fq, dq, h, w)
        s = self.bottle_down(self.content_downsample_blocks(self.conv_in(q)))
        s = s.reshape(b, fq, *s.shape[1:]).transpose(1, 2)
        m = z
        if self.cfg.downsample_motion:
            m = z.transpose(1, 2).reshape(b * t, c, h, w)
            m = self.downsample_motion_module(m)
            m = m.reshape(b, t, *m.shape[1:]).transpose(1, 2)
        mx = self.motion_head(m.mean(dim=-2))
        my = self.motion_head(m.mean(dim=-1))
        return z, s, mx, my

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> VidTwinEncoding:
        """Clips (B, C, T, H, W) in [-1, 1] -> `VidTwinEncoding` (latents = posterior mode unless ``sample``)."""
        z, s, mx, my = self.encode_moments(x)
        reg = self.regularization
        structure = reg(s, sample, generator).permute(0, 2, 3, 4, 1)
        return VidTwinEncoding(
            z, structure, reg(mx, sample, generator), reg(my, sample, generator), s, mx, my
        )

    # ------------------------------------------------------------------ decode
    def decoder_input(
        self,
        structure: Tensor | None,
        dynamics_x: Tensor | None,
        dynamics_y: Tensor | None,
        only: str | None = None,
    ) -> Tensor:
        """The STT decoder's input (B, hidden, T, h, w): structure part + dynamics parts (or one of them).

        The part ``only`` leaves out may be None."""
        if only not in (None, *ONLY_PARTS):
            raise ValueError(f"only must be None or one of {ONLY_PARTS}, got {only!r}")
        _, h, w = self.cfg.grid
        parts = []
        if only in (None, "structure"):
            assert structure is not None
            b, fq = structure.shape[:2]
            s = structure.permute(0, 1, 4, 2, 3).reshape(b * fq, structure.shape[-1], *structure.shape[2:4])
            s = self.conv_out(self.content_upsample_blocks(self.bottle_up(s)))
            if s.shape[2] > h:  # odd grids: the up-sampled map is centre-cropped
                top = (s.shape[2] - h) // 2
                s = s[:, :, top : top + h, top : top + w]
            dq = s.shape[1]
            s = s.reshape(b, fq, dq, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, fq, dq)
            vt = self.cont_emb(s)  # (B h w, T, hidden)
            parts.append(vt.reshape(b, h, w, *vt.shape[1:]).permute(0, 4, 3, 1, 2))
        if only in (None, "dynamics"):
            assert dynamics_x is not None and dynamics_y is not None
            vx = self.motion_emb(dynamics_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, hidden, T, w')
            vy = self.motion_emb(dynamics_y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if self.cfg.downsample_motion:
                vx, vy = self.up_motion(vx), self.up_motion(vy)
            parts += [
                vx[:, :, :, None, :].expand(-1, -1, -1, h, -1),
                vy[:, :, :, :, None].expand(-1, -1, -1, -1, w),
            ]
        out = parts[0]
        for part in parts[1:]:  # left to right, as the official sum
            out = out + part
        return out

    def decode(
        self,
        structure: Tensor | None,
        dynamics_x: Tensor | None,
        dynamics_y: Tensor | None,
        only: str | None = None,
    ) -> Tensor:
        """Latents -> clips (B, C, T, H, W); ``only``: "structure" or "dynamics" decodes one part."""
        return self.decoder.decode(self.decoder_input(structure, dynamics_x, dynamics_y, only))

    def forward(self, x: Tensor) -> Tensor:
        enc = self.encode(x)
        return self.decode(enc.structure, enc.dynamics_x, enc.dynamics_y)


def build_model(cfg: VidTwinConfig) -> VidTwinModel:
    """A randomly initialised VidTwin model for ``cfg``."""
    return VidTwinModel(cfg)
