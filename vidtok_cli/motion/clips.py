"""``extract_clips``: a video file to motion clips (tokenizer input + key frame), streaming.

Decisions:

- ``plan="default"`` makes one pass: re-encode, decode, and emit each clip as soon as its 24 frames (or
  the end) are there. Memory holds the current clip's grids and key frame only.
- ``plan="official"`` needs every frame type before choosing clips, as the official code does. The first
  pass writes the re-encoded stream to a temporary ``.m4v`` file (as the official command does) and reads
  the frame types from the packets; the second decodes that file and keeps only the chosen clips' frames.
  Memory stays flat; the temporary file grows with the video and is removed at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import UsageError
from ..video.errors import VideoError
from .extract import ENCODER_THREADS, WHOLE, MotionFrame, Window, iter_motion_frames, reencode
from .grid import CLIP_FRAMES, Resize, check_resize, clip_tensor, motion_grid
from .plans import ClipPlan, check_plan, official_plan


class MotionClip(NamedTuple):
    """One clip: the tokenizer input, its key frame and where it lies in the 6 fps stream."""

    motion: torch.Tensor  # float32 (2, 24, 20, 36): channel x/y, time, rows, columns
    key_frame: np.ndarray  # uint8 RGB (H, W, 3) of frame ``start``
    start: int  # first frame (a 6 fps frame index)
    valid: int  # real frames in the clip; the remaining 24 - valid are padding (zero motion)


def extract_clips(
    path: str | os.PathLike,
    plan: str = "default",
    resize: Resize = "tv016",
    *,
    reencode_source: bool = True,
    encoder_threads: int = ENCODER_THREADS,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
) -> Iterator[MotionClip]:
    """The motion clips of a video, in order of their start frame.

    - ``plan``: "default" (the whole video, consecutive clips) or "official" (the official sampler).
    - ``resize``: "tv016" (the official environment, no antialias) or "tv017" (antialiased).
    - ``reencode_source=False``: ``path`` already is the official 6 fps MPEG-4 stream (a raw ``.m4v``).
    - ``encoder_threads``: the MPEG-4 encoder's slice threads (16 reproduces the reference; see extract).
    - ``start`` / ``duration`` / ``max_frames``: extract a part of the source only: seconds from the file's
      start, trimmed before the 6 fps step (as ``ffmpeg -ss START -t DURATION -i IN``), and at most
      ``max_frames`` 6 fps frames. Clip starts count from the part's first 6 fps frame. The defaults
      (the whole video) reproduce the official extraction exactly.

    Options are checked and the file opened when called; clips are computed as the iterator is consumed.
    Raises UsageError for bad options, VideoError (one line naming the file) for unreadable videos.
    """
    check_plan(plan)
    check_resize(resize)
    window = Window(start, duration, max_frames)
    window.check()
    if window != WHOLE and not reencode_source:
        raise UsageError("start, duration and max_frames need the re-encode (reencode_source=True)")
    path = Path(path)
    if plan == "default":
        frames = iter_motion_frames(
            path, reencode_source=reencode_source, encoder_threads=encoder_threads, window=window
        )
        return _default_clips(frames, resize)
    if reencode_source:
        packets = reencode(path, encoder_threads=encoder_threads, window=window)
        return _official_clips_reencoded(packets, path, resize)
    return _official_clips(path, _packet_types(path), path, resize)


def _clip(grids: list[np.ndarray], key: np.ndarray, start: int, resize: Resize) -> MotionClip:
    return MotionClip(clip_tensor(grids, resize), key, start, len(grids))


def _default_clips(frames: Iterable[MotionFrame], resize: Resize) -> Iterator[MotionClip]:
    grids: list[np.ndarray] = []
    key = None
    start = 0
    for f in frames:
        if f.index % CLIP_FRAMES == 0:
            key, start = f.rgb(), f.index
        grids.append(motion_grid(f.mv_rows, f.height, f.width))
        if len(grids) == CLIP_FRAMES:
            yield _clip(grids, key, start, resize)
            grids = []
    if grids:
        yield _clip(grids, key, start, resize)


def _selected_clips(
    frames: Iterable[MotionFrame], plans: list[ClipPlan], resize: Resize
) -> Iterator[MotionClip]:
    """Clips of ``plans`` (sorted by start; they may overlap), keeping only the frames they need."""
    pending = list(plans)
    active: list[tuple[ClipPlan, np.ndarray, list[np.ndarray]]] = []
    for f in frames:
        while pending and pending[0].start == f.index:
            active.append((pending.pop(0), f.rgb(), []))
        if active:
            grid = motion_grid(f.mv_rows, f.height, f.width)
            for _plan, _key, grids in active:
                grids.append(grid)
        while active and len(active[0][2]) == active[0][0].valid:
            p, key, grids = active.pop(0)
            yield _clip(grids, key, p.start, resize)
        if not pending and not active:
            return
    if pending or active:
        raise VideoError("the MPEG-4 stream ended before the planned clips (fewer frames than packets)")


def _packet_types(path: Path) -> str:
    """'I'/'P' per frame of a raw MPEG-4 stream, from its packets' key flags (no decoding)."""
    import av

    from ..video.probing import _open_input, _video_stream

    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        return "".join("I" if p.is_keyframe else "P" for p in container.demux(stream) if p.size)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot read the MPEG-4 stream ({e})") from e
    finally:
        container.close()


def _official_clips(m4v: Path, types: str, source: Path, resize: Resize) -> Iterator[MotionClip]:
    if not types:
        raise VideoError(f"{source}: no frames could be decoded (empty or truncated video stream)")
    plans = official_plan(types)
    frames = iter_motion_frames(m4v, reencode_source=False)
    try:
        yield from _selected_clips(_checked(frames, types, source), plans, resize)
    finally:
        frames.close()  # the clips may end before the stream: close the file now


def _checked(frames: Iterable[MotionFrame], types: str, source: Path) -> Iterator[MotionFrame]:
    for f in frames:
        if f.index >= len(types) or f.frame_type != types[f.index]:
            raise VideoError(f"{source}: the MPEG-4 stream's frame types differ from its packets' key flags")
        yield f


def _official_clips_reencoded(packets: Iterable, source: Path, resize: Resize) -> Iterator[MotionClip]:
    fd, name = tempfile.mkstemp(suffix=".m4v", prefix="vidtok-motion-")
    tmp = Path(name)
    try:
        types = []
        with os.fdopen(fd, "wb") as out:
            for p in packets:
                out.write(bytes(p))
                types.append("I" if p.is_keyframe else "P")
        yield from _official_clips(tmp, "".join(types), source, resize)
    finally:
        tmp.unlink(missing_ok=True)
