"""Spatial and temporal resampling of VidTok video tensors (B, C, T, H, W): the encoder's 2x
downsampling layers and the decoder's 2x upsampling layers, with the official parameter names.

Without autograd, in float32, the decoder's nearest upsampling followed by a convolution runs as phase
convolutions on the small tensor (the same sums over fewer taps, no upsampled copy): see
:class:`Upsample` and :class:`TimeUpsample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    CausalConv3d,
    FrameConv2d,
    Streaming,
    StreamState,
    SymConv3d,
    conv3d,
    derived_weights,
    empty_frames,
    empty_like_layout,
    inplace_ok,
    is_channels_last,
    positions,
    take_windows,
    video,
)


class Downsample(nn.Module):
    """Spatial 2x downsampling per frame: zero pad right/bottom by one, 3x3 conv with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def phases_ok(x: Tensor) -> bool:
    """Whether the upsampling layers may run as phase convolutions: float32 inference without autocast.

    Their kernels are sums of the original taps (and, in time, the blend weight); under reduced precision
    those sums would be rounded as weights, so autocast keeps upsample-then-convolve.
    """
    autocasting = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
    return inplace_ok() and x.dtype == torch.float32 and not autocasting


def _spatial_phase_kernels(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """A 3x3 kernel applied after nearest 2x upsampling, as four 2x2 kernels on the input (one per output
    phase (dy, dx), stacked on output channels in the order (0,0), (0,1), (1,0), (1,1)).

    Output row 2i reads input rows (i-1, i, i) through taps (0, 1, 2), so its 2-tap kernel over rows
    (i-1, i) is (w0, w1 + w2); row 2i+1 reads (i, i, i+1): (w0 + w1, w2) over rows (i, i+1). Columns alike.
    """
    w = weight.reshape(weight.shape[0], weight.shape[1], 3, 3)
    rows = (
        torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),
        torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2),
    )
    phases = []
    for r in rows:
        cols = (
            torch.stack([r[..., 0], r[..., 1] + r[..., 2]], -1),
            torch.stack([r[..., 0] + r[..., 1], r[..., 2]], -1),
        )
        phases += list(cols)
    return torch.cat(phases).unsqueeze(2), None if bias is None else bias.repeat(4)


class Upsample(nn.Module):
    """Spatial 2x nearest upsampling per frame, then a 3x3 conv.

    Without autograd the 3x3 convolution of the upsampled frames is computed on the frames themselves as
    four 2x2 phase convolutions (one per output pixel parity, :func:`_spatial_phase_kernels`): the same
    sums with 4 instead of 9 taps per output pixel, and no upsampled copy of the input.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, padding=1)

    def _phases(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        weight, bias = derived_weights(self, (self.conv.weight, self.conv.bias), _spatial_phase_kernels)
        y = conv3d(self, x, weight, bias, (1, 1, 1), (0, 1, 1))  # (B, 4C, T, h+1, w+1)
        co = self.conv.out_channels
        out = empty_like_layout(y, (b, co, t, 2 * h, 2 * w))
        grid = out.unflatten(4, (w, 2)).unflatten(3, (h, 2))  # (B, C, T, h, dy, w, dx), a view in any layout
        for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            grid[:, :, :, :, dy, :, dx].copy_(y[:, k * co : (k + 1) * co, :, dy : dy + h, dx : dx + w])
        return out

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        if t and phases_ok(x):
            return self._phases(x)
        if not is_channels_last(x):
            up = x[:, :, :, :, None, :, None].expand(b, c, t, h, 2, w, 2).reshape(b, c, t, 2 * h, 2 * w)
            return self.conv(up)
        up = positions(x)[:, :, :, None, :, None].expand(b, t, h, 2, w, 2, c).reshape(b, t, 2 * h, 2 * w, c)
        return self.conv(video(up))


class TimeDownsample(Streaming):
    """AlphaBlender temporal 2x downsampling: sigmoid(mix)*avgpool + (1-sigmoid(mix))*strided conv.

    Causal (official ``TimeDownsampleResCausal2x``): one frame of front padding (zeros in v1.0, a copy of
    the first frame in v1.1) for both branches. Non-causal (``TimeDownsampleRes2x``): one zero frame
    appended at the end.
    """

    def __init__(self, channels: int, causal: bool, replicate: bool, mix_factor: float = 2.0):
        super().__init__()
        self.causal = causal
        self.replicate = replicate
        if causal:
            self.conv: nn.Module = CausalConv3d(channels, channels, 3, stride_t=2, replicate=replicate)
        else:
            self.conv = SymConv3d(channels, channels, 3, stride=(2, 1, 1), padding=(0, 1, 1))
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        alpha = torch.sigmoid(self.mix_factor)
        if self.causal:
            buf = take_windows(x, state, self.cache_key, 1, 3, 2, self.replicate)
            x2 = self.conv(x, state)
            if buf is None:
                return x2
            x1 = F.avg_pool3d(buf, (3, 1, 1), stride=(2, 1, 1))
        else:
            xp = F.pad(x, (0, 0, 0, 0, 0, 1))
            x1 = F.avg_pool3d(xp, (3, 1, 1), stride=(2, 1, 1))
            x2 = self.conv(xp)
        if inplace_ok() and x1.shape == x2.shape and x1.dtype == x2.dtype:  # alpha * x1 + (1 - alpha) * x2
            return x2.lerp_(x1, alpha.to(x2.dtype))
        return alpha * x1 + (1 - alpha) * x2


def _temporal_phase_kernels(
    weight: Tensor, bias: Tensor | None, mix_factor: Tensor
) -> tuple[Tensor, Tensor | None]:
    """``alpha * up(x) + (1 - alpha) * conv(up(x))`` of :class:`TimeUpsample` (``up`` repeats every frame
    twice, ``conv`` is causal with 3 taps), as two 2-tap kernels on the frames (stacked on output channels:
    even output frames, then odd).

    Output frame 2i reads repeated frames (2i-2, 2i-1, 2i) = inputs (i-1, i-1, i): taps (w0 + w1, w2) over
    inputs (i-1, i); frame 2i+1 reads (i-1, i, i): (w0, w1 + w2). Both scale by 1 - alpha and add alpha
    times input i (an identity at the centre of their second tap).
    """
    alpha = torch.sigmoid(mix_factor).to(weight.dtype)
    w0, w1, w2 = weight[:, :, 0], weight[:, :, 1], weight[:, :, 2]
    k = torch.cat([torch.stack([w0 + w1, w2], 2), torch.stack([w0, w1 + w2], 2)]) * (1 - alpha)
    co, ci, _, kh, kw = k.shape
    centre = k[:, :, 1, kh // 2, kw // 2]
    centre += torch.eye(ci, dtype=k.dtype, device=k.device).repeat(2, 1) * alpha
    return k, None if bias is None else bias.repeat(2) * (1 - alpha)


class TimeUpsample(Streaming):
    """AlphaBlender temporal 2x upsampling: sigmoid(mix)*up(x) + (1-sigmoid(mix))*conv(up(x)).

    ``up`` is nearest (v1.0, non-causal) or, for v1.1 ``trilinear``, linear interpolation in time in which
    the first ``group`` input frames and the rest are interpolated separately (edges clamped), as the
    official first chunk does. Linear interpolation looks one input frame ahead, so the last frame of a
    chunk is held back until the next chunk arrives or the stream is final.
    """

    def __init__(
        self,
        channels: int,
        causal: bool,
        replicate: bool,
        linear: bool = False,
        group: int = 1,
        mix_factor: float = 2.0,
    ):
        super().__init__()
        self.causal = causal
        self.linear = linear
        self.group = group
        if causal:
            self.conv: nn.Module = CausalConv3d(channels, channels, 3, replicate=replicate)
        else:
            self.conv = SymConv3d(channels, channels, 3, padding=1)
        self.mix_factor = nn.Parameter(torch.tensor([mix_factor]))

    def _interpolate(self, x: Tensor, state: StreamState) -> Tensor:
        key = self.cache_key + ".interp"
        pending, prev, start = state.caches.get(key, (x[:, :, :0], None, 0))
        frames = torch.cat([pending, x], dim=2) if pending.shape[2] else x
        total = frames.shape[2]
        m = total if state.final else total - 1
        if m <= 0:
            state.caches[key] = (frames, prev, start)
            return empty_frames(x, x.shape[1])
        cur = frames[:, :, :m]
        first = prev if prev is not None else frames[:, :, :1]
        left = torch.cat([first, frames[:, :, : m - 1]], dim=2)
        right = frames[:, :, 1 : m + 1]
        if right.shape[2] < m:  # end of the stream: clamp
            right = torch.cat([right, frames[:, :, m - 1 : m]], dim=2)
        else:
            right = right.clone()
        g = self.group
        if start <= g < start + m:  # first frame of the second group: no left neighbour
            i = g - start
            left[:, :, i] = cur[:, :, i]
        if start <= g - 1 < start + m:  # last frame of the first group: no right neighbour
            i = g - 1 - start
            right[:, :, i] = cur[:, :, i]
        even = 0.75 * cur + 0.25 * left
        odd = 0.75 * cur + 0.25 * right
        # past the group boundary the position no longer matters: a bounded count keeps compiled
        # decoders from recompiling on every chunk
        state.caches[key] = (frames[:, :, m:].clone(), frames[:, :, m - 1 : m].clone(), min(start + m, g + 1))
        b, c, _, h, w = cur.shape
        if not is_channels_last(cur):
            return torch.stack([even, odd], dim=3).reshape(b, c, 2 * m, h, w)
        return video(torch.stack([positions(even), positions(odd)], dim=2).reshape(b, 2 * m, h, w, c))

    def _nearest_causal(self, x: Tensor, state: StreamState) -> Tensor:
        """The blend of the frames repeated twice with their causal 3x3x3 convolution, computed on the frames
        themselves as two 2-frame phase convolutions (:func:`_temporal_phase_kernels`).

        Frame pair (2i, 2i+1) depends only on input frames (i-1, i), so the stream keeps one input frame
        (front padding: one zero or first frame, as the two padded upsampled frames); 18 instead of 27
        taps per output frame, and no upsampled copy of the input.
        """
        conv = self.conv
        buf = take_windows(x, state, self.cache_key + ".frames", 1, 2, 1, conv.replicate)
        if buf is None:
            return empty_frames(x, conv.conv.out_channels)
        params = (conv.conv.weight, conv.conv.bias, self.mix_factor)
        weight, bias = derived_weights(self, params, _temporal_phase_kernels)
        y = conv3d(self, buf, weight, bias, (1, 1, 1), (0, conv.space_pad, conv.space_pad))
        b, c2, n, h, w = y.shape
        c = c2 // 2
        out = empty_like_layout(y, (b, c, 2 * n, h, w))
        for phase in (0, 1):  # even frames, odd frames
            out[:, :, phase::2].copy_(y[:, phase * c : (phase + 1) * c])
        return out

    def forward(self, x: Tensor, state: StreamState) -> Tensor:
        if self.causal and not self.linear and self.conv.kernel_t == 3 and phases_ok(x):
            return self._nearest_causal(x, state)
        alpha = torch.sigmoid(self.mix_factor)
        if self.linear:
            up = self._interpolate(x, state)
        else:
            b, c, t, h, w = x.shape
            if is_channels_last(x):
                up = video(positions(x)[:, :, None].expand(b, t, 2, h, w, c).reshape(b, 2 * t, h, w, c))
            else:
                up = x.repeat_interleave(2, dim=2)
        if up.shape[2] == 0 and self.causal:
            return up
        out = self.conv(up, state)
        if inplace_ok():  # alpha * up + (1 - alpha) * out
            return out.lerp_(up.to(out.dtype), alpha.to(out.dtype))
        return alpha * up + (1 - alpha) * out
