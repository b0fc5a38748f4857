"""Writing: ``VideoWriter`` encodes each frame as it arrives (and muxes copied audio packets);
``write_png_frames`` writes frames as PNG files.

Decisions:

- The writer converts RGB to limited-range BT.709 and tags the stream so.
- Outputs are written atomically (``vidtok_cli.atomic``): an existing file is refused unless ``force``.
- Odd frame sizes cannot be coded in 4:2:0 (H.264/HEVC crop in units of 2 chroma-subsampled pixels), so
  the writer switches a 4:2:0/4:2:2 ``pix_fmt`` to 4:4:4 of the same bit depth for such sizes: the file
  decodes to exactly the requested size (some browsers do not play 4:4:4 H.264; ``VideoWriter.notes``
  says when this happened).
- libx264 output is the same bytes in every process (``_x264_determinism_params``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import UsageError
from .audio import AudioInfo, AudioPacket
from .errors import VideoError, _ffmpeg_reason

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
