"""The ``vidtok train`` command: train or fine-tune a tokenizer.

Its options are built from the fields of `TrainConfig` (flags, help text and default in each field's
metadata; see ``train/config.py``); only ``--json`` is declared here.
"""

from __future__ import annotations

import inspect
import os
import typing
from typing import Any

import typer

from ..train import config as train_config
from .app import app
from .console import print_summary


def _option_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per `TrainConfig` option field, with its Typer option."""
    types = typing.get_type_hints(train_config.TrainConfig)
    return [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(f.default, *train_config.flags(f), help=f.metadata["help"]),
            annotation=types[f.name],
        )
        for f in train_config.cli_fields()
    ]


def train_cmd(ctx: typer.Context, as_json: bool, **options: Any) -> None:
    """Train or fine-tune a VidTok tokenizer (one process, or many under torchrun)."""
    from ..train.trainer import resume_config, train

    quiet = options["quiet"]
    options["fps"] = options["fps"] or None
    options["val_fps"] = options["val_fps"] or None
    options["quiet"] = options["quiet"] or as_json  # --json: stdout holds the summary only
    if options["resume"]:
        # options given now override the run's own; the others keep the values the run was started with
        given = {
            k: v
            for k, v in options.items()
            if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        }
        if as_json:
            given["quiet"] = True
        cfg = resume_config(options["resume"], **given)
    else:
        cfg = train_config.TrainConfig(**options)
    summary = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print_summary(summary, as_json, quiet, "training finished")


_explicit = [
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter(
        "as_json",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--json", help="Print the summary as JSON."),
        annotation=bool,
    ),
]
_parameters = _explicit[:1] + _option_parameters() + _explicit[1:]
train_cmd.__signature__ = inspect.Signature(_parameters)  # type: ignore[attr-defined]
train_cmd.__annotations__ = {p.name: p.annotation for p in _parameters} | {"return": None}
app.command("train")(train_cmd)
