"""benchmarks/perf.py --quick: the CI smoke run of the speed script, model rows and stream rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_perf_quick_reports_model_and_stream_rows() -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks/perf.py"), "--quick", "--json", "--threads", "1"],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["run"] for r in result["model_rows"]] == ["fp32"]
    assert all(r["encode_fps"] > 0 and r["decode_fps"] > 0 for r in result["model_rows"])
    (row,) = result["stream"]
    assert (row["run"], row["size"], row["frames"], row["chunk"]) == ("fp32", "64x64", 17, 16)
    assert row["encode_fps"] > 0 and row["decode_fps"] > 0 and row["peak_mib"] > 0
    assert row["encode_fps"] == row["frames"] / row["encode_s"]
