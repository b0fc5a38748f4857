"""The ``vidtok models`` command: the model zoo as a table or JSON."""

from __future__ import annotations

import json

import typer

from .app import app
from .console import console


def _fmt_metric(card_metrics: dict, key: str, fmt: str) -> str:
    v = card_metrics.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON."),
) -> None:
    """List the model zoo: official checkpoints and their published PSNR/SSIM/LPIPS/FVD."""
    from .. import zoo
    from ..loading import weights_cached

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
        ("name", "left"), ("family", "left"), ("causal", "center"), ("TxHxW", "left"), ("latent", "left"),
        ("PSNR", "right"), ("SSIM", "right"), ("LPIPS", "right"), ("FVD", "right"), ("local", "center"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=col == "name")
    for c in cards:
        latent = (
            f"KL {c.latent_channels}ch"
            if c.regularizer == "kl"
            else f"{c.regularizer.upper()} {c.codebook_size:,}"
        )
        name = f"{c.name} (default)" if c.default else c.name
        table.add_row(
            name, f"vidtok {c.version}" if c.family == "vidtok" else c.family, "yes" if c.causal else "no", c.compression, latent,
            _fmt_metric(c.metrics, "psnr", ".2f"), _fmt_metric(c.metrics, "ssim", ".3f"),
            _fmt_metric(c.metrics, "lpips", ".3f"), _fmt_metric(c.metrics, "fvd", ".1f"),
            "yes" if weights_cached(c) else "-",
        )  # fmt: skip
    con = console()
    con.print(table)
    con.print(
        "Metrics as published (MCL-JCV, 30 fps, 256x256; v1.1 rows use the long-video protocol; "
        "VidTwin: 16x224x224 clips). 'local': weights already on this machine."
    )
