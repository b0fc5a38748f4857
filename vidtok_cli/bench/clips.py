"""Frames to clips: the plan of a video, clip iteration, and the frame conversions around the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import LONG_VIDEO_CHUNK, BenchConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class _VideoPlan:
    path: Path
    name: str
    width: int
    height: int
    src_fps: Fraction
    interval: int
    sample_fps: float
    frames_estimate: int
    clips_estimate: int


def _plan(path: Path, name: str, cfg: BenchConfig, clip_frames: int) -> _VideoPlan:
    from .. import video

    info = video.probe(path)
    interval = video.official_interval(info.fps, cfg.fps) if cfg.fps else 1
    n = -(-info.frame_count // interval)
    if cfg.long_video:
        n = 1 + (n - 1) // LONG_VIDEO_CHUNK * LONG_VIDEO_CHUNK if n else 0
    clips = -(-n // clip_frames)
    if cfg.max_clips is not None:
        clips = min(clips, cfg.max_clips)
        n = min(n, clips * clip_frames)
    return _VideoPlan(
        path, name, info.width, info.height, info.fps, interval, float(info.fps) / interval, n, clips
    )


def _prepare(frames: list[np.ndarray], cfg: BenchConfig, device: torch.device) -> torch.Tensor:
    """uint8 frames (H, W, 3) -> float32 (T, 3, h, w) in [0, 1] on ``device``: /255, resize, centre crop."""
    import torch

    from .. import video

    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if cfg.size:
        x = video.resize_short_side(x, cfg.size)
        if cfg.crop:
            x = video.center_crop(x, cfg.size, cfg.size)
    return x.contiguous()


def _iter_clips(
    plan: _VideoPlan, clip_frames: int, max_clips: int | None
) -> Iterator[tuple[list[np.ndarray], int, int]]:
    """(frames, number of real frames, index of the first sampled frame) per clip; the last clip is padded
    by repeating its final frame."""
    from .. import video

    buf: list[np.ndarray] = []
    first = 0
    count = 0
    for k, frame in enumerate(video.iter_frames(plan.path, interval=plan.interval)):
        if not buf:
            first = k
        buf.append(frame)
        if len(buf) == clip_frames:
            yield buf, clip_frames, first
            buf = []
            count += 1
            if max_clips is not None and count >= max_clips:
                return
    if buf:
        n = len(buf)
        yield buf + [buf[-1]] * (clip_frames - n), n, first


def _to_u8(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the 8-bit values `vidtok decode` writes, back in [0, 1] (round half to even)."""
    return (x01 * 255.0).round() / 255.0


def _from_model(y: torch.Tensor) -> torch.Tensor:
    """Model output (1, 3, T, H, W) in [-1, 1] -> float32 frames (T, 3, H, W) in [0, 1]."""
    import torch

    return ((y[0].to(torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 0, 2, 3).contiguous()


def _model_input(gt: torch.Tensor, factor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, T, H', W') in [-1, 1], spatially padded (replicate, right/bottom) to the model's ``factor``;
    with the unpadded (H, W)."""
    import torch.nn.functional as F

    x = ((gt - 0.5) / 0.5).permute(1, 0, 2, 3).unsqueeze(0)
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        b, c, t = x.shape[:3]
        x = F.pad(x.reshape(b, c * t, h, w), (0, pw, 0, ph), mode="replicate").reshape(
            b, c, t, h + ph, w + pw
        )
    return x.contiguous(), (h, w)
