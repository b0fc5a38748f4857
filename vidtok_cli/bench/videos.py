"""The videos to benchmark: files, folders and CSV lists, and a unique name for each."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi")


def collect_videos(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Video files from files, folders (recursive, by extension) and CSV files with a ``videos`` column.

    CSV paths are taken relative to the CSV's folder unless absolute. Order: as given, folders sorted;
    duplicates dropped. UsageError when an input does not exist or nothing is found.
    """
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise UsageError(f"{p}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
            out.extend(found)
        elif p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_videos_from_csv(p))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    seen: set[str] = set()
    unique = []
    for f in out:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise UsageError("no videos to benchmark")
    return unique


def _videos_from_csv(path: Path) -> list[Path]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "videos" not in reader.fieldnames:
            raise UsageError(f"{path}: the CSV has no 'videos' column (columns: {reader.fieldnames})")
        rows = [r["videos"].strip() for r in reader if r.get("videos") and r["videos"].strip()]
    out = []
    for r in rows:
        p = Path(r).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        if not p.is_file():
            raise UsageError(f"{path}: listed video {r} does not exist ({p})")
        out.append(p)
    return out


def _unique_stems(videos: list[Path]) -> list[str]:
    stems = [v.stem for v in videos]
    out = []
    for i, (v, s) in enumerate(zip(videos, stems, strict=True)):
        out.append(
            s if stems.count(s) == 1 else f"{s}_{i}" if v.parent.name == "" else f"{v.parent.name}_{s}_{i}"
        )
    return out
