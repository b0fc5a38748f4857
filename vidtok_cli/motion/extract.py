"""Codec motion vectors: the Video-LaVIT re-encode (6 fps MPEG-4 Part 2) and the decoder's exported vectors.

Decisions (the official command is ``ffmpeg -i IN -filter:v fps=6 -b:v 8000k -c:v mpeg4 -f rawvideo OUT``,
read back with mvextractor; ``docs/MOTION.md`` has the details):

- The re-encode runs in-process: the source's first video stream is decoded, its timestamps are taken
  from the file's start time and its display matrix applied (autorotate), as the ffmpeg command line
  does; FFmpeg's own ``fps=6`` filter picks the frames (for each 1/6 s slot the last input frame whose
  time rounds to it; slots run to the end of the last frame), and ``format=yuv420p`` converts other
  pixel formats. A video starting after the file's start time begins with copies of its first frame,
  as the command line's constant-rate output does.
- Encoder: ``mpeg4`` at 8000 kb/s, GOP 12, no B-frames, time base 1/6, and **16 slice threads**. Each slice
  thread becomes a slice, and motion estimation restarts its predictors at each slice boundary, so the
  thread count changes the vectors. The official command leaves it at ``auto`` (which depends on the
  machine's CPU count); 16 is what ``auto`` gives on any machine with 15 or more CPUs and what the shared
  reference extractions were made with. The output depends only on this number, not on the cores here.
  FFmpeg makes at most one slice per macroblock row, so no more threads than rows are started.
- Each frame's picture type is cleared before encoding (the ffmpeg command line does so too), so source
  I-frames do not force MPEG-4 I-frames.
- The encoded packets go straight to a decoder with ``flags2=+export_mvs`` (no temporary file, no
  subprocess); its ``MOTION_VECTORS`` side data equal mvextractor's rows, in the same order.
- Memory does not grow with the video: one source frame, one encoded packet and one decoded frame at a
  time.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..video.errors import VideoError, _ffmpeg_reason
from ..video.orientation import _display_matrix, _orientation_op
from ..video.probing import _open_input, _video_stream
from ..video.reader import check_window

FPS = 6
BIT_RATE = 8_000_000
GOP_SIZE = 12
ENCODER_THREADS = 16
# mvextractor's column order (PyAV's structured array also has a ``flags`` field, left out).
MV_COLUMNS = ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")
_PICT_CHARS = "?IPBSipb"  # av_get_picture_type_char by AVPictureType value


@dataclass(frozen=True)
class MotionFrame:
    """One decoded frame of the 6 fps MPEG-4 stream: its type, motion vectors and image."""

    index: int
    frame_type: str  # 'I' or 'P' (mvextractor's letter)
    mv_rows: np.ndarray  # int32 (R, 10) in MV_COLUMNS order; empty for I-frames
    frame: Any  # the decoded av.VideoFrame

    @property
    def height(self) -> int:
        return self.frame.height

    @property
    def width(self) -> int:
        return self.frame.width

    def rgb(self) -> np.ndarray:
        """The frame as uint8 RGB (H, W, 3), as the official code gets it (mvextractor's BGR reversed)."""
        return self.frame.to_ndarray(format="rgb24")


def mv_rows(frame) -> np.ndarray:
    """The MOTION_VECTORS side data of a decoded av.VideoFrame as int32 (R, 10) rows (MV_COLUMNS order)."""
    side = frame.side_data.get("MOTION_VECTORS")
    if side is None:
        return np.zeros((0, len(MV_COLUMNS)), dtype=np.int32)
    a = side.to_ndarray()
    return np.stack([a[name].astype(np.int32) for name in MV_COLUMNS], axis=1)


def _open_source(path: Path):
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
    except BaseException:
        container.close()
        raise
    return container, stream


def resample(
    path: str | os.PathLike,
    *,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
) -> Iterator[Any]:
    """The source's frames at 6 fps as the official command picks them: yuv420p av.VideoFrame objects
    with time base 1/6 and their picture type cleared.

    ``start`` / ``duration`` (seconds from the file's start) trim the source before the 6 fps step, as
    ``ffmpeg -ss START -t DURATION -i IN`` does (seek, drop the frames before ``start``, times from 0);
    ``max_frames`` keeps at most this many 6 fps frames. The defaults keep the whole video.
    """
    return _resampled(Path(path), Window(start, duration, max_frames))[0]


@dataclass(frozen=True)
class Window:
    """The part of the source to extract: seconds ``start`` .. ``start + duration``, ``max_frames`` 6 fps
    frames at most (None: no limit)."""

    start: float = 0.0
    duration: float | None = None
    max_frames: int | None = None

    def check(self) -> None:
        check_window(self.start, self.duration, self.max_frames)


WHOLE = Window()


def _resampled(path: Path, window: Window = WHOLE) -> tuple[Iterator[Any], Any]:
    """``resample``'s frames and the stream's sample aspect ratio (one opening of the file)."""
    import av

    window.check()
    container, stream = _open_source(path)
    frames = _constant_rate(_filtered(av, container, stream, path, window))
    if window.max_frames is not None:
        frames = itertools.islice(frames, window.max_frames)
    return frames, stream.sample_aspect_ratio


def _filtered(av, container, stream, path: Path, window: Window) -> Iterator[Any]:
    stream.codec_context.thread_type = "AUTO"
    tb = stream.time_base
    # The ffmpeg command line shifts every timestamp by the file's start time (all streams).
    offset = 0
    if container.start_time is not None and tb is not None:
        offset = math.floor(Fraction(container.start_time, av.time_base) / Fraction(tb) + Fraction(1, 2))
    lo, hi = _span(window, tb)
    graph = None
    try:
        if lo:
            try:
                container.seek(offset + lo, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                container.seek(0, stream=stream)  # unseekable: decode from the start and drop
        for frame in container.decode(stream):
            if frame.pts is not None:
                frame.pts -= offset + lo
                if frame.pts < 0:
                    continue
                if hi is not None and frame.pts >= hi:
                    break
            if graph is None:
                graph = _fps_graph(av, stream, _orientation_op(_display_matrix(frame)))
            graph.vpush(frame)
            yield from _drain(av, graph)
        if graph is None and lo:
            raise VideoError(f"{path}: no video frames from {window.start} s on (the video is shorter)")
        if graph is None:
            raise VideoError(f"{path}: no frames could be decoded (empty or truncated video stream)")
        graph.vpush(None)
        yield from _drain(av, graph)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode and resample to {FPS} fps ({_ffmpeg_reason(e)})") from e
    finally:
        container.close()


def _span(window: Window, tb) -> tuple[int, int | None]:
    """The window as stream timestamps from the file's start: (first kept, end or None)."""
    if window == WHOLE or tb is None:
        return 0, None
    lo = math.ceil(Fraction(window.start).limit_denominator(1_000_000) / Fraction(tb))
    if window.duration is None:
        return lo, None
    return lo, math.ceil(Fraction(window.duration).limit_denominator(1_000_000) / Fraction(tb))


def _fps_graph(av, stream, orientation: str):
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(template=stream)]
    # The ffmpeg command line's autorotate filters come first (vidtok_cli.video.orientation names them).
    if orientation in ("clock", "cclock", "cclock_flip", "clock_flip"):
        nodes.append(graph.add("transpose", f"dir={orientation}"))
    elif orientation:
        nodes += [
            graph.add(name) for name in (["hflip", "vflip"] if orientation == "hvflip" else [orientation])
        ]
    nodes += [graph.add("fps", str(FPS)), graph.add("format", "yuv420p"), graph.add("buffersink")]
    for a, b in itertools.pairwise(nodes):
        a.link_to(b)
    graph.configure()
    return graph


def _drain(av, graph) -> Iterator[Any]:
    while True:
        try:
            out = graph.vpull()
        except (av.BlockingIOError, av.EOFError):
            return
        out.pict_type = av.video.frame.PictureType.NONE
        out.time_base = Fraction(1, FPS)
        yield out


def _constant_rate(frames: Iterator[Any]) -> Iterator[Any]:
    """The ffmpeg command line's constant-rate output: a video starting after the file's start time (first
    slot p > 0) begins with p more copies of its first frame (the same object, pts 0 .. p-1)."""
    first = True
    for frame in frames:
        if first and frame.pts:
            p0 = frame.pts
            for k in range(p0):
                frame.pts = k
                yield frame
            frame.pts = p0
        first = False
        yield frame


def reencode(
    path: str | os.PathLike, *, encoder_threads: int = ENCODER_THREADS, window: Window = WHOLE
) -> Iterator[Any]:
    """The source re-encoded as the official recipe does: av.Packet objects of a 6 fps MPEG-4 Part 2
    stream (written one after the other they form the official raw ``.m4v`` file); ``window``: a part
    of the source only (see ``resample``)."""
    import av

    if not 1 <= encoder_threads <= 64:
        raise UsageError(f"encoder_threads must be 1..64, got {encoder_threads}")
    path = Path(path)
    frames, sar = _resampled(path, window)
    return _reencode(av, frames, sar, path, encoder_threads)


def _reencode(av, frames: Iterator[Any], sar, path: Path, encoder_threads: int) -> Iterator[Any]:
    enc = None
    for frame in frames:
        if enc is None:
            enc = _encoder(av, frame, sar, encoder_threads)
        yield from _encode(av, enc, frame, path)
    if enc is not None:
        yield from _encode(av, enc, None, path)


def _encode(av, enc, frame, path: Path) -> list[Any]:
    try:
        return enc.encode(frame)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot encode to MPEG-4 ({_ffmpeg_reason(e)})") from e


def _encoder(av, first, sar, threads: int):
    enc = av.CodecContext.create("mpeg4", "w")
    enc.width = first.width
    enc.height = first.height
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.framerate = Fraction(FPS)
    enc.bit_rate = BIT_RATE
    enc.gop_size = GOP_SIZE
    enc.max_b_frames = 0
    enc.thread_type = "SLICE"
    # One slice per thread, at most one per macroblock row (FFmpeg reduces the count itself): threads
    # beyond the rows would only wait, so they are not started (the same bitstream, less switching).
    enc.thread_count = min(threads, -(-first.height // 16))
    if sar:
        enc.sample_aspect_ratio = sar
    enc.open()
    return enc


def _decoder(av):
    dec = av.CodecContext.create("mpeg4", "r")
    dec.options = {"flags2": "+export_mvs"}
    dec.thread_count = 1  # decoding 6 fps MPEG-4 is cheap; one thread keeps frames and side data in step
    return dec


def _motion_frames(frames) -> Iterator[MotionFrame]:
    for i, f in enumerate(frames):
        yield MotionFrame(i, _PICT_CHARS[int(f.pict_type)], mv_rows(f), f)


def iter_motion_frames(
    path: str | os.PathLike,
    *,
    reencode_source: bool = True,
    encoder_threads: int = ENCODER_THREADS,
    window: Window = WHOLE,
) -> Iterator[MotionFrame]:
    """The frames of the official 6 fps MPEG-4 stream with their motion vectors, one at a time.

    ``reencode_source=False`` reads ``path`` as that stream already (a raw ``.m4v`` the official command
    made, the official ``raw_file=False``; ``window`` must then be the whole). ``window``: a part of the
    source (see ``resample``). Raises VideoError with one line naming the file.
    """
    import av

    path = Path(path)
    if reencode_source:
        packets = reencode(path, encoder_threads=encoder_threads, window=window)
        return _decode_packets(av, packets, path)
    if window != WHOLE:
        raise UsageError("a time window needs the re-encode (reencode_source=True)")
    container, stream = _open_source(path)
    stream.codec_context.options = {"flags2": "+export_mvs"}
    return _decode_container(av, container, stream, path)


def _decode_packets(av, packets, path: Path) -> Iterator[MotionFrame]:
    dec = _decoder(av)

    def frames():
        try:
            for packet in packets:
                yield from dec.decode(packet)
            yield from dec.decode(None)
        except av.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode the MPEG-4 re-encode ({_ffmpeg_reason(e)})") from e

    yield from _motion_frames(frames())


def _decode_container(av, container, stream, path: Path) -> Iterator[MotionFrame]:
    n = 0
    try:
        for mf in _motion_frames(container.decode(stream)):
            n += 1
            yield mf
    except av.FFmpegError as e:
        raise VideoError(f"{path}: decode error at frame {n} ({_ffmpeg_reason(e)})") from e
    finally:
        container.close()
    if n == 0:
        raise VideoError(f"{path}: no frames could be decoded (empty or truncated video stream)")
