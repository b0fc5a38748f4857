"""Output helpers shared by the commands: rich consoles, the summary table, progress bars.

Internal to ``vidtok_cli.cli``; rich is imported only when something is printed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..memory_plan import Plan


def console(stderr: bool = False):  # noqa: ANN201 - rich import kept lazy
    """A rich console on stdout (or stderr); 200 columns wide when piped, so tables stay readable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output gets wide lines instead of rich's 80-column default, so tables stay readable
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def print_summary(summary: dict, as_json: bool, quiet: bool, title: str) -> None:
    """Prints a command's summary: a two-column table, one JSON line with --json, nothing with --quiet."""
    if as_json:  # one line per file (JSON Lines), so several inputs and ranks stay parseable
        typer.echo(json.dumps(summary, default=str))
        return
    if quiet:
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    for k, v in summary.items():
        if v is None:
            continue
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console().print(table)


def plan_printer(quiet: bool) -> Callable[[Plan], None] | None:
    """A callback printing a `memory_plan.Plan` (and its warning) on stderr, one line each; None if quiet."""
    if quiet:
        return None

    def show(plan: Plan) -> None:
        err = console(stderr=True)
        err.print(f"vidtok: {plan.describe()}", markup=False, highlight=False)
        if plan.warning:
            err.print(f"vidtok: warning: {plan.warning}", markup=False, highlight=False)

    return show


@contextmanager
def frame_progress(quiet: bool, label: str) -> Iterator[Callable[[int], None] | None]:
    """Yields a frame-count callback driving a rich progress bar on a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(label), BarColumn(), TextColumn("{task.completed} frames"), TimeElapsedColumn(),
        console=console(stderr=True),
    )  # fmt: skip
    task = bar.add_task(label, total=None)
    with bar:
        yield lambda n: bar.update(task, completed=n)


@contextmanager
def clip_progress(quiet: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A clip-count progress bar with ETA on a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console(stderr=True),
    )  # fmt: skip
    task = bar.add_task("bench", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)
