"""The run's event log: ``log.jsonl`` (one JSON record per line) and, with ``--tensorboard``, scalars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import UsageError
from . import run_dir


class RunLog:
    """Appends records to ``OUT/log.jsonl`` (trimmed to ``step`` when a run resumes) and mirrors numeric
    fields to TensorBoard (``train/*``, ``val/*``); writes ``train_config.json`` beside it."""

    def __init__(self) -> None:
        self._fh: Any = None
        self._tb: Any = None

    def open(self, out: Path, config: dict[str, Any], step: int, resuming: bool, tensorboard: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        log = out / run_dir.LOG_NAME
        if resuming and log.is_file():
            run_dir.trim_log(log, step)
        self._fh = open(log, "a", buffering=1)  # noqa: SIM115 - closed by close()
        write_text(out / "train_config.json", json.dumps(config, indent=2) + "\n", force=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise UsageError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from e
            self._tb = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1)

    def write(self, rec: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(rec) + "\n")
        if self._tb is not None and "step" in rec:
            prefix = "val/" if rec.get("event") == "val" else "train/"
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(prefix + k, v, rec["step"])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
