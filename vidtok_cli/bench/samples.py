"""Samples: side-by-side MP4s and PNG grids of the original, the reconstruction and their difference."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import refuse_existing
from ..errors import UsageError
from .config import BenchConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _Samples:
    """Side-by-side MP4 (original | reconstruction | amplified difference) and a PNG grid per video."""

    def __init__(self, folder: Path, stem: str, fps: float, plan_frames: int, cfg: BenchConfig) -> None:
        self.folder, self.stem, self.fps, self.cfg = folder, stem, fps, cfg
        self.mp4 = folder / f"{stem}_compare.mp4"
        self.png = folder / f"{stem}_grid.png"
        for p in (self.mp4, self.png):
            refuse_existing(p, cfg.force, UsageError)
        k = max(1, cfg.grid_frames)
        total = max(1, plan_frames)
        self.targets = sorted({round(i * (total - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
        self.grid: list[np.ndarray] = []
        self.last: np.ndarray | None = None
        self.writer: Any = None
        self.written = 0

    def add(self, gt: torch.Tensor, rec: torch.Tensor, first_index: int) -> None:
        """Frames (T, 3, H, W) in [0, 1] of the ground truth and the 8-bit reconstruction."""
        import torch

        from .. import video

        g = (gt * 255).round().clamp(0, 255)
        r = (rec * 255).round().clamp(0, 255)
        d = ((gt - rec).abs() * 255 * self.cfg.sample_gain).round().clamp(0, 255)
        panel = torch.cat([g, r, d], dim=3).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if self.writer is None:
            h, w = panel.shape[1:3]
            self.writer = video.VideoWriter(self.mp4, w, h, Fraction(self.fps).limit_denominator(1001), crf=18,
                                            force=self.cfg.force)  # fmt: skip
        self.writer.write(panel)
        self.written += panel.shape[0]
        for j in range(panel.shape[0]):
            if first_index + j in self.targets and len(self.grid) < len(self.targets):
                self.grid.append(panel[j])
        self.last = panel[-1]

    def close(self) -> list[str]:
        """Finish the files; returns their paths."""
        from .. import video

        out: list[str] = []
        if self.writer is None:
            return out
        self.writer.close()
        out.append(str(self.mp4))
        if not self.grid and self.last is not None:
            self.grid.append(self.last)
        if self.grid:
            tiles = [np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in self.grid]
            grid = np.concatenate(tiles, axis=0)  # one row per chosen frame: original | recon | difference
            pattern = self.png.name.replace("{", "{{").replace("}", "}}")
            video.write_png_frames(self.folder, [grid], pattern=pattern, force=self.cfg.force)
            out.append(str(self.png))
        return out

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
