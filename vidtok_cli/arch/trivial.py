"""The trivial codec the default model must beat: keep every 4th frame, 8x bilinear downsampling.

Its "latent" (3 channels, t = 1 + (T - 1) / 4 frames, H/8 x W/8) has the layout of a causal 4x8x8
tokenizer's; decoding upsamples each kept frame bilinearly by 8 and interpolates linearly in time
between kept frames. It streams like a causal model (``encode_chunk``/``decode_chunk`` with a state), so
the trivial family (``--model trivial``) passes through the same streaming, file and bench code as a model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import StreamState
from .vidtok import EncodeOutput

TEMPORAL_FACTOR = 4
SPATIAL_FACTOR = 8


class TrivialCodec(nn.Module):
    """Every 4th frame at 1/8 resolution, bilinear up, linear in time (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        # a parameter so that device/dtype queries work like on a model; it carries no information
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    def _down(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        f = SPATIAL_FACTOR
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = F.interpolate(y, size=(h // f, w // f), mode="bilinear", align_corners=False, antialias=True)
        return y.reshape(b, t, c, h // f, w // f).permute(0, 2, 1, 3, 4)

    def _up(self, z: Tensor) -> Tensor:
        b, c, t, h, w = z.shape
        f = SPATIAL_FACTOR
        y = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = F.interpolate(y, size=(h * f, w * f), mode="bilinear", align_corners=False)
        return y.reshape(b, t, c, h * f, w * f).permute(0, 2, 1, 3, 4)

    def _between(self, a: Tensor, b: Tensor) -> Tensor:
        """The tdf frames after ``a`` up to and including ``b``, linearly interpolated."""
        n = TEMPORAL_FACTOR
        w = (torch.arange(1, n + 1, dtype=a.dtype, device=a.device) / n).view(1, 1, n, 1, 1)
        return a * (1 - w) + b * w

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> EncodeOutput:
        """Keeps frames 0, 4, 8, ... at 1/8 size; (B, 3, T, H, W) -> (B, 3, 1 + (T-1)//4, H/8, W/8)."""
        z = self._down(x[:, :, ::TEMPORAL_FACTOR])
        return EncodeOutput(z, None, torch.cat([z, torch.zeros_like(z)], dim=1))

    def decode(self, latent: Tensor) -> Tensor:
        """1 + 4 (t - 1) frames: the kept frames upsampled, linear interpolation between them."""
        up = self._up(latent)
        parts = [up[:, :, :1]] + [
            self._between(up[:, :, j - 1 : j], up[:, :, j : j + 1]) for j in range(1, up.shape[2])
        ]
        return torch.cat(parts, dim=2)

    def encode_chunk(
        self, x: Tensor, state: StreamState | None = None, sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[EncodeOutput, StreamState]:  # fmt: skip
        """Streaming `encode`: the kept frames among the next ones of the stream."""
        state = state or StreamState()
        start = state.counters.get("frames", 0)
        n = TEMPORAL_FACTOR
        first = (-start) % n
        state.counters["frames"] = start + x.shape[2]
        return self.encode(x[:, :, first:]) if first < x.shape[2] else self.encode(x[:, :, :0]), state

    def decode_chunk(
        self, latent: Tensor, state: StreamState | None = None, final: bool = False
    ) -> tuple[Tensor, StreamState]:
        """Streaming `decode`: the frames completed by the next latents."""
        state = state or StreamState()
        up = self._up(latent)
        prev = state.caches.get("prev")
        parts = []
        for j in range(up.shape[2]):
            cur = up[:, :, j : j + 1]
            parts.append(cur if prev is None else self._between(prev, cur))
            prev = cur
        if prev is not None:
            state.caches["prev"] = prev
        state.final = final
        if not parts:
            b, c, _, h, w = up.shape
            return up.new_zeros(b, c, 0, h, w), state
        return torch.cat(parts, dim=2), state

    def regularize(
        self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> EncodeOutput:
        z = moments[:, :3]
        return EncodeOutput(z, None, moments)

    def indices_to_latent(self, indices: Tensor) -> Tensor:
        raise TypeError("the trivial codec has no token indices")
