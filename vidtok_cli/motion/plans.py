"""Clip plans: which 24-frame clips of the 6 fps stream become motion tokens.

- ``default``: the whole video as consecutive clips starting at 0, 24, 48, ... (on the 12-frame GOP grid,
  so each clip starts on an I-frame and its frame 12 is the next one); the last clip is padded. A file
  encoded this way decodes to the whole video. It needs no look-ahead, so it streams.
- ``official``: the official ``sample_video_clips`` (at most 8 clips), quirks included: only I-frames
  followed by another I-frame 12 frames later that start a full clip are candidates when there are at
  least 2 of them (else every I-frame); every second candidate from the second one is kept (the first when
  there are at most 2), and more than 8 are thinned with a truncated ``linspace``. So 25-35 frames give a
  padded clip at 12 rather than the full one at 0. It needs every frame type first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..video.errors import VideoError
from .grid import CLIP_FRAMES

PLANS = ("default", "official")
MAX_CLIPS = 8
_OFFICIAL_GOP = 12


@dataclass(frozen=True)
class ClipPlan:
    """One clip: frames ``start .. start + valid - 1`` of the 6 fps stream, padded to 24 frames."""

    start: int
    valid: int

    @property
    def padding(self) -> int:
        return CLIP_FRAMES - self.valid


def check_plan(plan: str) -> None:
    """Refuse a plan name other than "default" / "official" with a UsageError."""
    if plan not in PLANS:
        raise UsageError(f"clip plan must be one of {', '.join(PLANS)}, got {plan!r}")


def default_plan(n_frames: int) -> list[ClipPlan]:
    """Consecutive clips covering all ``n_frames`` frames, the last one padded."""
    return [ClipPlan(s, min(CLIP_FRAMES, n_frames - s)) for s in range(0, n_frames, CLIP_FRAMES)]


def official_plan(frame_types: Sequence[str] | str, max_clips: int = MAX_CLIPS) -> list[ClipPlan]:
    """The official sampler's clips for these frame types ('I'/'P' per frame). VideoError without I-frame."""
    n = len(frame_types)
    starts = np.flatnonzero(np.array(list(frame_types)) == "I")
    if len(starts) == 0:
        raise VideoError("the MPEG-4 stream has no I-frame, so the official clip plan has no clip")
    if len(starts) > 1:
        candidates = starts[:-1][starts[:-1] + _OFFICIAL_GOP == starts[1:]]
    else:
        candidates = starts
    candidates = candidates[candidates + CLIP_FRAMES <= n]
    if len(candidates) >= 2:
        starts = candidates
    if len(starts) / 2 <= max_clips:
        selected = starts[1::2] if len(starts) > 2 else starts[0::2]
    else:
        starts = starts[1::2]
        if len(starts) > max_clips:
            selected = starts[np.linspace(0, len(starts) - 1, max_clips, dtype=int)]
        else:
            selected = starts
    return [ClipPlan(int(s), int(min(s + CLIP_FRAMES, n) - s)) for s in selected]
