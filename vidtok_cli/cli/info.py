"""The ``vidtok info`` command: a .vtok file's header and statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .app import app
from .console import print_summary

if TYPE_CHECKING:  # pragma: no cover
    from ..vtok import Stream


@app.command("info")
def info_cmd(
    src: Path = typer.Argument(..., help="A .vtok file."),
    as_json: bool = typer.Option(False, "--json", help="Print header and statistics as JSON."),
) -> None:
    """Show a .vtok file's header, records, bits per token and bits per pixel (verifies every checksum)."""
    from ..vtok import VtokReader

    reader = VtokReader(src)
    reader.verify()
    info = {"header": reader.header, "stats": reader.stats()}
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    h = reader.header
    flat = {
        "model": h["model"]["card"], "format": ".".join(map(str, reader.version)),
        "source": f"{h['source']['width']}x{h['source']['height']}, {h['source']['frame_count']} frames @ "
        f"{h['source']['fps'][0]}/{h['source']['fps'][1]} fps",
        **{
            f"stream {s.name}": _describe(s, info["stats"]["streams"][s.name], reader.file_size)
            for s in reader.streams
        },
        **{k: v for k, v in info["stats"].items() if not isinstance(v, (dict, list))},
    }  # fmt: skip
    print_summary(flat, False, False, str(src))


def _describe(stream: Stream, stats: dict[str, Any], file_size: int) -> str:
    """One line for a stream: kind, step shape and time axis (or one step per clip), dtype or codebook,
    coding (quantized streams: bits and the bound on the latent error), and its payload bits (with their bits
    per pixel and share of the file's)."""
    shape = list(map(str, stream.shape))
    if stream.time_axis is None:
        dims = f"{'x'.join(shape)} per clip"
    else:
        shape.insert(stream.time_axis, "t")
        dims = "x".join(shape)
    what = {
        "continuous": stream.dtype,
        "fsq": f"levels {list(stream.levels)}",
        "vq": f"K={stream.codebook_size}",
    }
    if stream.coding == "quant":
        per = "per record" if stream.channel_axis is None else "per channel per record"
        coding = f"quantized {stream.quant_bits} bits {per} + rANS, max latent error {stats.get('max_error', 0.0):.3g}"
    else:
        coding = f"{what[stream.kind]}, {stream.coding}"
    line = f"{stream.kind} ({dims}), {coding}, {stats['bits']} bits"
    share = f"{100 * stats['bits'] / (8 * file_size):.0f}% of the file" if file_size else ""
    if stats.get("bits_per_pixel") is not None:
        share = f"{stats['bits_per_pixel']:.4g} bpp, {share}"
    return f"{line} ({share})"
