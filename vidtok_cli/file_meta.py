"""What a .vtok file records about the model that wrote it and its latent streams.

The stream entries of the header from a model's latent specs (with the coding of continuous latents:
raw floats or quantized at ``--latent-bits``), the model entry (card, family, weights sha256 and file),
the size summary of a written file, and the check that a model's streams match a file's. Used by the codec
(``codec.py``, ``motion_codec.py``) and by the bench's rate files.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import vtok
from .errors import UsageError


def header_streams(
    specs: Any, height: int, width: int, latent_dtype: str, latent_bits: int = 0
) -> list[dict[str, Any]]:
    """The header's stream entries for the model's latent specs and a (padded) frame size; continuous
    streams quantized at ``latent_bits`` bits per value when it is not 0."""
    entries = [
        vtok.stream_entry(
            name,
            spec.kind,
            spec.step_shape(height, width),
            time_axis=spec.time_axis,
            dtype=latent_dtype,
            levels=spec.levels or None,
            codebook_size=spec.codebook_size,
            channels=spec.channels,
            channel_axis=spec.channel_axis if spec.kind == "continuous" else None,
        )
        for name, spec in specs.items()
    ]
    return [quantized_entry(e, latent_bits) for e in entries] if latent_bits else entries


def model_entry(m: Any, with_config: bool = False) -> dict[str, Any]:
    """How a file records a model: ``card``, ``family``, ``sha256``, ``weights_reference``, and
    ``weights_file`` (absolute) when loaded from a file; ``config``: the card's architecture too."""
    card = m.card or {}
    entry = {
        "card": str(card.get("name", "unknown")),
        "family": m.family,
        "sha256": m.weights_sha256,
        "weights_reference": str(card.get("weights_reference", "")),
    }
    if m.weights_path is not None:
        entry["weights_file"] = os.path.abspath(m.weights_path)
    if with_config and isinstance(card.get("config"), dict):
        entry["config"] = card["config"]
    return entry


def header_model_fields(m: Any) -> dict[str, Any]:
    """``vtok.make_header``'s arguments that name the model (``model_entry`` in the header's terms)."""
    e = model_entry(m)
    fields = {"model_card": e["card"], "weights_sha256": e["sha256"], "family": e["family"]}
    fields["weights_reference"] = e["weights_reference"]
    return {**fields, **({"weights_file": e["weights_file"]} if "weights_file" in e else {})}


def encoded_sizes(
    dst: Path, frames: int, width: int, height: int, fps: float | Fraction, n_tokens: int
) -> dict[str, Any]:
    """The summary's sizes of a written file: frames, size, rate, duration, bytes, bits per pixel and per
    token (None without tokens)."""
    size_bytes = dst.stat().st_size
    return {
        "frames": frames,
        "width": width,
        "height": height,
        "fps": float(fps),
        "duration_s": frames / float(fps),
        "file_bytes": size_bytes,
        "bits_per_pixel": 8 * size_bytes / (frames * width * height),
        "bits_per_token": (8 * size_bytes / n_tokens) if n_tokens else None,
    }


def stream_mismatch(specs: Any, streams: list[vtok.Stream]) -> str | None:
    """How the model's latent specs differ from a file's streams (names, kinds, channels, levels, codebook
    size), or None when they match."""
    have, want = list(specs), [s.name for s in streams]
    if have != want:
        return f"the model's streams ({', '.join(have)}) differ from the file's ({', '.join(want)})"
    for s in streams:
        spec = specs[s.name]
        for what, mine, theirs in (
            ("kind", spec.kind, s.kind),
            ("channels", spec.channels, s.channels),
            ("FSQ levels", list(spec.levels), list(s.levels)),
            ("codebook size", spec.codebook_size if spec.discrete else None, s.codebook_size),
        ):
            if theirs is not None and mine != theirs:
                return f"the model's stream {s.name!r} has {what} {mine}, the file's has {theirs}"
    return None


DEFAULT_LATENT_BITS = 6
"""Bits per value of continuous latents when ``--latent-bits`` is not given: measured on held-out videos
with the default model (README, "Compact latents"), 6 bits cut the latent rate 3.4-4.8x for a PSNR loss
of 0.015-0.057 dB; 5 bits lose 0.24 dB, 7 bits cut the rate less than 3x."""


def check_latent_bits(bits: int | None, latent_dtype: str = "float16") -> int:
    """The bits per value to quantize continuous latents at (0: raw); UsageError outside 0 and 2..16."""
    if bits is None:
        return DEFAULT_LATENT_BITS if latent_dtype == "float16" else 0
    lo, hi = vtok.QUANT_MIN_BITS, vtok.QUANT_MAX_BITS
    if isinstance(bits, bool) or not isinstance(bits, int) or not (bits == 0 or lo <= bits <= hi):
        raise UsageError(f"--latent-bits must be {lo}..{hi} (or 0 for raw floats), got {bits}")
    if bits and latent_dtype != "float16":
        raise UsageError("--latent-dtype applies to raw latents; it cannot be combined with --latent-bits")
    return bits


def quantized_entry(entry: dict[str, Any], bits: int) -> dict[str, Any]:
    """A continuous stream's header entry quantized at ``bits`` (per channel along its ``channel_axis``; the
    whole record as one channel without one)."""
    if entry["kind"] != "continuous":
        return entry
    out = {k: v for k, v in entry.items() if k != "dtype"}
    axis = entry.get("channel_axis")
    out.update(coding="quant", bits=bits, **({} if axis is None else {"channel_axis": axis}))
    return out
