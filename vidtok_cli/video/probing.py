"""Probing a video file (decoding at most its first frame): ``probe`` and ``VideoInfo``, and the opening
of files and streams that the readers share.

Time is measured from the video stream's start time. ``width``/``height`` are the display size: the
container's display matrix (``vidtok_cli.video.orientation``) is taken into account as the reader applies it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import VideoError, _ffmpeg_reason
from .orientation import _TRANSPOSING, _display_matrix, _display_rotation, _orientation_op


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns about a file without decoding it (only the first frame is decoded).

    ``width``/``height`` are the display size (after the rotation in the display matrix);
    ``coded_width``/``coded_height`` the size the codec stores. ``frame_count`` is the container's
    exact count when it has one (MP4, MOV) and ``frame_count_exact`` is False when it was estimated from
    the duration and frame rate (Matroska/WebM, raw streams). ``rotation`` is the counter-clockwise
    rotation in degrees of the display matrix (FFmpeg's ``av_display_rotation_get``, as PyAV's
    ``VideoFrame.rotation``); ``orientation`` the transform applied to decoded frames ("" for none).
    """

    path: str
    format_name: str
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    fps: Fraction
    frame_count: int
    frame_count_exact: bool
    duration: float
    pix_fmt: str
    rotation: int
    orientation: str
    sample_aspect_ratio: Fraction | None
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (rationals as "num/den" strings)."""
        d = asdict(self)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        if self.sample_aspect_ratio is not None:
            sar = self.sample_aspect_ratio
            d["sample_aspect_ratio"] = f"{sar.numerator}/{sar.denominator}"
        return d


def _open_input(path: str | os.PathLike):
    """av.open for reading, with every failure turned into a one-line VideoError."""
    import av

    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file")
    if p.is_dir():
        raise VideoError(f"{p}: is a directory, not a video file")
    try:
        return av.open(str(p), mode="r")
    except av.FFmpegError as e:
        raise VideoError(f"{p}: cannot open as a video ({_ffmpeg_reason(e)}); is it a video file?") from e
    except OSError as e:  # pragma: no cover - permissions and the like
        raise VideoError(f"{p}: cannot open ({e.strerror or e})") from e


def _video_stream(container, path) -> Any:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{path}: has no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _to_fraction(x) -> Fraction | None:
    if x is None:
        return None
    f = Fraction(x)
    return f if f > 0 else None


def _stream_fps(stream) -> Fraction | None:
    """Average frame rate, else the guessed/base rate, else frames/duration."""
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        r = _to_fraction(getattr(stream, attr, None))
        if r is not None and r <= 1000:
            return r
    if stream.frames and stream.duration and stream.time_base:
        return Fraction(stream.frames) / (stream.duration * Fraction(stream.time_base))
    return None


def _stream_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file (first video stream, first audio stream). Decodes at most one frame."""
    path = Path(path)
    container = _open_input(path)
    try:
        v = _video_stream(container, path)
        cc = v.codec_context
        fps = _stream_fps(v)
        duration = _stream_duration(container, v)
        if fps is None:
            raise VideoError(f"{path}: the video stream has no frame rate")
        if v.frames and v.frames > 0:
            frame_count, exact = int(v.frames), True
        else:
            frame_count, exact = int(round(duration * fps)), False

        # The display matrix lives in the frames' side data (PyAV 18 has no stream-level reader).
        matrix = None
        try:
            for frame in container.decode(v):
                matrix = _display_matrix(frame)
                break
        except Exception:  # noqa: BLE001 - a damaged file still probes; iter_frames reports the error
            matrix = None
        rotation = _display_rotation(matrix)
        orientation = _orientation_op(matrix)
        w, h = int(cc.width), int(cc.height)
        dw, dh = (h, w) if orientation in _TRANSPOSING else (w, h)

        a = container.streams.audio[0] if container.streams.audio else None
        sar = _to_fraction(getattr(v, "sample_aspect_ratio", None))
        return VideoInfo(
            path=str(path),
            format_name=container.format.name,
            codec=cc.name,
            width=dw,
            height=dh,
            coded_width=w,
            coded_height=h,
            fps=fps,
            frame_count=frame_count,
            frame_count_exact=exact,
            duration=duration,
            pix_fmt=cc.pix_fmt or "",
            rotation=rotation,
            orientation=orientation,
            sample_aspect_ratio=sar,
            has_audio=a is not None,
            audio_codec=a.codec_context.name if a is not None else None,
            audio_sample_rate=int(a.codec_context.sample_rate) if a is not None else None,
            audio_channels=int(a.codec_context.channels) if a is not None else None,
        )
    finally:
        container.close()
