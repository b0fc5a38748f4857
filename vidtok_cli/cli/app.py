"""The Typer app object, its root callback (``--version``) and the console-script entry point.

Each command lives in its own module of this package and registers itself on ``app`` when imported;
``load_commands`` imports them all, in the order ``vidtok --help`` lists them.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from .._version import __version__
from ..errors import VidtokError
from .console import console

app = typer.Typer(
    name="vidtok",
    help="Video tokenizer and neural video codec: encode videos to latents/tokens (.vtok) and back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


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


COMMAND_MODULES = ("models", "convert", "encode", "decode", "info", "export", "train", "bench")
"""The command modules of this package, in the order ``vidtok --help`` lists their commands."""


def load_commands() -> typer.Typer:
    """Imports every command module so that its command is registered on ``app``; returns ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    return app


def main() -> None:
    """Console-script entry point: runs the app and turns vidtok errors into one-line messages."""
    load_commands()
    try:
        app()
    except VidtokError as e:
        from rich.text import Text

        console(stderr=True).print(Text.assemble(("vidtok: error: ", "bold red"), str(e)))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console(stderr=True).print("vidtok: interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the user gets one line; VIDTOK_DEBUG=1 shows the traceback
        if os.environ.get("VIDTOK_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        console(stderr=True).print(
            f"vidtok: internal error: {type(e).__name__}: {first} (set VIDTOK_DEBUG=1 for the traceback)",
            markup=False,
        )
        sys.exit(1)
