"""Frames to clips: the plan of a video and clip iteration (the frame conversions are in ``frames``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .config import LONG_VIDEO_CHUNK, BenchConfig


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
