"""What a training run shows on the terminal: a progress bar (or plain lines) and validation results."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "val_text"]


class Progress:
    """Rich progress bar (step rate, ETA, loss) on a terminal; one plain line per log record otherwise."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.enabled = enabled
        self.total = total
        self.bar: Any = None
        self.last_step = -1
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )  # fmt: skip
            self.task = self.bar.add_task("train", total=total, completed=start, rate="", info="")

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, step: int, rec: dict[str, Any]) -> None:
        """Shows ``step`` and the last training log record."""
        if not self.enabled:
            return
        fresh = rec.get("step") == step
        info = ""
        if rec:
            info = f"loss {rec.get('loss', float('nan')):.4g} rec {rec.get('rec_loss', float('nan')):.4f}"
        if self.bar is not None:
            rate = f"{rec['steps_per_s']:.2f} step/s" if rec else ""
            self.bar.update(self.task, completed=step, rate=rate, info=info)
        elif fresh:
            print(f"step {step}/{self.total} {info} lr {rec.get('lr', 0):.3g} {rec.get('steps_per_s', 0):.2f} step/s",
                  file=sys.stderr, flush=True)  # fmt: skip

    def note(self, text: str) -> None:
        """Prints a line above the bar (nothing for an empty text)."""
        if not self.enabled or not text:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)


def val_text(rec: dict[str, Any] | None) -> str:
    """One line for a validation record ("" when it has no PSNR)."""
    if not rec or "psnr" not in rec:
        return ""
    text = f"step {rec['step']}: val PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.4f}"
    if "psnr_ema" in rec:
        text += f" (EMA {rec['psnr_ema']:.2f} dB, {rec['ssim_ema']:.4f})"
    return text
