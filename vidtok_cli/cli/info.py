"""The ``vidtok info`` command: a .vtok file's header and statistics."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .app import app
from .console import print_summary


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
        "model": h["model"]["card"], "mode": h["mode"],
        "source": f"{h['source']['width']}x{h['source']['height']}, {h['source']['frame_count']} frames @ "
        f"{h['source']['fps'][0]}/{h['source']['fps'][1]} fps",
        "latent": f"{h['latent']['channels']}ch {h['latent']['height']}x{h['latent']['width']} ({h['latent']['dtype']})",
        **{k: v for k, v in info["stats"].items() if not isinstance(v, (dict, list))},
    }  # fmt: skip
    print_summary(flat, False, False, str(src))
