"""Training data: clips of ``frames`` frames at ``fps`` from a folder of videos or an official CSV.

Sources (``find_videos``):

* a folder, searched recursively for video files (``video.VIDEO_EXTENSIONS``);
* a CSV file with a ``videos`` column of paths relative to the CSV's folder (or to ``root``), the
  official VidTok meta-file format; other columns are ignored.

One training sample is one clip (``read_clip``): a random start time (training) or the start of the
video (validation), ``frames`` frames resampled by timestamps to ``fps`` (the paper trains at 3 fps and
validates at 8 fps; ``fps=None`` keeps every frame), the short side resized to ``size`` (bilinear with
antialias, as the official pipeline), then a random (training) or centre (validation) ``size x size``
crop, as float32 ``(3, T, size, size)`` in [-1, 1]. A video shorter than the clip repeats its last frame
(as the official dataset does).

Determinism: every random choice of a sample comes from a seed that the sampler derives from
``(seed, epoch, rank, position)``, so the data order and the crops depend neither on the number of
DataLoader workers nor on whether the run was resumed: ``ClipSampler.start_at`` continues exactly where a
run stopped.

Unreadable videos never stop a run: the sample is replaced by another video (chosen from the same seed)
and the failure is reported with the sample (``failed``), so the trainer counts and logs them.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, VidtokError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ClipSampler",
    "ClipSpec",
    "DataError",
    "VideoClipDataset",
    "collate_clips",
    "find_videos",
    "read_clip",
    "sample_seed",
]

MAX_REPLACEMENTS = 32


class DataError(VidtokError):
    """Training data that cannot be used at all (no videos, no readable video, a bad CSV)."""


def find_videos(data: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The video files of a folder (recursive, sorted), a file, or a CSV's ``videos`` column
    (``video.list_videos``). Missing files listed in a CSV are kept (they count as unreadable when sampled).
    """
    from ..video import list_videos

    try:
        return list_videos(data, root=root, missing_ok=True)
    except UsageError as e:
        raise DataError(str(e)) from None


@dataclass(frozen=True)
class ClipSpec:
    """How a clip is cut from a video.

    ``frames``: clip length; ``fps``: sampling rate (None: the source's frames); ``size``: output side
    (a square crop); ``resize``: the short side before cropping, as ``(low, high)`` drawn uniformly per
    clip for random crops (the midpoint for centre crops); None resizes the short side to ``size``, so
    the crop covers the whole short side; ``random_crop``: random crop position and random start time
    (training) instead of centre crop from the start (validation).
    """

    frames: int
    fps: float | None
    size: int
    random_crop: bool = True
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise UsageError(f"frames must be >= 1, got {self.frames}")
        if self.size < 8:
            raise UsageError(f"size must be >= 8, got {self.size}")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"fps must be positive, got {self.fps}")
        if self.resize is not None:
            low, high = self.resize
            if not self.size <= low <= high:
                raise UsageError(f"resize range {low}-{high} must satisfy size ({self.size}) <= low <= high")

    def short_side(self, rng: random.Random) -> int:
        """The short side a clip is resized to before cropping (draws from ``rng`` for random ranges)."""
        if self.resize is None:
            return self.size
        low, high = self.resize
        if self.random_crop:
            return rng.randint(low, high)
        return (low + high) // 2


def parse_resize(text: str | None) -> tuple[int, int] | None:
    """``"256"`` -> ``(256, 256)``, ``"144-320"`` -> ``(144, 320)``; None or empty -> None."""
    if not text:
        return None
    parts = str(text).replace(":", "-").split("-")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--resize must be N or MIN-MAX pixels, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or values[0] > values[1] or values[0] < 8:
        raise UsageError(f"--resize must be N or MIN-MAX pixels with 8 <= MIN <= MAX, got {text!r}")
    return values[0], values[1]


def sample_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` (stable across processes and Python versions)."""
    import numpy as np

    entropy = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, *[int(p) & 0xFFFFFFFF for p in parts]]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) >> 1


def _span_seconds(spec: ClipSpec, src_fps: Fraction) -> float:
    rate = float(spec.fps) if spec.fps else float(src_fps)
    return (spec.frames - 1) / rate


def read_clip(
    path: str | os.PathLike[str], spec: ClipSpec, rng: random.Random, info: Any = None
) -> torch.Tensor:
    """One clip of ``path`` as float32 ``(3, frames, size, size)`` in [-1, 1] (see the module doc).

    ``info``: the ``video.probe`` result when already known. Raises ``VideoError`` for an unreadable file.
    """
    import torch

    from .. import video
    from ..frames import resize_short_side

    if info is None:
        info = video.probe(path)
    start = 0.0
    if spec.random_crop:
        slack = info.duration - _span_seconds(spec, info.fps) - 1.0 / float(info.fps)
        if slack > 0:
            start = rng.uniform(0.0, slack)
    short = spec.short_side(rng)
    fps = Fraction(spec.fps).limit_denominator(1_000_000) if spec.fps else None
    frames: list[torch.Tensor] = []
    crop: tuple[int, int] | None = None
    it = video.iter_frames(path, fps=fps, start=start, max_frames=spec.frames)
    for frame in it:
        x = torch.from_numpy(frame).permute(2, 0, 1).to(torch.float32)  # (3, H, W) 0..255
        x = resize_short_side(x, short)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if crop is None:
            if spec.random_crop:
                crop = (rng.randint(0, h - spec.size), rng.randint(0, w - spec.size))
            else:
                crop = (int(round((h - spec.size) / 2.0)), int(round((w - spec.size) / 2.0)))
        top, left = crop
        frames.append(x[:, top : top + spec.size, left : left + spec.size])
    if not frames:  # pragma: no cover - iter_frames raises first
        raise video.VideoError(f"{path}: no frames decoded")
    while len(frames) < spec.frames:
        frames.append(frames[-1])
    clip = torch.stack(frames, dim=1) / 255.0  # (3, T, S, S)
    return ((clip - 0.5) / 0.5).contiguous()


class VideoClipDataset:
    """Map-style dataset of clips; an item is ``dataset[(video_index, seed)]`` (keys come from ClipSampler).

    Returns ``{"video": (3, T, S, S) float32, "index": int, "failed": [paths that could not be read]}``.
    A video that cannot be read is replaced by another one drawn from the same seed, so results do not
    depend on which worker met the failure first. Known-bad videos are remembered per worker.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], spec: ClipSpec):
        if not files:
            raise DataError("no video files to train on")
        self.files = [Path(f) for f in files]
        self.spec = spec
        self._info: dict[int, Any] = {}
        self._bad: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, rng: random.Random) -> torch.Tensor:
        from .. import video

        info = self._info.get(index)
        if info is None:
            info = video.probe(self.files[index])
            self._info[index] = info
        return read_clip(self.files[index], self.spec, rng, info)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (int(key), int(key))
        rng = random.Random(seed)
        failed: list[str] = []
        for _ in range(MAX_REPLACEMENTS):
            if index not in self._bad:
                try:
                    clip = self._load(index, rng)
                    return {"video": clip, "index": index, "failed": failed}
                except Exception as e:  # noqa: BLE001 - any decode problem means "skip this video"
                    self._bad[index] = _one_line(e)
            failed.append(f"{self.files[index]}: {self._bad[index]}")
            index = rng.randrange(len(self.files))
        raise DataError(
            f"{MAX_REPLACEMENTS} videos in a row could not be read (last: {failed[-1]}); check the data"
        )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks clips into ``video`` (B, 3, T, S, S); ``failed`` is the concatenated list of failures."""
    import torch

    return {
        "video": torch.stack([it["video"] for it in items]),
        "index": [it["index"] for it in items],
        "failed": [f for it in items for f in it["failed"]],
    }


class ClipSampler:
    """Infinite, deterministic, per-rank sampler yielding ``(video_index, sample_seed)`` keys.

    Epoch ``e`` shuffles the videos with a permutation seeded by ``(seed, e)``; rank ``r`` of ``world``
    takes every ``world``-th entry (the permutation is padded by wrapping so every rank gets the same
    count). ``start_at(n)`` skips the first ``n`` samples of this rank, which is how a resumed run
    continues with exactly the clips the interrupted run would have seen.
    """

    def __init__(self, num_videos: int, seed: int = 0, rank: int = 0, world: int = 1, shuffle: bool = True):
        if num_videos < 1:
            raise DataError("no video files to train on")
        self.n = num_videos
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle = shuffle
        self.per_rank = math.ceil(num_videos / world)
        self.start = 0

    def start_at(self, consumed: int) -> None:
        """Begin after ``consumed`` samples of this rank."""
        self.start = int(consumed)

    def _order(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        if self.shuffle:
            random.Random(sample_seed(self.seed, 0x5EED, epoch)).shuffle(order)
        total = self.per_rank * self.world
        order = (order * (total // self.n + 1))[:total]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        epoch, offset = divmod(pos, self.per_rank)
        while True:
            order = self._order(epoch)
            for i in range(offset, self.per_rank):
                yield order[i], sample_seed(self.seed, epoch, self.rank, i)
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # an "epoch" for progress displays; iteration itself never ends
        return self.per_rank


def validation_keys(
    num_videos: int, rank: int = 0, world: int = 1, limit: int | None = None
) -> list[tuple[int, int]]:
    """Keys of the validation clips of this rank: one clip per video (from its start), sharded by rank."""
    n = num_videos if limit is None else min(limit, num_videos)
    return [(i, i) for i in range(rank, n, world)]
