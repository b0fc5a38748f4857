"""Listing video files: ``list_videos`` turns files, folders (recursive, by ``VIDEO_EXTENSIONS``) and
CSV lists into paths."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".y4m")


def list_videos(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    root: str | os.PathLike[str] | None = None,
    missing_ok: bool = False,
) -> list[Path]:
    """The video files named by ``inputs``: files, folders and CSV lists (one input or a sequence of them).

    - a folder: its files with a ``VIDEO_EXTENSIONS`` extension, searched recursively, in sorted order;
    - a ``.csv`` file: the paths in its ``videos`` column (the official VidTok meta-file format; other
      columns are ignored), relative to ``root`` when given, else to the CSV's folder, unless absolute;
    - any other file: taken as a video whatever its extension.

    Order: as given; duplicates are dropped. Listed files that do not exist are an error unless
    ``missing_ok`` (then they are kept: a reader reports them). UsageError (one line) when an input does
    not exist or nothing is found.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file())
            if not found:
                raise UsageError(f"{p}: no videos (no video files ending in {', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        elif p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_videos_from_csv(p, root, missing_ok))
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
        raise UsageError("no videos given")
    return unique


def _videos_from_csv(path: Path, root: str | os.PathLike[str] | None, missing_ok: bool) -> list[Path]:
    base = Path(root).expanduser() if root is not None else path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            reader = csv.DictReader(f)
            names = [n.strip() for n in reader.fieldnames or []]
            if "videos" not in names:
                raise UsageError(f"{path}: the CSV has no 'videos' column (columns: {reader.fieldnames})")
            key = (reader.fieldnames or [])[names.index("videos")]
            rows = [v.strip() for r in reader if (v := r.get(key)) and v.strip()]
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from e
    if not rows:
        raise UsageError(f"{path}: the 'videos' column lists no files")
    out = []
    for r in rows:
        p = Path(r).expanduser()
        if not p.is_absolute():
            p = base / p
        if not missing_ok and not p.is_file():
            raise UsageError(f"{path}: listed video {r} does not exist ({p})")
        out.append(p)
    return out
