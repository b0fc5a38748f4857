"""Video I/O through PyAV (numpy + av only), and the listing of video files.

Reading streams: ``iter_frames`` decodes one frame at a time (first video stream only) and never holds
the video in memory. Writing streams too: ``VideoWriter`` encodes each frame as it arrives.

Decisions (each one a convention the rest of the package relies on):

- Frames at the I/O boundary are uint8 RGB ``(H, W, 3)`` (or ``(T, H, W, 3)``) numpy arrays, in
  display orientation: the container's display matrix (phone videos) is applied the way the ``ffmpeg``
  command line applies it (90/180/270 degree rotations and flips; other angles are ignored).
- YUV to RGB uses the colour matrix and range the stream is tagged with (BT.601 when untagged, which is
  what swscale assumes). The writer converts RGB to limited-range BT.709 and tags the stream so.
- Time is measured from the video stream's start time. ``start``/``duration`` select the frames whose
  presentation time t satisfies ``start <= t < start + duration``.
- Frame-rate resampling (``fps=``): output frame k shows the latest source frame whose time is
  ``<= start + k/fps``; frames are dropped or repeated as needed; output frames are produced while
  ``start + k/fps`` is before the end of the last source frame (its time plus its duration). A 2 s clip
  therefore gives ``2*fps`` frames at any rate. The official VidTok evaluation instead keeps every
  ``interval``-th decoded frame with ``interval = round(src_fps / target_fps)``: ``interval=`` /
  ``official_interval()``.
- Outputs are written atomically (``vidtok_cli.atomic``): an existing file is refused unless ``force``.
- ``list_videos`` turns files, folders (recursive, by ``VIDEO_EXTENSIONS``) and CSV lists into paths.
- Odd frame sizes cannot be coded in 4:2:0 (H.264/HEVC crop in units of 2 chroma-subsampled pixels), so
  the writer switches a 4:2:0/4:2:2 ``pix_fmt`` to 4:4:4 of the same bit depth for such sizes: the file
  decodes to exactly the requested size (some browsers do not play 4:4:4 H.264; ``VideoWriter.notes``
  says when this happened).
- Audio is copied, never re-encoded: ``iter_audio_packets`` returns the packets as plain data (bytes,
  timestamps, codec parameters) and ``VideoWriter(audio=...)`` muxes them bit-exactly. Audio follows
  the video's span at packet granularity: ``audio_span`` keeps the packets that overlap the frames'
  time span (so audio may run up to one packet past the last frame).

The torch side of frames (model tensors, resize, crop, pad) is ``vidtok_cli.frames``. av is imported
inside the functions that need it, so importing this module is cheap; it never imports torch.
"""

from __future__ import annotations

import csv
import math
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import UsageError, VidtokError

__all__ = [
    "VIDEO_EXTENSIONS",
    "AudioInfo",
    "AudioPacket",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "audio_span",
    "iter_audio_packets",
    "iter_frames",
    "list_videos",
    "official_interval",
    "probe",
    "write_png_frames",
]


class VideoError(VidtokError):
    """A video (or audio) file that cannot be read or written; the message names the file."""


# --------------------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------------------


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


def _ffmpeg_reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(";")[0].strip() or type(e).__name__


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


# --------------------------------------------------------------------------------------------------
# Orientation (display matrix), the way the ffmpeg command line autorotates
# --------------------------------------------------------------------------------------------------

_TRANSPOSING = {"clock", "cclock", "cclock_flip", "clock_flip"}


def _display_matrix(frame) -> tuple[int, ...] | None:
    for sd in frame.side_data:
        if getattr(sd.type, "name", str(sd.type)).upper().endswith("DISPLAYMATRIX"):
            raw = bytes(sd)
            if len(raw) >= 36:
                return struct.unpack("=9i", raw[:36])
    return None


def _rotation_get(m: tuple[int, ...]) -> float | None:
    """FFmpeg's av_display_rotation_get: counter-clockwise degrees, or None for a degenerate matrix."""
    fp = [x / 65536.0 for x in m]
    s0 = math.hypot(fp[0], fp[3])
    s1 = math.hypot(fp[1], fp[4])
    if s0 == 0 or s1 == 0:
        return None
    return -math.degrees(math.atan2(fp[1] / s1, fp[0] / s0))


def _display_rotation(m: tuple[int, ...] | None) -> int:
    if m is None:
        return 0
    r = _rotation_get(m)
    return 0 if r is None else int(round(r))


def _orientation_op(m: tuple[int, ...] | None) -> str:
    """The transform ffmpeg (fftools, autorotate) applies for this display matrix.

    Returns "", "clock", "cclock", "cclock_flip", "clock_flip", "hflip", "vflip" or "hvflip".
    """
    if m is None:
        return ""
    r = _rotation_get(m)
    if r is None:
        return ""
    theta = -round(r)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return "cclock_flip" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1:
        h, v = m[0] < 0, m[4] < 0
        return "hvflip" if h and v else "hflip" if h else "vflip" if v else ""
    if abs(theta - 270) < 1:
        return "clock_flip" if m[3] < 0 else "cclock"
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return "vflip" if m[4] < 0 else ""
    return ""  # arbitrary angles: ffmpeg inserts a rotate filter; we leave the frame as stored


def _apply_orientation(img: np.ndarray, op: str) -> np.ndarray:
    if not op:
        return img
    if op == "clock":
        out = np.rot90(img, -1)
    elif op == "cclock":
        out = np.rot90(img, 1)
    elif op == "cclock_flip":  # rotate 90 counter-clockwise, then flip vertically = transpose
        out = img.transpose(1, 0, 2)
    elif op == "clock_flip":  # rotate 90 clockwise, then flip vertically = anti-transpose
        out = img[::-1, ::-1].transpose(1, 0, 2)
    elif op == "hflip":
        out = img[:, ::-1]
    elif op == "vflip":
        out = img[::-1]
    elif op == "hvflip":
        out = img[::-1, ::-1]
    else:  # pragma: no cover
        raise ValueError(op)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------------
# Reading frames
# --------------------------------------------------------------------------------------------------


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
    if start < 0:
        raise UsageError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise UsageError(f"duration must be positive, got {duration}")
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"max_frames must be >= 1, got {max_frames}")

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


# --------------------------------------------------------------------------------------------------
# Audio packets (copy, never re-encode)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioInfo:
    """Codec parameters of an audio stream, enough to mux its packets into a new file.

    ``time_base`` is ``(num, den)`` of the packets' timestamps. JSON: ``to_dict``/``from_dict``
    (extradata as hex).
    """

    codec: str
    sample_rate: int
    channels: int
    layout: str
    time_base: tuple[int, int]
    extradata: bytes | None = None
    bit_rate: int | None = None
    frame_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time_base"] = list(self.time_base)
        d["extradata"] = self.extradata.hex() if self.extradata is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioInfo:
        d = dict(d)
        d["time_base"] = tuple(int(x) for x in d["time_base"])
        ex = d.get("extradata")
        d["extradata"] = bytes.fromhex(ex) if isinstance(ex, str) else ex
        return cls(**d)


@dataclass(frozen=True)
class AudioPacket:
    """One compressed audio packet; timestamps in ``AudioInfo.time_base`` units, 0 = the first video
    frame's time (the requested start)."""

    data: bytes = field(repr=False)
    pts: int | None
    dts: int | None
    duration: int
    is_keyframe: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = self.data.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPacket:
        d = dict(d)
        if isinstance(d["data"], str):
            d["data"] = bytes.fromhex(d["data"])
        return cls(**d)


def _audio_info(a) -> AudioInfo:
    cc = a.codec_context
    tb = Fraction(a.time_base)
    layout = cc.layout.name if cc.layout is not None else ""
    return AudioInfo(
        codec=cc.name,
        sample_rate=int(cc.sample_rate),
        channels=int(cc.channels),
        layout=layout,
        time_base=(tb.numerator, tb.denominator),
        extradata=bytes(cc.extradata) if cc.extradata else None,
        bit_rate=int(cc.bit_rate) if cc.bit_rate else None,
        frame_size=int(cc.frame_size) if cc.frame_size else None,
    )


def iter_audio_packets(
    path: str | os.PathLike, start: float = 0.0, duration: float | None = None
) -> tuple[AudioInfo | None, Iterator[AudioPacket]]:
    """The first audio stream's packets, as stored (no decoding), with its codec parameters.

    Returns ``(None, empty iterator)`` for a file without audio. Timestamps are shifted so that 0 is
    the video stream's start plus ``start`` (the time of the first frame ``iter_frames`` yields, to
    within a frame). With ``start > 0``, packets starting before it are dropped (the cut is at packet
    granularity, ~21 ms for AAC); packets starting at or after ``start + duration`` are dropped.
    With ``start == 0`` everything from the beginning is kept, including priming packets with
    negative timestamps.
    """
    path = Path(path)
    container = _open_input(path)
    try:
        if not container.streams.audio:
            container.close()
            return None, iter(())
        a = container.streams.audio[0]
        info = _audio_info(a)
        v = container.streams.video[0] if container.streams.video else None
    except BaseException:
        container.close()
        raise
    return info, _iter_audio(container, a, v, path, start, duration)


def _iter_audio(container, a, v, path, start, duration):
    import av

    tb = Fraction(a.time_base)
    origin = Fraction(0)
    if v is not None and v.start_time is not None and v.time_base is not None:
        origin = v.start_time * Fraction(v.time_base)
    elif a.start_time is not None:
        origin = a.start_time * tb
    t0 = origin + Fraction(start).limit_denominator(1_000_000)
    offset = round(t0 / tb)
    end = round((t0 + Fraction(duration).limit_denominator(1_000_000)) / tb) if duration is not None else None
    try:
        if start > 0:
            try:
                container.seek(offset, stream=a, backward=True, any_frame=False)
            except av.FFmpegError:
                container.seek(0, stream=a)
        for p in container.demux(a):
            if p.size == 0 or p.pts is None and p.dts is None:
                continue  # the flush packet
            ts = p.pts if p.pts is not None else p.dts
            if start > 0 and ts < offset:
                continue
            if end is not None and ts >= end:
                break
            yield AudioPacket(
                data=bytes(p),
                pts=p.pts - offset if p.pts is not None else None,
                dts=p.dts - offset if p.dts is not None else None,
                duration=int(p.duration or 0),
                is_keyframe=bool(p.is_keyframe),
            )
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot read audio packets: {_ffmpeg_reason(e)}") from e
    finally:
        container.close()


def audio_span(
    packets: Iterable[AudioPacket],
    time_base: tuple[int, int] | Fraction,
    start: Fraction | float,
    end: Fraction | float | None,
) -> Iterator[AudioPacket]:
    """The packets that overlap the time span ``[start, end)`` in seconds (``end=None``: no end), with
    timestamps shifted so that ``start`` becomes 0.

    The cut is at packet granularity: a packet is kept when it starts before ``end`` and ends after
    ``start``. With ``start == 0`` the packets before 0 (codec priming) are kept as they are. Packets are
    taken in file order; reading stops (and ``packets`` is closed) at the first one that starts at or
    after ``end``.
    """
    tb = Fraction(*time_base) if isinstance(time_base, tuple) else Fraction(time_base)
    t0 = Fraction(start).limit_denominator(1_000_000)
    offset = round(t0 / tb)
    stop = None if end is None else Fraction(end).limit_denominator(1_000_000) / tb
    try:
        for p in packets:
            ts = p.pts if p.pts is not None else p.dts
            if ts is not None:
                if stop is not None and ts >= stop:
                    break
                if t0 > 0 and ts + max(int(p.duration), 1) <= offset:
                    continue
            if offset:
                p = replace(
                    p,
                    pts=None if p.pts is None else p.pts - offset,
                    dts=None if p.dts is None else p.dts - offset,
                )
            yield p
    finally:
        close = getattr(packets, "close", None)
        if close is not None:
            close()  # a generator reading a file stops reading it


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

_444 = {
    "yuv420p": "yuv444p",
    "yuvj420p": "yuv444p",
    "nv12": "yuv444p",
    "nv21": "yuv444p",
    "yuv422p": "yuv444p",
    "yuv420p10le": "yuv444p10le",
    "yuv422p10le": "yuv444p10le",
    "p010le": "yuv444p10le",
    "yuv420p12le": "yuv444p12le",
}


def _cpu_has_avx512() -> bool:
    """Whether this (Linux) CPU advertises AVX-512; False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def _x264_determinism_params(options: dict[str, str]) -> dict[str, str]:
    """Pin x264's SIMD level below AVX-512 so the same frames give the same bytes in every process.

    With its AVX-512 kernels, libx264's macroblock-tree rate control (in the build PyAV ships) gives
    different bitstreams for identical input from one process to the next; measured here on a 23-frame
    clip: 3 distinct outputs in 3 runs, each identical with ``asm=AVX2``. ``AVX2`` is a cumulative level
    in x264 (SSE..AVX2, FMA3, BMI2), so only the AVX-512 kernels are dropped. A user-given ``asm`` wins.
    """
    params = options.get("x264-params", "")
    if "asm=" in params or not _cpu_has_avx512():
        return options
    out = dict(options)
    out["x264-params"] = f"{params}:asm=AVX2" if params else "asm=AVX2"
    return out


class VideoWriter:
    """Stream uint8 RGB frames (and copied audio packets) into a video file.

    ``with VideoWriter(path, width, height, fps) as w: w.write(frames)``. Frames get pts 0, 1, 2, ... in
    a time base of ``1/fps`` (``fps`` a Fraction such as ``Fraction(30000, 1001)``), so the file has
    exactly as many frames as written and exactly that frame rate. The file is written under a temporary
    name in the same directory and renamed into place by a clean ``close()``; on an exception (or
    ``abort()``) nothing is left behind. An existing ``path`` is refused unless ``force=True``.

    ``audio``: an ``AudioInfo`` from ``iter_audio_packets``; then ``write_audio(packet)`` copies its
    packets into the file bit-exactly (any time; the muxer interleaves).
    ``crf``/``preset`` apply to libx264/libx265; ``options`` adds codec options.
    Output is tagged limited-range BT.709 (the RGB -> YUV conversion uses that matrix).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction | float | int,
        *,
        crf: int | None = 18,
        preset: str | None = "medium",
        codec: str = "libx264",
        pix_fmt: str = "yuv420p",
        audio: AudioInfo | None = None,
        force: bool = False,
        options: dict[str, str] | None = None,
    ) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        if self.width < 1 or self.height < 1:
            raise UsageError(f"{self.path}: invalid frame size {width}x{height}")
        fps = Fraction(fps)
        if fps <= 0:
            raise UsageError(f"{self.path}: frame rate must be positive, got {fps}")
        self.fps = fps.limit_denominator(1_000_000) if fps.denominator > 1_000_000 else fps
        self.force = force
        self.notes: list[str] = []
        self.frames_written = 0
        self.audio_packets_written = 0
        self._closed = False

        atomic.refuse_existing(self.path, force, VideoError)
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: directory {self.path.parent} does not exist")

        self.pix_fmt = pix_fmt
        if (self.width % 2 or self.height % 2) and pix_fmt in _444:
            self.pix_fmt = _444[pix_fmt]
            self.notes.append(
                f"odd frame size {self.width}x{self.height} cannot be coded in {pix_fmt}; "
                f"wrote {self.pix_fmt} to keep the exact size"
            )

        opts: dict[str, str] = {}
        if codec in ("libx264", "libx265"):
            if crf is not None:
                opts["crf"] = str(crf)
            if preset is not None:
                opts["preset"] = preset
            if codec == "libx265":
                opts["x265-params"] = "log-level=error"
        opts.update(options or {})
        if codec == "libx264":
            opts = _x264_determinism_params(opts)

        self._tmp = atomic.temp_path(self.path)
        container_options = {}
        if self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            container_options["movflags"] = "+faststart"
        try:
            fmt = None if self.path.suffix else "mp4"
            self._out = av.open(str(self._tmp), mode="w", format=fmt, options=container_options)
        except av.FFmpegError as e:
            atomic.discard(self._tmp)
            raise VideoError(f"{self.path}: cannot create ({_ffmpeg_reason(e)})") from e
        try:
            try:
                s = self._out.add_stream(codec, rate=self.fps)
            except (av.FFmpegError, ValueError) as e:
                raise VideoError(f"{self.path}: cannot write codec {codec!r} ({e})") from e
            s.width, s.height = self.width, self.height
            s.pix_fmt = self.pix_fmt
            s.time_base = Fraction(1) / self.fps
            cc = s.codec_context
            cc.time_base = Fraction(1) / self.fps
            cc.framerate = self.fps
            cc.options = opts
            cc.colorspace = 1  # BT.709
            cc.color_primaries = 1
            cc.color_trc = 1
            cc.color_range = 1  # limited (MPEG)
            self._vstream = s
            self._astream = None
            self._audio_tb: Fraction | None = None
            if audio is not None:
                self._astream = self._add_audio_stream(audio)
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        except BaseException:
            self._discard()
            raise

    # -- audio ------------------------------------------------------------------------------------

    def _add_audio_stream(self, info: AudioInfo):
        """An output stream with the stored codec parameters, for packets that are copied as they are.

        PyAV 18 cannot set channels or extradata on a codec-less ``add_mux_stream``, so the stream is
        made with ``add_stream(codec)`` and its encoder is opened (never used) to fill in the codec
        parameters; then the source's extradata replaces the encoder's (for AAC the encoder writes a
        longer AudioSpecificConfig than most sources have). Needs an encoder of the same codec.
        """
        import av

        try:
            s = self._out.add_stream(info.codec, rate=int(info.sample_rate))
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(
                f"{self.path}: cannot copy {info.codec} audio into {self.path.suffix or 'this'} files "
                f"({_ffmpeg_reason(e)}); drop the audio"
            ) from e
        cc = s.codec_context
        tb = Fraction(*info.time_base)
        try:
            cc.layout = info.layout or info.channels
        except (ValueError, TypeError, av.FFmpegError):
            cc.layout = int(info.channels)
        fmts = cc.codec.audio_formats
        if fmts:
            cc.format = fmts[0]
        cc.time_base = tb
        s.time_base = tb
        if info.bit_rate:
            cc.bit_rate = int(info.bit_rate)
        try:
            try:
                cc.open()
            except av.FFmpegError:
                if not info.layout:
                    raise
                cc.layout = int(info.channels)  # the encoder rejected the layout; the channel count
                cc.open()  # is what the container records (the extradata carries the real one)
        except av.FFmpegError as e:
            raise VideoError(
                f"{self.path}: cannot set up a {info.codec} audio stream with {info.sample_rate} Hz, "
                f"layout {info.layout or info.channels} ({_ffmpeg_reason(e)}); drop the audio"
            ) from e
        cc.extradata = info.extradata
        self._audio_tb = tb
        return s

    def write_audio(self, packet: AudioPacket) -> None:
        """Mux one stored audio packet (timestamps in the AudioInfo's time base)."""
        import av

        if self._astream is None:
            raise VideoError(f"{self.path}: the writer was opened without audio")
        p = av.Packet(packet.data)
        p.pts = packet.pts
        p.dts = packet.dts
        p.duration = int(packet.duration)
        p.time_base = self._audio_tb
        p.is_keyframe = bool(packet.is_keyframe)
        p.stream = self._astream
        try:
            self._out.mux(p)
        except av.FFmpegError as e:
            raise VideoError(
                f"{self.path}: cannot write audio packet pts={packet.pts}: {_ffmpeg_reason(e)}"
            ) from e
        self.audio_packets_written += 1

    # -- video ------------------------------------------------------------------------------------

    def write(self, frames) -> None:
        """Encode uint8 RGB frames ``(T, H, W, 3)`` or one ``(H, W, 3)`` (numpy or torch)."""
        import av

        if self._closed:
            raise VideoError(f"{self.path}: the writer is closed")
        arr = frames.cpu().numpy() if hasattr(frames, "cpu") else np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"{self.path}: expected frames of shape (T, {self.height}, {self.width}, 3), got {arr.shape}"
            )
        if arr.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected uint8 frames, got {arr.dtype}")
        s = self._vstream
        for img in arr:
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f = self._reformatter.reformat(
                f, format=self.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG"
            )
            f.pts = self.frames_written
            f.time_base = s.codec_context.time_base
            try:
                for packet in s.encode(f):
                    self._out.mux(packet)
            except av.FFmpegError as e:
                raise VideoError(
                    f"{self.path}: cannot encode frame {self.frames_written}: {_ffmpeg_reason(e)}"
                ) from e
            self.frames_written += 1

    # -- life cycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the encoder, finish the file and rename it into place."""
        import av

        if self._closed:
            return
        if self.frames_written == 0:
            self._discard()
            raise VideoError(f"{self.path}: no frames were written; no file created")
        try:
            for packet in self._vstream.encode(None):
                self._out.mux(packet)
            self._out.close()
        except av.FFmpegError as e:
            self._discard()
            raise VideoError(f"{self.path}: cannot finish the file: {_ffmpeg_reason(e)}") from e
        except BaseException:
            self._discard()
            raise
        self._closed = True
        atomic.commit(self._tmp, self.path, force=self.force, error=VideoError)

    def abort(self) -> None:
        """Stop writing and remove the temporary file; nothing is left at ``path``."""
        self._discard()

    def _discard(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - cleaning up after a failure
            pass
        atomic.discard(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_png_frames(
    directory: str | os.PathLike,
    frames_iter: Iterable[np.ndarray],
    start_index: int = 0,
    *,
    force: bool = False,
    pattern: str = "frame_{:06d}.png",
) -> list[Path]:
    """Write frames (``(H, W, 3)`` or batches ``(T, H, W, 3)`` of uint8 RGB) as PNG files.

    Files are named ``pattern.format(index)`` from ``start_index`` on, each written to a temporary name
    and renamed; existing files are refused unless ``force``. Returns the paths written. PNG encoding
    uses PyAV's png encoder (no Pillow needed).
    """
    import av

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    idx = start_index
    ctx = None
    size = None
    for batch in frames_iter:
        arr = batch.cpu().numpy() if hasattr(batch, "cpu") else np.asarray(batch)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames (T, H, W, 3), got {arr.dtype} {arr.shape}")
        for img in arr:
            h, w = img.shape[:2]
            if ctx is None or size != (h, w):
                ctx = av.CodecContext.create("png", "w")
                ctx.width, ctx.height, ctx.pix_fmt = w, h, "rgb24"
                ctx.time_base = Fraction(1, 1)
                size = (h, w)
            final = d / pattern.format(idx)
            atomic.refuse_existing(final, force, VideoError)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = 0
            data = b"".join(bytes(p) for p in ctx.encode(frame))
            written.append(atomic.write_bytes(final, data, force=force, error=VideoError))
            idx += 1
    return written


# --------------------------------------------------------------------------------------------------
# Listing video files
# --------------------------------------------------------------------------------------------------

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".y4m")


def list_videos(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    root: str | os.PathLike[str] | None = None,
    missing_ok: bool = False,
) -> list[Path]:
    """The video files named by ``inputs``: files, folders and CSV lists (one input or a sequence of them).

    - a folder: its files with a ``VIDEO_EXTENSIONS`` extension, searched recursively, in sorted order;
    - a ``.csv`` file: the paths in its ``videos`` column (the official VidTok meta-file format; other
      columns are ignored), relative to ``root`` when given, else to the CSV's folder, unless absolute;
    - any other file: taken as a video whatever its extension.

    Order: as given; duplicates are dropped. Listed files that do not exist are an error unless
    ``missing_ok`` (then they are kept: a reader reports them). UsageError (one line) when an input does
    not exist or nothing is found.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file())
            if not found:
                raise UsageError(f"{p}: no videos (no video files ending in {', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        elif p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_videos_from_csv(p, root, missing_ok))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    seen: set[str] = set()
    unique = []
    for f in out:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise UsageError("no videos given")
    return unique


def _videos_from_csv(path: Path, root: str | os.PathLike[str] | None, missing_ok: bool) -> list[Path]:
    base = Path(root).expanduser() if root is not None else path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            reader = csv.DictReader(f)
            names = [n.strip() for n in reader.fieldnames or []]
            if "videos" not in names:
                raise UsageError(f"{path}: the CSV has no 'videos' column (columns: {reader.fieldnames})")
            key = (reader.fieldnames or [])[names.index("videos")]
            rows = [v.strip() for r in reader if (v := r.get(key)) and v.strip()]
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from e
    if not rows:
        raise UsageError(f"{path}: the 'videos' column lists no files")
    out = []
    for r in rows:
        p = Path(r).expanduser()
        if not p.is_absolute():
            p = base / p
        if not missing_ok and not p.is_file():
            raise UsageError(f"{path}: listed video {r} does not exist ({p})")
        out.append(p)
    return out
