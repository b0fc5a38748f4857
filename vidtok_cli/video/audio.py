"""Audio packets, copied and never re-encoded.

Decisions: ``iter_audio_packets`` returns the packets as plain data (bytes, timestamps, codec parameters)
and ``VideoWriter(audio=...)`` muxes them bit-exactly. Audio follows the video's span at packet
granularity: ``audio_span`` keeps the packets that overlap the frames' time span (so audio may run up to
one packet past the last frame).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import VideoError, _ffmpeg_reason
from .probing import _open_input


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
