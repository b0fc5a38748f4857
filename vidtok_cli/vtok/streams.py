"""The named latent streams of a .vtok file: their header entries, their validation, and the 1.1 view of a
format-1.0 header (whose single stream is ``latent`` or ``tokens``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .format import (
    LATENT_DTYPES,
    MAX_CODEBOOK,
    MAX_STREAMS,
    MAX_VALUES_PER_RECORD,
    QUANT_MAX_BITS,
    QUANT_MIN_BITS,
    STREAM_CODINGS,
    STREAM_KINDS,
)

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
RESERVED_NAMES = ("header",)  # the name export gives the header in .npz files


@dataclass(frozen=True)
class Stream:
    """One named latent stream as a file declares it.

    ``shape``: one latent step's shape (the time axis removed); a chunk of t steps has ``shape`` with t
    inserted at ``time_axis``. ``time_axis`` None: a clip-level stream (one step per clip, the step being
    the whole per-clip tensor); a chunk of t steps has shape ``(t, *shape)``. ``dtype``: on-disk dtype of a continuous stream (None for token streams).
    ``levels``: FSQ levels (fsq); ``codebook_size``: K of a token stream (the product of the levels for fsq).
    ``coding``: ``raw`` or ``quant`` (continuous), ``auto`` or ``packed`` (tokens). ``quant_bits``: bits per
    value of a ``quant`` stream (the header's ``bits``). ``channel_axis``: the axis of the step shape that
    holds channels (None: none).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    time_axis: int | None
    dtype: str | None = None
    levels: tuple[int, ...] = ()
    codebook_size: int | None = None
    coding: str = "raw"
    channels: int | None = None
    quant_bits: int | None = None
    channel_axis: int | None = None

    @property
    def discrete(self) -> bool:
        """Whether the stream holds token indices (fsq or vq)."""
        return self.kind != "continuous"

    @property
    def step_axis(self) -> int:
        """The axis of a chunk array that counts latent steps (0 for a clip-level stream)."""
        return 0 if self.time_axis is None else self.time_axis

    def chunk_shape(self, t: int) -> tuple[int, ...]:
        """The shape of a chunk of ``t`` latent steps."""
        s = list(self.shape)
        s.insert(self.step_axis, int(t))
        return tuple(s)

    @property
    def bits(self) -> int:
        """Bits per packed index: ceil(log2 K), at least 1 (token streams)."""
        assert self.codebook_size is not None
        return max(1, (self.codebook_size - 1).bit_length())

    @property
    def radices(self) -> list[int]:
        """The digits the entropy coder codes: the FSQ levels, or a VQ index's mixed-radix digits.

        A VQ index splits into base-256 digits from the least significant one, the last digit's radix being
        ceil(K / 256^m): K = 1000 gives [256, 4], K = 65536 gives [256, 256], K = 200 gives [200].
        """
        if self.kind == "fsq":
            return list(self.levels)
        assert self.codebook_size is not None
        out: list[int] = []
        rest = self.codebook_size
        while rest > 256:
            out.append(256)
            rest = -(-rest // 256)
        out.append(rest)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The stream's header entry."""
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "time_axis": self.time_axis,
            "coding": self.coding,
        }
        if self.kind == "continuous" and self.coding == "quant":
            d["bits"] = self.quant_bits
        elif self.kind == "continuous":
            d["dtype"] = self.dtype
        else:
            d["codebook_size"] = self.codebook_size
        if self.kind == "fsq":
            d["levels"] = list(self.levels)
        if self.channels is not None:
            d["channels"] = self.channels
        if self.channel_axis is not None:
            d["channel_axis"] = self.channel_axis
        return d


def stream_entry(
    name: str,
    kind: str,
    shape: Sequence[int],
    *,
    time_axis: int | None,
    dtype: str = "float16",
    levels: Sequence[int] | None = None,
    codebook_size: int | None = None,
    coding: str | None = None,
    channels: int | None = None,
    bits: int | None = None,
    channel_axis: int | None = None,
) -> dict[str, Any]:
    """A header stream entry (a dict) from keyword arguments; ``make_header`` validates it.

    ``shape``: one latent step's shape (time axis removed); ``time_axis`` None for a clip-level stream
    (one step per clip); ``dtype`` applies to continuous streams only;
    ``codebook_size`` defaults to the product of ``levels`` for fsq; ``coding`` defaults to raw / auto.
    ``bits``: a continuous stream quantized at this many bits per value (coding ``quant``, no dtype);
    ``channel_axis``: the step shape's channel axis (quantization is per channel).
    """
    d: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "shape": [int(v) for v in shape],
        "time_axis": None if time_axis is None else int(time_axis),
        "coding": coding or ("auto" if kind != "continuous" else "quant" if bits else "raw"),
    }
    if kind == "continuous" and d["coding"] == "quant":
        d["bits"] = None if bits is None else int(bits)
    elif kind == "continuous":
        d["dtype"] = dtype
    if kind == "fsq":
        d["levels"] = [int(v) for v in levels or ()]
        d["codebook_size"] = int(codebook_size) if codebook_size is not None else math.prod(d["levels"])
    elif kind == "vq":
        d["codebook_size"] = None if codebook_size is None else int(codebook_size)
    if channels is not None:
        d["channels"] = int(channels)
    if channel_axis is not None:
        d["channel_axis"] = int(channel_axis)
    return d


def _is_int(x: Any, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi


def _entry_problem(k: int, e: Any) -> str | None:
    where = f"streams[{k}]"
    if not isinstance(e, dict):
        return f"{where} must be an object"
    name = e.get("name")
    if not (isinstance(name, str) and NAME_RE.fullmatch(name)) or name in RESERVED_NAMES:
        return f"{where}.name must be 1-64 letters, digits, _ or - (not starting with a digit), not 'header'"
    where = f"stream {name!r}"
    kind = e.get("kind")
    if kind not in STREAM_KINDS:
        return f"{where}: kind must be one of {', '.join(STREAM_KINDS)}, not {kind!r}"
    shape = e.get("shape")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(_is_int(v, 1, 1 << 30) for v in shape)):
        return f"{where}: shape must be a list of at most 8 positive integers (one latent step)"
    if math.prod(shape) > MAX_VALUES_PER_RECORD:
        return f"{where}: one latent step holds more values than a record may"
    if "time_axis" not in e or not (e["time_axis"] is None or _is_int(e["time_axis"], 0, len(shape))):
        return f"{where}: time_axis must be null (one step per clip) or an integer in 0..{len(shape)}"
    if e.get("coding") not in STREAM_CODINGS[kind]:
        return f"{where}: coding must be one of {', '.join(STREAM_CODINGS[kind])} for a {kind} stream"
    ch = e.get("channels")
    if ch is not None and not _is_int(ch, 1, 1 << 30):
        return f"{where}: channels must be a positive integer"
    ca = e.get("channel_axis")
    if ca is not None and not _is_int(ca, 0, len(shape) - 1):
        return f"{where}: channel_axis must be an integer in 0..{len(shape) - 1}"
    if kind == "continuous" and e["coding"] == "quant":
        if not _is_int(e.get("bits"), QUANT_MIN_BITS, QUANT_MAX_BITS):
            return (
                f"{where}: bits must be an integer in {QUANT_MIN_BITS}..{QUANT_MAX_BITS} for a quant stream"
            )
        return None
    if kind == "continuous":
        if e.get("dtype") not in LATENT_DTYPES:
            return f"{where}: dtype must be one of {', '.join(LATENT_DTYPES)}"
        return None
    k_size = e.get("codebook_size")
    if not _is_int(k_size, 2, MAX_CODEBOOK):
        return f"{where}: codebook_size must be an integer in 2..2**62"
    if kind == "fsq":
        levels = e.get("levels")
        if not (
            isinstance(levels, list) and 0 < len(levels) <= 64 and all(_is_int(v, 2, 1 << 16) for v in levels)
        ):
            return f"{where}: levels must be a list of integers >= 2"
        if math.prod(levels) != k_size:
            return f"{where}: codebook_size must be the product of the FSQ levels"
    return None


def streams_problem(streams: Any) -> str | None:
    """What is wrong with a header's ``streams`` list, or None when it is valid."""
    if not (isinstance(streams, list) and 1 <= len(streams) <= MAX_STREAMS):
        return f"streams must be a list of 1 to {MAX_STREAMS} stream entries"
    for k, e in enumerate(streams):
        problem = _entry_problem(k, e)
        if problem:
            return problem
    names = [e["name"] for e in streams]
    if len(set(names)) != len(names):
        return "stream names must be unique"
    return None


def parse_streams(streams: list[dict[str, Any]]) -> list[Stream]:
    """Stream objects of a validated ``streams`` list."""
    return [
        Stream(
            name=e["name"],
            kind=e["kind"],
            shape=tuple(e["shape"]),
            time_axis=e["time_axis"],
            dtype=e.get("dtype") if e["coding"] == "raw" else None,
            levels=tuple(e.get("levels") or ()),
            codebook_size=e.get("codebook_size"),
            coding=e["coding"],
            channels=e.get("channels"),
            quant_bits=e.get("bits") if e["coding"] == "quant" else None,
            channel_axis=e.get("channel_axis"),
        )
        for e in streams
    ]


def v10_streams(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The 1.1 ``streams`` of a validated format-1.0 header: ``latent`` (C, h, w) or ``tokens`` (h, w)."""
    lat = header["latent"]
    hw = [lat["height"], lat["width"]]
    if header["mode"] == "tokens":
        return [
            stream_entry("tokens", "fsq", hw, time_axis=0, levels=lat["fsq_levels"], channels=lat["channels"])
        ]
    return [
        stream_entry(
            "latent",
            "continuous",
            [lat["channels"], *hw],
            time_axis=1,
            dtype=lat["dtype"],
            channels=lat["channels"],
        )
    ]
