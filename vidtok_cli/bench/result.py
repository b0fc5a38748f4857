"""The result of a bench run (:class:`BenchResult`) and its JSON and CSV forms."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text
from ..errors import UsageError


@dataclass
class BenchResult:
    """Everything a bench run measured; ``to_json``/``to_csv`` write it, ``print_report`` shows it.

    ``clips`` and ``videos`` are lists of dicts (per-clip values with per-frame lists; per-video
    frame-weighted means); ``overall`` the means over every scored frame of every video; ``fvd`` the
    FVD summary with its sample size N; ``speed`` encode/decode frames per second and peak memory;
    ``rd`` codec points and verdicts; ``partial`` is True when the run was interrupted.
    """

    tool: dict[str, Any]
    protocol: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    videos: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)
    fvd: dict[str, Any] | None = None
    fvd_u8: dict[str, Any] | None = None
    speed: dict[str, Any] = field(default_factory=dict)
    rd: dict[str, Any] | None = None
    samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
        """The result as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=2, default=_json_default, allow_nan=False)
        if path is not None:
            write_text(path, text + "\n", force=force, error=UsageError)
        return text

    def csv_rows(self) -> list[dict[str, Any]]:
        """Flat rows: one per clip, per video, overall, and per RD point (``level`` says which)."""
        common = {
            "model": self.model.get("name"), "model_sha256": self.model.get("weights_sha256"),
            "protocol": self.protocol.get("name"), "tool_version": self.tool.get("version"),
        }  # fmt: skip
        rows: list[dict[str, Any]] = []
        for c in self.clips:
            rows.append(
                {"level": "clip", **{k: v for k, v in c.items() if not isinstance(v, (dict, list))}, **common}
            )
        for v in self.videos:
            rows.append(
                {
                    "level": "video",
                    **{k: x for k, x in v.items() if not isinstance(x, (dict, list))},
                    **common,
                }
            )
        rows.append({"level": "overall", "video": "ALL", **{k: x for k, x in self.overall.items()
                                                              if not isinstance(x, (dict, list))}, **common})  # fmt: skip
        if self.rd:
            for p in self.rd.get("points", []):
                rows.append({"level": "rd", "video": "ALL", **p, **common})
        return rows

    def to_csv(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
        """The values as CSV text (see ``csv_rows``); written atomically to ``path`` when given.

        The protocol, metric implementations and weight hashes are in the JSON report; each CSV row
        names the model, its weights' sha256, the protocol and the tool version.
        """
        rows = self.csv_rows()
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        text = buf.getvalue()
        if path is not None:
            write_text(path, text, force=force, error=UsageError)
        return text


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (Path, Fraction)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
