"""VidTok encoder, decoder and autoencoder: causal v1.0, causal v1.1 and non-causal, from one config.

Parameter names are the official state-dict keys (``encoder.*``, ``decoder.*``), so official weights
load with strict checking and no renaming.

Frame-count conventions (causal models, temporal factor ``tdf``):

* ``encode`` pads the clip in front with copies of frame 0 exactly as the official encoder does
  (v1.0: ``tdf - 1`` frames when ``T % tdf != 0``; v1.1: ``tdf - T % tdf`` frames), giving
  ``t = ceil(T / tdf)`` latents for ``T = 1 + k * tdf`` (the native lengths: 1, 5, 9, ... for 4x).
* ``decode`` returns ``1 + tdf * (t - 1)`` frames for ``t`` latents, aligned so that output frame
  ``-i`` reconstructs input frame ``-i``. This is the official v1.0 decoder output; for v1.1 the official
  decoder returns ``tdf * t`` frames of which the official engine keeps the last ``T``, which for native
  lengths are exactly the frames returned here.
* Streaming (``encode_chunk``/``decode_chunk``) gives the same numbers as whole-clip processing for any
  chunk sizes; the stream must start with the clip's first frame and, to equal ``encode``, hold a
  native number of frames in total.

Non-causal models map ``T`` frames (a multiple of 4) to ``T / 4`` latents and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import VidTokConfig
from .layers import (
    CausalConv3d,
    FrameAttention,
    ResnetBlock2D,
    ResnetBlock3D,
    StreamState,
    SymConv3d,
    TemporalResBlock,
    apply_norm,
    assign_cache_keys,
    channels_last,
    in_float32,
    make_norm,
    silu,
)
from .regularizers import FSQ, DiagonalGaussian
from .resample import Downsample, TimeDownsample, TimeUpsample, Upsample


class _Level(nn.Module):
    """Container that only provides the official key prefixes (``block``, ``attn``, ``downsample``...)."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, cfg: VidTokConfig, replicate: bool):
        super().__init__()
        self.block_1 = ResnetBlock3D(channels, cfg.norm_layer, cfg.causal, replicate, cfg.dropout)
        self.attn_1 = FrameAttention(channels, cfg.norm_layer, cfg.causal)
        self.block_2 = ResnetBlock3D(channels, cfg.norm_layer, cfg.causal, replicate, cfg.dropout)

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x, state)), state)


def _conv3(cfg: VidTokConfig, cin: int, cout: int, replicate: bool) -> nn.Module:
    if cfg.causal:
        return CausalConv3d(cin, cout, 3, replicate=replicate)
    return SymConv3d(cin, cout, 3, padding=1)


class _Layout:
    """The activation layout of a model: channels-last for wide models (oneDNN's convolutions are
    faster there), else the plain layout (narrow convolutions return it anyway)."""

    def __init__(self, cfg: VidTokConfig):
        self.channels_last = cfg.ch >= 64

    def __call__(self, x: Tensor) -> Tensor:
        return channels_last(x) if self.channels_last else x


class Encoder(nn.Module):
    """VidTok encoder: video (B, in_channels, T, H, W) -> moments (KL) or pre-quantisation latent (FSQ)."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        self.cfg = cfg
        self.layout = _Layout(cfg)
        replicate = cfg.version == "v1.1"
        ch, mult = cfg.ch, cfg.ch_mult
        self.conv_in = _conv3(cfg, cfg.in_channels, ch, replicate)
        self.down = nn.ModuleList()
        self.down_temporal = nn.ModuleList()
        in_mult = (1, *mult)
        for i in range(cfg.num_levels):
            block_in, block_out = ch * in_mult[i], ch * mult[i]
            spatial = [
                ResnetBlock2D(block_in if j == 0 else block_out, block_out, cfg.norm_layer, cfg.dropout)
                for j in range(cfg.num_res_blocks)
            ]
            temporal = [
                TemporalResBlock(block_out, cfg.norm_layer, cfg.causal, replicate, cfg.dropout)
                for _ in range(cfg.num_res_blocks)
            ]
            level, level_t = _Level(spatial), _Level(temporal)
            if i in cfg.enc_spatial_ds:
                level.downsample = Downsample(block_out)
                if i in cfg.enc_tempo_ds:
                    level_t.downsample = TimeDownsample(block_out, cfg.causal, replicate)
            self.down.append(level)
            self.down_temporal.append(level_t)
        width = ch * mult[-1]
        self.mid = _Mid(width, cfg, replicate)
        self.norm_out = make_norm(cfg.norm_layer, width)
        out = 2 * cfg.z_channels if cfg.double_z else cfg.z_channels
        self.conv_out = _conv3(cfg, width, out, replicate)
        self.norm_scope = "frame" if cfg.causal else "clip"

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent height and width for input frames of the given size."""
        for _ in self.cfg.enc_spatial_ds:
            height, width = (height - 2) // 2 + 1, (width - 2) // 2 + 1
        return height, width

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        out_channels = self.conv_out.conv.out_channels if self.cfg.causal else self.conv_out.out_channels
        if x.shape[2] == 0:
            return x.new_zeros(x.shape[0], out_channels, 0, *self.output_size(*x.shape[-2:]))
        h = self.layout(self.conv_in(self.layout(x), state))
        for i in range(self.cfg.num_levels):
            level, level_t = self.down[i], self.down_temporal[i]
            for block_s, block_t in zip(level.block, level_t.block, strict=True):
                h = self.layout(block_t(self.layout(block_s(h)), state))
            if hasattr(level, "downsample"):
                h = self.layout(level.downsample(h))
                if hasattr(level_t, "downsample"):
                    h = self.layout(level_t.downsample(h, state))
                    if h.shape[2] == 0:  # this chunk completes no latent yet
                        return x.new_zeros(x.shape[0], out_channels, 0, *self.output_size(*x.shape[-2:]))
        h = self.layout(self.mid(h, state))
        h = silu(apply_norm(self.norm_out, h, self.norm_scope))
        return in_float32(self.conv_out, h, state).contiguous()  # the latent head in float32


class Decoder(nn.Module):
    """VidTok decoder: latent (B, z_channels, t, h, w) -> video (B, out_ch, T', H, W) before trimming."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        self.cfg = cfg
        self.layout = _Layout(cfg)
        replicate = cfg.version == "v1.1"
        linear = cfg.interpolation_mode == "trilinear"
        ch, mult = cfg.ch, cfg.ch_mult
        block_in = ch * mult[-1]
        self.conv_in = _conv3(cfg, cfg.z_channels, block_in, replicate)
        self.mid = _Mid(block_in, cfg, replicate)
        up: list[nn.Module] = [nn.Module()] * cfg.num_levels
        up_t: list[nn.Module] = [nn.Module()] * cfg.num_levels
        group = 1
        for i in reversed(range(cfg.num_levels)):
            block_out = ch * mult[i]
            spatial = [
                ResnetBlock2D(block_in if j == 0 else block_out, block_out, cfg.norm_layer, cfg.dropout)
                for j in range(cfg.num_res_blocks + 1)
            ]
            block_in = block_out
            temporal = [
                TemporalResBlock(block_out, cfg.norm_layer, cfg.causal, replicate, cfg.dropout)
                for _ in range(cfg.num_res_blocks + 1)
            ]
            level, level_t = _Level(spatial), _Level(temporal)
            if i in cfg.dec_spatial_us:
                level.upsample = Upsample(block_out)
            if i in cfg.dec_tempo_us:
                level_t.upsample = TimeUpsample(block_out, cfg.causal, replicate, linear=linear, group=group)
                group *= 2
            up[i], up_t[i] = level, level_t
        self.up = nn.ModuleList(up)
        self.up_temporal = nn.ModuleList(up_t)
        self.norm_out = make_norm(cfg.norm_layer, block_in)
        self.conv_out = _conv3(cfg, block_in, cfg.out_ch, replicate)
        self.norm_scope = "frame" if cfg.causal else "clip"

    def forward(self, z: Tensor, state: StreamState) -> Tensor:
        scale = 2 ** len(self.cfg.dec_spatial_us)
        empty = z.new_zeros(z.shape[0], self.cfg.out_ch, 0, z.shape[3] * scale, z.shape[4] * scale)
        if z.shape[2] == 0 and not state.final:
            return empty
        # with look-ahead layers (v1.1 trilinear) a chunk may hold no frame at some stage while a
        # final chunk still has frames to flush further down, so empty tensors flow through
        h = self.layout(self.conv_in(self.layout(z), state))
        if h.shape[2]:
            h = self.layout(self.mid(h, state))
        for i in reversed(range(self.cfg.num_levels)):
            level, level_t = self.up[i], self.up_temporal[i]
            if h.shape[2]:
                for block_s, block_t in zip(level.block, level_t.block, strict=True):
                    h = self.layout(block_t(self.layout(block_s(h)), state))
            else:
                h = h.new_zeros(h.shape[0], self.cfg.ch * self.cfg.ch_mult[i], 0, *h.shape[3:])
            if hasattr(level, "upsample"):
                if h.shape[2]:
                    h = self.layout(level.upsample(h))
                else:
                    h = h.new_zeros(*h.shape[:3], 2 * h.shape[3], 2 * h.shape[4])
                if hasattr(level_t, "upsample"):
                    h = self.layout(level_t.upsample(h, state))
        if h.shape[2] == 0:
            return empty
        h = apply_norm(self.norm_out, h, self.norm_scope)
        if isinstance(self.conv_out, CausalConv3d):
            return self.conv_out(h, state, act=True).contiguous()
        return self.conv_out(silu(h), state).contiguous()


@dataclass
class EncodeOutput:
    """Result of encoding.

    ``latent``: what the decoder takes (KL: the posterior mean, or a sample when asked; FSQ: the
    quantised codes). ``indices``: FSQ token indices (B, t, h, w) int64, else None. ``moments``: the raw
    encoder output (KL: mean and log-variance stacked on channels; FSQ: the pre-quantisation latent).
    """

    latent: Tensor
    indices: Tensor | None
    moments: Tensor


class VidTokModel(nn.Module):
    """A VidTok autoencoder (encoder + regularizer + decoder) with whole-clip and streaming APIs."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.regularization: nn.Module = (
            FSQ(cfg.fsq_levels) if cfg.regularizer == "fsq" else DiagonalGaussian()
        )
        assign_cache_keys(self)

    # ------------------------------------------------------------------ properties
    @property
    def temporal_factor(self) -> int:
        return self.cfg.time_downsample_factor

    @property
    def spatial_factor(self) -> int:
        return self.cfg.spatial_factor

    @property
    def is_causal(self) -> bool:
        return self.cfg.causal

    def init_weights_(self) -> None:
        """Official initialisation for training from scratch (temporal blocks start as identity)."""
        for m in self.modules():
            if isinstance(m, TemporalResBlock):
                m.zero_init_()

    # ------------------------------------------------------------------ whole clips
    def _pad_input(self, x: Tensor) -> Tensor:
        """The official encoder's front padding for a whole clip."""
        cfg, t = self.cfg, x.shape[2]
        if not cfg.causal or t % cfg.time_downsample_factor == 0:
            return x
        n = cfg.time_downsample_factor - (1 if cfg.version == "v1.0" else t % cfg.time_downsample_factor)
        front = x[:, :, :1].expand(-1, -1, n, -1, -1) if cfg.init_pad_mode == "replicate" else x[:, :, :1] * 0
        return torch.cat([front, x], dim=2)

    def regularize(
        self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> EncodeOutput:
        """Applies the regularizer (KL mean/sample or FSQ) to encoder moments, e.g. blended tiles."""
        return self._regularize(moments, sample, generator)

    def _regularize(self, moments: Tensor, sample: bool, generator: torch.Generator | None) -> EncodeOutput:
        if isinstance(self.regularization, FSQ):
            latent, indices = self.regularization(moments)
            return EncodeOutput(latent, indices, moments)
        return EncodeOutput(self.regularization(moments, sample=sample, generator=generator), None, moments)

    def _check_video(self, x: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"expected a video tensor (B, {self.cfg.in_channels}, T, H, W), got {tuple(x.shape)}"
            )
        if not self.cfg.causal and x.shape[2] < 4:
            raise ValueError(f"a non-causal model needs at least 4 frames, got {x.shape[2]}")

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> EncodeOutput:
        """Encodes a whole clip x (B, 3, T, H, W) in [-1, 1]."""
        self._check_video(x)
        moments = self.encoder(self._pad_input(x), StreamState(final=True))
        return self._regularize(moments, sample, generator)

    def decode(self, latent: Tensor) -> Tensor:
        """Decodes a whole latent (B, z, t, h, w) into frames (see the module doc for the frame count)."""
        if latent.ndim != 5 or latent.shape[1] != self.cfg.z_channels:
            raise ValueError(
                f"expected a latent (B, {self.cfg.z_channels}, t, h, w), got {tuple(latent.shape)}"
            )
        out = self.decoder(latent, StreamState(final=True))
        return out[:, :, self._decoder_drop :] if self.cfg.causal else out

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decodes FSQ token indices (B, t, h, w)."""
        return self.decode(self.indices_to_latent(indices))

    def indices_to_latent(self, indices: Tensor) -> Tensor:
        if not isinstance(self.regularization, FSQ):
            raise TypeError("this model has a continuous (KL) latent and no token indices")
        dtype = next(self.decoder.parameters()).dtype
        return self.regularization.indices_to_latent(indices, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of x (same number of frames for native lengths)."""
        return self.decode(self.encode(x).latent)

    @property
    def _decoder_drop(self) -> int:
        return self.cfg.time_downsample_factor - 1

    # ------------------------------------------------------------------ streaming
    def _require_causal(self) -> None:
        if not self.cfg.causal:
            raise TypeError("streaming needs a causal model; non-causal models encode independent clips")

    def encode_chunk(
        self,
        x: Tensor,
        state: StreamState | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[EncodeOutput, StreamState]:
        """Encodes the next frames of a stream; returns the latents they complete and the updated state.

        Pass ``state=None`` for the first chunk, then the returned state. Latents may be returned with
        zero frames when a chunk completes none.
        """
        self._require_causal()
        self._check_video(x)
        if state is None:
            state = StreamState()
        if "encoder.started" not in state.counters and x.shape[2] > 0:
            pad = self.cfg.time_downsample_factor - 1
            front = x[:, :, :1].expand(-1, -1, pad, -1, -1)
            if self.cfg.init_pad_mode != "replicate":
                front = torch.zeros_like(front)
            x = torch.cat([front, x], dim=2)
            state.counters["encoder.started"] = 1
        moments = self.encoder(x, state)
        return self._regularize(moments, sample, generator), state

    def decode_chunk(
        self, latent: Tensor, state: StreamState | None = None, final: bool = False
    ) -> tuple[Tensor, StreamState]:
        """Decodes the next latents of a stream; returns the frames now complete and the updated state.

        Set ``final=True`` on the last chunk (it may hold zero latents) so that look-ahead layers flush.
        """
        self._require_causal()
        if state is None:
            state = StreamState()
        state.final = final
        out = self.decoder(latent, state)
        dropped = state.counters.get("decoder.dropped", 0)
        if dropped < self._decoder_drop:
            k = min(self._decoder_drop - dropped, out.shape[2])
            out = out[:, :, k:]
            state.counters["decoder.dropped"] = dropped + k
        return out, state

    def decode_indices_chunk(
        self, indices: Tensor, state: StreamState | None = None, final: bool = False
    ) -> tuple[Tensor, StreamState]:
        """Like :meth:`decode_chunk`, from FSQ indices."""
        return self.decode_chunk(self.indices_to_latent(indices), state, final)


def build_model(cfg: VidTokConfig) -> VidTokModel:
    """A randomly initialised VidTok model for ``cfg`` (official initialisation)."""
    model = VidTokModel(cfg)
    model.init_weights_()
    return model
