"""The .vtok header: building it from keyword arguments, validating it (format 1.0 and 1.1), the 1.1 view of a
1.0 header, and the canonical JSON it is written in."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from .._version import __version__
from .format import FORMAT_VERSION, LATENT_DTYPES, MODES, ContainerError, Damaged
from .streams import streams_problem, v10_streams


def dump_json(obj: Any) -> bytes:
    """The format's canonical JSON bytes: compact, sorted keys, ASCII, no NaN or infinity."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(data: bytes, what: str) -> Any:
    """Parsed UTF-8 JSON; Damaged naming ``what`` when it is not valid JSON (NaN and infinity included)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Damaged(f"{what} is not valid JSON ({type(e).__name__})") from None


def is_int(x: Any, lo: int = 0, hi: int = (1 << 63) - 1) -> bool:
    """Whether ``x`` is a JSON integer (not a bool) in [lo, hi]."""
    return type(x) is int and lo <= x <= hi


def int_pair(x: Any, lo: int = 0) -> bool:
    """Whether ``x`` is a list of two integers >= lo."""
    return isinstance(x, list) and len(x) == 2 and is_int(x[0], lo) and is_int(x[1], lo)


def deep_merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``updates`` merged in, nested objects key by key."""
    out = dict(base)
    for k, v in updates.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _fps_pair(fps: Any) -> list[int]:
    if isinstance(fps, (list, tuple)) and len(fps) == 2:
        fr = Fraction(int(fps[0]), int(fps[1]))
    else:
        fr = Fraction(fps).limit_denominator(1_000_000)
    return [fr.numerator, fr.denominator]


def _audio_entry(audio: Mapping[str, Any]) -> dict[str, Any]:
    """The header's audio object: extradata as base64 text (or None), layout defaulted, time base a pair."""
    aud = dict(audio)
    ed = aud.get("extradata")
    if isinstance(ed, (bytes, bytearray, memoryview)):
        aud["extradata"] = base64.b64encode(bytes(ed)).decode("ascii") if len(ed) else None
    aud.setdefault("extradata", None)
    aud.setdefault("layout", None)
    aud["time_base"] = _fps_pair(aud["time_base"])
    return aud


def make_header(
    *,
    model_card: str,
    weights_sha256: str,
    streams: Sequence[Mapping[str, Any]],
    temporal_factor: int,
    spatial_factor: int,
    width: int,
    height: int,
    fps: Any,
    frame_count: int | None = None,
    pad: tuple[int, int, int, int] | list[int] = (0, 0, 0, 0),
    crop: list[int] | tuple[int, int, int, int] | None = None,
    frames_padded: int = 0,
    frames_per_record: int | None = None,
    segment_frames: int | None = None,
    clip_overlap: int = 0,
    audio: Mapping[str, Any] | None = None,
    family: str = "vidtok",
    tool_version: str = __version__,
    **extra: Any,
) -> dict[str, Any]:
    """A validated format-1.1 header dict from keyword arguments (fps as a Fraction, a number or a pair).

    ``streams``: the named latent streams in record order, entries as ``streams.stream_entry`` builds them.
    ``audio`` takes codec, sample_rate, channels, time_base, extradata (bytes or base64 text) and optionally
    layout; extra keyword arguments become extra top-level header keys.
    """
    header = {
        "tool_version": str(tool_version),
        "model": {"card": model_card, "sha256": weights_sha256, "family": family},
        "streams": [dict(e) for e in streams],
        "frame_layout": {"temporal_factor": int(temporal_factor), "spatial_factor": int(spatial_factor)},
        "source": {
            "width": int(width),
            "height": int(height),
            "frame_count": None if frame_count is None else int(frame_count),
            "fps": _fps_pair(fps),
        },
        "padding": {
            "pad": [int(v) for v in pad],
            "crop": None if crop is None else [int(v) for v in crop],
            "frames_padded": int(frames_padded),
        },
        "chunking": {
            "frames_per_record": frames_per_record,
            "segment_frames": segment_frames,
            **({"clip_overlap": int(clip_overlap)} if clip_overlap else {}),
        },
        "audio": None if audio is None else _audio_entry(audio),
        **extra,
    }
    problem = header_problem(header)
    if problem:
        raise ContainerError(f"invalid .vtok header: {problem}")
    return header


def _need(d: Any, path: str, key: str) -> Any:
    """``d[key]``; raises Damaged naming the path when ``d`` is not an object or lacks the key."""
    if not isinstance(d, dict):
        raise Damaged(f"{path} must be an object")
    if key not in d:
        raise Damaged(f"{path}.{key} is missing")
    return d[key]


def _model_problem(h: dict[str, Any]) -> str | None:
    if not isinstance(_need(h, "header", "tool_version"), str):
        return "tool_version must be a string"
    model = _need(h, "header", "model")
    if not isinstance(_need(model, "model", "card"), str):
        return "model.card must be a string"
    sha = _need(model, "model", "sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        return "model.sha256 must be 64 hexadecimal digits"
    if not isinstance(_need(model, "model", "family"), str):
        return "model.family must be a string"
    return None


def _latent_problem(h: dict[str, Any]) -> str | None:
    """Format 1.0: the ``mode`` and ``latent`` objects."""
    mode = _need(h, "header", "mode")
    if mode not in MODES:
        return f"mode must be one of {', '.join(MODES)}, not {mode!r}"
    lat = _need(h, "header", "latent")
    for k in ("channels", "height", "width", "temporal_factor", "spatial_factor"):
        if not is_int(_need(lat, "latent", k), 1, 1 << 30):
            return f"latent.{k} must be a positive integer"
    if _need(lat, "latent", "dtype") not in LATENT_DTYPES:
        return f"latent.dtype must be one of {', '.join(LATENT_DTYPES)}"
    levels = _need(lat, "latent", "fsq_levels")
    if levels is not None:
        if not (isinstance(levels, list) and levels and all(is_int(v, 2, 1 << 16) for v in levels)):
            return "latent.fsq_levels must be null or a list of integers >= 2"
        if len(levels) > 64 or math.prod(levels) > (1 << 62):
            return "latent.fsq_levels describe a codebook larger than 2**62"
    if mode == "tokens":
        if levels is None:
            return "mode 'tokens' needs latent.fsq_levels"
        if len(levels) != lat["channels"]:
            return "latent.channels must equal the number of FSQ levels"
    return None


def _streams_problem(h: dict[str, Any]) -> str | None:
    """Format 1.1: the ``streams`` list and the ``frame_layout`` object."""
    problem = streams_problem(_need(h, "header", "streams"))
    if problem:
        return problem
    fl = _need(h, "header", "frame_layout")
    for k in ("temporal_factor", "spatial_factor"):
        if not is_int(_need(fl, "frame_layout", k), 1, 1 << 30):
            return f"frame_layout.{k} must be a positive integer"
    return None


def _source_problem(h: dict[str, Any]) -> str | None:
    src = _need(h, "header", "source")
    for k in ("width", "height"):
        if not is_int(_need(src, "source", k), 1, 1 << 30):
            return f"source.{k} must be a positive integer"
    fc = _need(src, "source", "frame_count")
    if fc is not None and not is_int(fc):
        return "source.frame_count must be null or an integer >= 0"
    if not int_pair(_need(src, "source", "fps"), 1):
        return "source.fps must be a [numerator, denominator] pair of positive integers"
    return None


def _layout_problem(h: dict[str, Any]) -> str | None:
    pad = _need(h, "header", "padding")
    p = _need(pad, "padding", "pad")
    if not (isinstance(p, list) and len(p) == 4 and all(is_int(v) for v in p)):
        return "padding.pad must be [top, bottom, left, right] integers >= 0"
    crop = pad.get("crop")
    if crop is not None and not (isinstance(crop, list) and len(crop) == 4 and all(is_int(v) for v in crop)):
        return "padding.crop must be null or [x, y, width, height] integers >= 0"
    if not is_int(_need(pad, "padding", "frames_padded")):
        return "padding.frames_padded must be an integer >= 0"
    ch = _need(h, "header", "chunking")
    for k in ("frames_per_record", "segment_frames"):
        v = _need(ch, "chunking", k)
        if v is not None and not is_int(v, 1):
            return f"chunking.{k} must be null or a positive integer"
    if not is_int(ch.get("clip_overlap", 0)):
        return "chunking.clip_overlap must be an integer >= 0"
    return None


def _audio_problem(h: dict[str, Any]) -> str | None:
    aud = _need(h, "header", "audio")
    if aud is None:
        return None
    if not isinstance(_need(aud, "audio", "codec"), str):
        return "audio.codec must be a string"
    for k in ("sample_rate", "channels"):
        if not is_int(_need(aud, "audio", k), 1):
            return f"audio.{k} must be a positive integer"
    if not int_pair(_need(aud, "audio", "time_base"), 1):
        return "audio.time_base must be a [numerator, denominator] pair of positive integers"
    layout = aud.get("layout")
    if layout is not None and not isinstance(layout, str):
        return "audio.layout must be null or a string"
    ed = aud.get("extradata")
    if ed is not None:
        if not isinstance(ed, str):
            return "audio.extradata must be null or base64 text"
        try:
            base64.b64decode(ed, validate=True)
        except (binascii.Error, ValueError):
            return "audio.extradata is not valid base64"
    return None


def header_problem(h: Any, minor: int = FORMAT_VERSION[1]) -> str | None:
    """What is wrong with a header dict of format 1.``minor``, or None when it is valid (unknown extra keys
    are allowed)."""
    if not isinstance(h, dict):
        return "the header is not a JSON object"
    streams = _latent_problem if minor == 0 else _streams_problem
    try:
        for check in (_model_problem, streams, _source_problem, _layout_problem, _audio_problem):
            problem = check(h)
            if problem:
                return problem
    except Damaged as e:
        return str(e)
    return None


def v11_view(header: dict[str, Any]) -> dict[str, Any]:
    """A validated format-1.0 header with the 1.1 keys added: ``streams`` (its one stream, ``latent`` or
    ``tokens``) and ``frame_layout``; the 1.0 keys stay."""
    lat = header["latent"]
    return {
        **header,
        "streams": v10_streams(header),
        "frame_layout": {"temporal_factor": lat["temporal_factor"], "spatial_factor": lat["spatial_factor"]},
    }


def validate_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-clean copy of ``header`` after checking every required field; ContainerError when invalid."""
    try:
        clean = json.loads(dump_json(dict(header)))
    except (TypeError, ValueError) as e:
        raise ContainerError(f"invalid .vtok header: not representable as JSON ({e})") from None
    problem = header_problem(clean)
    if problem:
        raise ContainerError(f"invalid .vtok header: {problem}")
    return clean
