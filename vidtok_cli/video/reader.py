"""Reading frames: ``iter_frames`` decodes one frame at a time (first video stream only) and never holds
the video in memory.

Decisions:

- Frames are uint8 RGB ``(H, W, 3)`` numpy arrays in display orientation (``vidtok_cli.video.orientation``).
- YUV to RGB uses the colour matrix and range the stream is tagged with (BT.601 when untagged, which is
  what swscale assumes).
- Time is measured from the video stream's start time. ``start``/``duration`` select the frames whose
  presentation time t satisfies ``start <= t < start + duration``.
- Frame-rate resampling (``fps=``): output frame k shows the latest source frame whose time is
  ``<= start + k/fps``; frames are dropped or repeated as needed; output frames are produced while
  ``start + k/fps`` is before the end of the last source frame (its time plus its duration). A 2 s clip
  therefore gives ``2*fps`` frames at any rate. The official VidTok evaluation instead keeps every
  ``interval``-th decoded frame with ``interval = round(src_fps / target_fps)``: ``interval=`` /
  ``official_interval()``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .errors import VideoError, _ffmpeg_reason
from .orientation import _apply_orientation, _display_matrix, _orientation_op
from .probing import _open_input, _stream_fps, _video_stream


def official_interval(src_fps: float | Fraction, target_fps: float | Fraction) -> int:
    """The official evaluation's frame step: ``round(src_fps / target_fps)`` (Python round), at least 1."""
    return max(1, round(float(src_fps) / float(target_fps)))


def _frame_to_rgb(frame) -> np.ndarray:
    # Colour matrix from the frame's tags (PyAV's default); range from the frame too (PyAV assumes
    # limited range unless told, which would crush full-range yuv420p sources).
    kwargs = {"format": "rgb24"}
    if frame.color_range:
        kwargs["src_color_range"] = frame.color_range
    return frame.to_ndarray(**kwargs)


def check_window(start: float, duration: float | None, max_frames: int | None) -> None:
    """UsageError for a bad time window: ``start`` < 0 s, ``duration`` <= 0 s or ``max_frames`` < 1."""
    if start < 0:
        raise UsageError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise UsageError(f"duration must be positive, got {duration}")
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"max_frames must be >= 1, got {max_frames}")


def iter_frames(
    path: str | os.PathLike,
    *,
    fps: float | Fraction | None = None,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
    interval: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode the first video stream as uint8 RGB ``(H, W, 3)`` frames, in display orientation.

    - ``fps``: resample by timestamps to this rate (see the module docstring); None keeps every frame.
    - ``interval``: keep every ``interval``-th frame from ``start`` on (the official evaluation's
      sampling; see ``official_interval``). Exclusive with ``fps``.
    - ``start``/``duration``: seconds from the stream's start; seeks to the keyframe before ``start``
      and skips to the first frame at or after it.
    - ``max_frames``: stop after this many output frames.

    The file is opened (and a missing video stream reported) when this function is called; frames are
    decoded as the iterator is consumed. Raises VideoError with one line naming the file.
    """
    if fps is not None and interval is not None:
        raise UsageError("pass either fps (timestamp resampling) or interval (frame stepping), not both")
    if fps is not None and Fraction(fps) <= 0:
        raise UsageError(f"fps must be positive, got {fps}")
    if interval is not None and interval < 1:
        raise UsageError(f"interval must be >= 1, got {interval}")
    check_window(start, duration, max_frames)

    path = Path(path)
    container = _open_input(path)
    try:
        v = _video_stream(container, path)
        src_fps = _stream_fps(v)
    except BaseException:
        container.close()
        raise
    return _iter_frames(
        container,
        v,
        path,
        src_fps,
        fps=fps,
        start=start,
        duration=duration,
        max_frames=max_frames,
        interval=interval,
    )


def _iter_frames(container, v, path, src_fps, *, fps, start, duration, max_frames, interval):
    import av

    v.codec_context.thread_type = "AUTO"
    tb = Fraction(v.time_base) if v.time_base else None
    origin = v.start_time if v.start_time is not None else None
    t_start = Fraction(start).limit_denominator(1_000_000)
    t_end = t_start + Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
    step = Fraction(1) / Fraction(fps).limit_denominator(1_000_000) if fps is not None else None
    frame_dt = Fraction(1) / src_fps if src_fps else Fraction(1, 25)

    n_out = 0
    n_decoded = 0
    t = None
    first_index = 0
    op: str | None = None

    def emit(frame) -> np.ndarray:
        nonlocal op
        if op is None:
            op = _orientation_op(_display_matrix(frame))
        return _apply_orientation(_frame_to_rgb(frame), op)

    try:
        if t_start > 0 and tb is not None:
            target = int(math.floor(t_start / tb)) + (origin or 0)
            try:
                container.seek(target, stream=v, backward=True, any_frame=False)
            except av.FFmpegError:
                container.seek(0, stream=v)  # unseekable: decode from the start and skip
            first_index = None  # the absolute index is estimated from the time of the first frame

        prev = None  # latest decoded frame (fps mode)
        prev_end = None
        k = 0  # next output slot (fps mode) / in-window frame counter (interval mode)
        done = False
        for frame in container.decode(v):
            if frame.pts is not None and tb is not None:
                if origin is None:
                    origin = frame.pts
                t = (frame.pts - origin) * tb
            else:
                t = t + frame_dt if t is not None else Fraction(0)
            if first_index is None:
                first_index = max(0, round(t / frame_dt))
            n_decoded += 1

            if step is None:
                if t < t_start:
                    continue
                if t_end is not None and t >= t_end:
                    break
                if interval is not None:
                    keep = k % interval == 0
                    k += 1
                    if not keep:
                        continue
                yield emit(frame)
                n_out += 1
                if max_frames is not None and n_out >= max_frames:
                    break
                continue

            # fps mode: slot k (time t_start + k*step) shows the latest frame with time <= slot time.
            while prev is not None and t_start + k * step < t:
                if t_end is not None and t_start + k * step >= t_end:
                    done = True
                    break
                yield emit(prev)
                n_out += 1
                k += 1
                if max_frames is not None and n_out >= max_frames:
                    done = True
                    break
            if done:
                break
            prev = frame
            dur = Fraction(frame.duration) * tb if frame.duration and tb is not None else frame_dt
            prev_end = t + dur
        else:
            # End of stream (fps mode): the last frame fills the slots up to its own end time.
            if step is not None and prev is not None:
                while t_start + k * step < prev_end:
                    if t_end is not None and t_start + k * step >= t_end:
                        break
                    yield emit(prev)
                    n_out += 1
                    k += 1
                    if max_frames is not None and n_out >= max_frames:
                        break
    except av.FFmpegError as e:
        idx = (first_index or 0) + n_decoded
        t_err = t + frame_dt if t is not None else Fraction(0)
        where = f"frame {idx} (t~{float(t_err):.3f}s)"
        raise VideoError(
            f"{path}: decode error at {where}: {_ffmpeg_reason(e)}; the file is damaged "
            "(re-encode it, or use start/duration to skip the damaged part)"
        ) from e
    finally:
        container.close()

    if n_out == 0:
        if n_decoded == 0:
            raise VideoError(f"{path}: no frames could be decoded (empty or truncated video stream)")
        raise VideoError(
            f"{path}: no frames at or after start={start}s (decoded {n_decoded} frames before the end)"
        )
