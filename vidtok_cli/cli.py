"""The ``vidtok`` command line. Thin: parse options, call one library function, print with rich.

Heavy imports (torch, av) happen inside commands so that ``vidtok --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from ._version import __version__
from .errors import VidtokError

app = typer.Typer(
    name="vidtok",
    help="Video tokenizer and neural video codec: encode videos to latents/tokens (.vtok) and back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _console(stderr: bool = False):  # noqa: ANN202 - rich import kept lazy
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output gets wide lines instead of rich's 80-column default, so tables stay readable
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vidtok {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vidtok: VidTok / VidTwin / motion video tokenizers from the command line."""


# ----------------------------------------------------------------------------- models


def _fmt_metric(card_metrics: dict, key: str, fmt: str) -> str:
    v = card_metrics.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON."),
) -> None:
    """List the model zoo: official checkpoints and their published PSNR/SSIM/LPIPS/FVD."""
    from . import zoo
    from .loading import weights_cached

    cards = zoo.list_cards()
    if as_json:
        out = []
        for c in cards:
            d = c.to_dict()
            d["cached"] = weights_cached(c)
            out.append(d)
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"vidtok model zoo ({len(cards)} models)", title_justify="left")
    for col, justify in [
        ("name", "left"), ("ver", "left"), ("causal", "center"), ("TxHxW", "left"), ("latent", "left"),
        ("PSNR", "right"), ("SSIM", "right"), ("LPIPS", "right"), ("FVD", "right"), ("local", "center"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=col == "name")
    for c in cards:
        latent = f"KL {c.latent_channels}ch" if c.regularizer == "kl" else f"FSQ {c.codebook_size:,}"
        name = f"{c.name} (default)" if c.default else c.name
        table.add_row(
            name, c.version, "yes" if c.causal else "no", c.compression, latent,
            _fmt_metric(c.metrics, "psnr", ".2f"), _fmt_metric(c.metrics, "ssim", ".3f"),
            _fmt_metric(c.metrics, "lpips", ".3f"), _fmt_metric(c.metrics, "fvd", ".1f"),
            "yes" if weights_cached(c) else "-",
        )  # fmt: skip
    con = _console()
    con.print(table)
    con.print(
        "Metrics as published (MCL-JCV, 30 fps, 256x256; v1.1 rows use the long-video protocol). "
        "'local': weights already on this machine."
    )


# ----------------------------------------------------------------------------- convert


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
    from .checkpoints import read_safetensors_metadata
    from .loading import convert_checkpoint

    out = convert_checkpoint(src, output, config=config, dtype=dtype, force=force)
    if not quiet:
        meta = read_safetensors_metadata(out)
        size = out.stat().st_size
        _console().print(
            f"wrote {out} ({size / 2**20:.1f} MiB); source sha256 {meta.get('vidtok.source_sha256', '?')[:16]}..."
        )


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point: runs the app and turns vidtok errors into one-line messages."""
    try:
        app()
    except VidtokError as e:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("vidtok: error: ", "bold red"), str(e)))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _console(stderr=True).print("vidtok: interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the user gets one line; VIDTOK_DEBUG=1 shows the traceback
        if os.environ.get("VIDTOK_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        _console(stderr=True).print(
            f"vidtok: internal error: {type(e).__name__}: {first} (set VIDTOK_DEBUG=1 for the traceback)",
            markup=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
