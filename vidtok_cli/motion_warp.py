"""Motion fields for Video-LaVIT motion tokens: units, decoding frames by motion compensation, colour view.

Units. The extraction normalises each motion vector (in pixels per frame, the forward displacement of
the content) by the frame size and then by ``MOTION_STD / TOKENIZER_SCALE``: ``x / W / (0.0993703 / 10)``,
``y / H / (0.1130276 / 10)``. The tokenizer works in these units on a (20, 36) grid;
`to_pixels` undoes both steps at any frame size (bicubic resize of the grid first, as the official
``reconstruct``).

Decode. The vector at a pixel of frame t says where its content came from in frame t-1 (``p - v``), so
frame t is frame t-1 sampled at ``p - v`` (backward warping, bilinear, border padding), starting from
the key frame (frame 0 of the clip, which has no motion). This is a plain motion-compensated prediction
with no residual: quality falls with every frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .motion.grid import MOTION_STD, TOKENIZER_SCALE  # the extraction's normalisation (one definition)

__all__ = [
    "MOTION_STD",
    "TOKENIZER_SCALE",
    "end_point_error",
    "from_pixels",
    "motion_compensate",
    "motion_to_rgb",
    "to_pixels",
    "warp",
]


def _unit_sizes(height: int, width: int, like: Tensor) -> Tensor:
    """Pixels per tokenizer unit for the x and y channels, shaped to broadcast over (B, 2, T, H, W)."""
    scale = [MOTION_STD[0] / TOKENIZER_SCALE * width, MOTION_STD[1] / TOKENIZER_SCALE * height]
    return torch.tensor(scale, dtype=torch.float64).to(like.device).view(1, 2, 1, 1, 1)


def to_pixels(motion: Tensor, height: int, width: int) -> Tensor:
    """Tokenizer-unit motion (B, 2, T, h, w) -> pixels per frame (B, 2, T, height, width), float32.

    The grid is resized per frame (bicubic, align_corners False, no antialias) before scaling.
    """
    if motion.ndim != 5 or motion.shape[1] != 2:
        raise ValueError(f"motion must be (B, 2, T, H, W), got {tuple(motion.shape)}")
    b, c, t, h, w = motion.shape
    m = motion.float()
    if (h, w) != (height, width):
        frames = m.transpose(1, 2).reshape(b * t, c, h, w)
        m = F.interpolate(frames, (height, width), mode="bicubic", align_corners=False)
        m = m.reshape(b, t, c, height, width).transpose(1, 2)
    return (m.double() * _unit_sizes(height, width, m)).float()


def from_pixels(pixels: Tensor, height: int, width: int) -> Tensor:
    """Pixels per frame (B, 2, T, H, W) -> tokenizer units at the same grid, float32 (computed in float64,
    as the extraction does), for frames of ``height`` x ``width``."""
    if pixels.ndim != 5 or pixels.shape[1] != 2:
        raise ValueError(f"motion must be (B, 2, T, H, W), got {tuple(pixels.shape)}")
    size = torch.tensor([width, height], dtype=torch.float64, device=pixels.device).view(1, 2, 1, 1, 1)
    std = torch.tensor(MOTION_STD, dtype=torch.float64, device=pixels.device).view(1, 2, 1, 1, 1)
    return (pixels.double() / size / (std / TOKENIZER_SCALE)).float()


def warp(frame: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: ``out[p] = frame[p - flow[p]]`` (bilinear, border padding), in the frame's dtype.

    ``frame`` (B, C, H, W); ``flow`` (B, 2, H, W) in pixels (x, y), the forward displacement of content.
    Sampling runs in float64 so that repeated warps do not drift (zero motion returns the frame).
    """
    b, _, h, w = frame.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(f"flow must be (B, 2, H, W) = {(b, 2, h, w)}, got {tuple(flow.shape)}")
    f64 = torch.float64
    ys, xs = torch.meshgrid(
        torch.arange(h, device=frame.device, dtype=f64),
        torch.arange(w, device=frame.device, dtype=f64),
        indexing="ij",
    )
    src_x = xs - flow[:, 0].to(f64)
    src_y = ys - flow[:, 1].to(f64)
    # pixel centres -> [-1, 1] with align_corners=False
    grid = torch.stack(((2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1), dim=-1)
    out = F.grid_sample(frame.to(f64), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(frame.dtype)


def motion_compensate(key_frame: Tensor, flow: Tensor) -> Tensor:
    """Frames (B, C, T, H, W) from a key frame (B, C, H, W) and a motion field (B, 2, T, H, W) in pixels:
    frame 0 is the key frame, frame t is frame t-1 warped by ``flow[:, :, t]`` (see the module doc)."""
    if flow.ndim != 5 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, T, H, W), got {tuple(flow.shape)}")
    if key_frame.ndim != 4 or key_frame.shape[0] != flow.shape[0] or key_frame.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"key frame {tuple(key_frame.shape)} does not fit the motion field {tuple(flow.shape)}"
        )
    frames = [key_frame]
    for t in range(1, flow.shape[2]):
        frames.append(warp(frames[-1], flow[:, :, t]))
    return torch.stack(frames, dim=2)


def end_point_error(pred: Tensor, ref: Tensor) -> Tensor:
    """Mean end-point error per sample: the average length of ``pred - ref`` over (T, H, W) for motion
    fields (B, 2, T, H, W) in the same units (pixels per frame for the bench)."""
    if pred.shape != ref.shape or pred.ndim != 5 or pred.shape[1] != 2:
        raise ValueError(
            f"motion fields must be equal (B, 2, T, H, W) shapes, got {tuple(pred.shape)} and {tuple(ref.shape)}"
        )
    diff = (pred.double() - ref.double()).pow(2).sum(dim=1).sqrt()
    return diff.flatten(1).mean(dim=1).float()


def motion_to_rgb(flow: Tensor, max_magnitude: float | None = None) -> Tensor:
    """Colour-coded motion (B, 2, T, H, W) -> (B, 3, T, H, W) in [-1, 1] (the frame convention).

    Hue is the direction (the HSV wheel: right red, down yellow-green, left cyan, up violet), saturation
    1, value the magnitude divided by ``max_magnitude`` (default: the largest magnitude, at least 1e-6).
    """
    if flow.ndim != 5 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, T, H, W), got {tuple(flow.shape)}")
    fx, fy = flow[:, 0].float(), flow[:, 1].float()
    mag = torch.sqrt(fx * fx + fy * fy)
    top = float(mag.max()) if max_magnitude is None else float(max_magnitude)
    value = (mag / max(top, 1e-6)).clamp(0.0, 1.0)
    hue = torch.remainder(torch.atan2(fy, fx) / (2 * math.pi), 1.0) * 6.0  # [0, 6)
    # HSV -> RGB with s = 1: each channel is v * (1 - clamp(min(k, 4 - k), 0, 1)), k = (n + h) mod 6
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue, 6.0)
        channels.append(value * (1 - torch.clamp(torch.minimum(k, 4 - k), 0.0, 1.0)))
    return torch.stack(channels, dim=1) * 2 - 1
