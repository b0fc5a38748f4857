"""The ``vidtok convert`` command: an official checkpoint to a self-describing .safetensors file."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .console import console


@app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="Official Lightning .ckpt (or any state-dict file) to convert."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Zoo name, official YAML, or card TOML; not needed for official file names.",
    ),
    dtype: str | None = typer.Option(
        None, "--dtype", help="Store weights as fp32, fp16 or bf16 (default: as stored)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Convert a checkpoint to a self-describing .safetensors file (weights + config + card + source sha256)."""
    from ..checkpoints import read_safetensors_metadata
    from ..hub import record_weights
    from ..loading import convert_checkpoint

    out = convert_checkpoint(src, output, config=config, dtype=dtype, force=force)
    record_weights(out)  # so that decoding finds it by sha256
    if not quiet:
        meta = read_safetensors_metadata(out)
        size = out.stat().st_size
        console().print(
            f"wrote {out} ({size / 2**20:.1f} MiB); source sha256 {meta.get('vidtok.source_sha256', '?')[:16]}..."
        )
