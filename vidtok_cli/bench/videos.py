"""The videos to benchmark (``video.list_videos``: files, folders and CSV lists), and a unique name for each."""

from __future__ import annotations

from pathlib import Path

from ..video import VIDEO_EXTENSIONS, list_videos

__all__ = ["VIDEO_EXTENSIONS", "collect_videos"]

collect_videos = list_videos  # the bench's name for it: every listed file must exist


def _unique_stems(videos: list[Path]) -> list[str]:
    stems = [v.stem for v in videos]
    out = []
    for i, (v, s) in enumerate(zip(videos, stems, strict=True)):
        out.append(
            s if stems.count(s) == 1 else f"{s}_{i}" if v.parent.name == "" else f"{v.parent.name}_{s}_{i}"
        )
    return out
