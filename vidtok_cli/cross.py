"""Decoding with one stream group taken from another .vtok file (cross-reenactment: ``vidtok decode a.vtok
--dynamics-from b.vtok`` decodes A's structure with B's dynamics).

Generic over families: the group is one of the model's ``stream_groups``; both files must come from the same
model (weights sha256 and family) with the same step shapes for the group's streams. When the files hold
different numbers of clips the shorter decides and a warning says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import vtok
from .errors import UsageError, VidtokError


@dataclass(frozen=True)
class StreamsFrom:
    """Another open .vtok file and the names of the streams to take from it."""

    reader: vtok.VtokReader
    names: tuple[str, ...]


def open_streams_from(
    streams_from: tuple[str | os.PathLike[str], str], m: Any, header: dict[str, Any], path: Path,
    only: str | None, total: int,
) -> tuple[StreamsFrom, int, str | None]:  # fmt: skip
    """Checks and opens ``streams_from`` (other file, group) for decoding ``path`` (its ``header``, ``total``
    frames) with model ``m``; returns it, the frame count to decode and a warning (or None)."""
    from .stream import check_only

    other_path, group = Path(streams_from[0]), streams_from[1]
    check_only(group, m, option=f"--{group}-from")
    if only is not None:
        raise UsageError(f"--only and --{group}-from cannot be combined")
    other = vtok.VtokReader(other_path)
    check_same_model(header, other.header, m, group, path, other_path)
    n, warning = shorter(m, path, total, other_path, int(other.header["source"]["frame_count"]))
    return StreamsFrom(other, tuple(m.stream_groups[group])), n, warning


def swap_streams(
    chunks: Iterable[Any], swap: StreamsFrom | None, start_frame: int, path: Path
) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
    """Each chunk of ``chunks`` (read from ``path`` from ``start_frame``) with its latents, the streams of
    ``swap`` taken from the other file's chunk at the same place; stops where the other file ends."""
    other = iter(()) if swap is None else swap.reader.iter_chunks(start_frame)
    for c in chunks:
        latents = dict(c.latents)
        if swap is not None:
            o = next(other, None)
            if o is None:
                return
            if (o.first_frame, o.end_frame, o.first_latent) != (c.first_frame, c.end_frame, c.first_latent):
                raise VidtokError(
                    f"{swap.reader.path}: its chunk at frame {o.first_frame} does not line up with "
                    f"{path}'s at frame {c.first_frame}; re-encode both with the same options"
                )
            latents.update({name: o.latents[name] for name in swap.names})
        yield c, latents


def check_same_model(
    h: dict[str, Any], other: dict[str, Any], m: Any, group: str, path: Path, other_path: Path
) -> None:
    """VidtokError unless ``other`` (a header) was made by the same model as ``h`` with the same shapes of
    the streams of ``group``."""
    mine, theirs = h["model"], other["model"]
    if (mine.get("sha256"), mine.get("family")) != (theirs.get("sha256"), theirs.get("family")):
        raise VidtokError(
            f"{other_path} was made with another model ({theirs.get('card')}, sha256 "
            f"{str(theirs.get('sha256'))[:12]}...) than {path} ({mine.get('card')}, sha256 "
            f"{str(mine.get('sha256'))[:12]}...); --{group}-from needs files of the same model"
        )
    shapes = {s.name: s.shape for s in vtok.parse_streams(h["streams"])}
    for s in vtok.parse_streams(other["streams"]):
        if s.name in m.stream_groups[group] and shapes.get(s.name) != s.shape:
            raise VidtokError(
                f"{other_path}: stream {s.name!r} has steps of shape {list(s.shape)}, {path}'s "
                f"{list(shapes.get(s.name) or [])}; encode both at the same size"
            )


def shorter(m: Any, path: Path, total: int, other_path: Path, other_total: int) -> tuple[int, str | None]:
    """The frame count to decode when streams come from another file (the shorter of the two), and a
    warning when the files hold different numbers of clips."""
    clip = m.frame_layout.clip_frames
    clips, other_clips = -(-total // clip), -(-other_total // clip)
    n = min(total, other_total)
    if clips == other_clips:
        return n, None
    k = min(clips, other_clips)
    return n, (
        f"{path.name} holds {clips} clips, {other_path.name} {other_clips}: decoded the first "
        f"{k} clip{'s' if k != 1 else ''} ({n} frames)"
    )
