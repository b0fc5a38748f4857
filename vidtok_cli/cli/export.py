"""The ``vidtok export`` command: a .vtok file's latent streams as safetensors or npz arrays."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .console import print_summary


@app.command("export")
def export_cmd(
    src: Path = typer.Argument(..., help="A .vtok file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors or .npz."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    integers: bool = typer.Option(
        False,
        "--integers",
        help="Quantized streams: also the stored integers (<stream>.q) and <stream>.offset/.step.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Export every latent stream of a .vtok file as arrays named after the stream, with the header."""
    from ..export import export_file

    summary = export_file(src, output, force=force, integers=integers)
    print_summary(summary, as_json, quiet, f"exported {src.name}")
