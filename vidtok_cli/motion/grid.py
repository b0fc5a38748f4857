"""From motion vectors to the tokenizer's input: the per-frame 16x16 grid and the (2, 24, 20, 36) clip tensor.

Decisions (each reproduces the official ``extract_motions`` + ``MotionVectorProcessor`` exactly):

- A vector's value is ``source * motion / motion_scale`` pixels, divided by the frame width (x) or height
  (y), then by ``std / 10`` with std = (0.0993703, 0.1130276), in float64 as the official numpy code, then
  cast to float32.
- The official code writes each vector into a per-pixel map at its clipped block centre and max-pools it
  16x16; the same result comes from scattering the vector into cell ``(y // 16, x // 16)`` of that centre
  (per-channel maximum if two vectors share a cell; on one pixel the last one wins). Cells without a
  vector are 0 (no motion), and so are I-frames and padding frames.
- Frame 12 of a clip (the next I-frame on a 12-frame GOP) is the official trilinear interpolation of frames
  11 and 13, which is ``0.5 * f11 + 0.5 * f13``.
- The resize to 20x36 is bicubic with ``align_corners=False``: ``"tv016"`` without antialias (the
  official environment, torchvision < 0.17), ``"tv017"`` with antialias (torchvision >= 0.17).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

# The normalisation (the single source; ``motion_warp`` undoes it): mean 0, this std per channel (x, y) of
# size-normalised vectors, and the tokenizer's further factor (``rescale=True``: std / 10).
MOTION_STD = (0.0993703, 0.1130276)
TOKENIZER_SCALE = 10.0
CELL = 16
CLIP_FRAMES = 24
INTERPOLATED_FRAME = 12
MOTION_SIZE = (20, 36)
_NO_VECTOR = -10000.0
RESIZES = ("tv016", "tv017")
Resize = Literal["tv016", "tv017"]


def grid_shape(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the motion grid of a (height, width) frame: one cell per 16x16 block."""
    return -(-height // CELL), -(-width // CELL)


def normalised_motion(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """float64 (R, 2) normalised motion (x, y) of int32 (R, 10) motion-vector rows (tokenizer scale)."""
    mvs = rows[:, 0:1] * rows[:, 7:9] / rows[:, 9:]
    mvs[:, 0] = mvs[:, 0] / width
    mvs[:, 1] = mvs[:, 1] / height
    std = np.array([MOTION_STD], dtype=np.float64) / TOKENIZER_SCALE
    return (mvs - 0.0) / std


def motion_grid(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (2, ceil(h/16), ceil(w/16)) grid of one frame's vectors (channel 0 = x, 1 = y); 0 = none."""
    gh, gw = grid_shape(height, width)
    grid = np.full((2, gh * gw), _NO_VECTOR, dtype=np.float32)
    if len(rows):
        x = np.clip(rows[:, 5], 0, width - 1).astype(np.int64)
        y = np.clip(rows[:, 6], 0, height - 1).astype(np.int64)
        values = normalised_motion(rows, height, width).astype(np.float32)
        # One value per pixel, the last written (numpy's fancy assignment in the official code).
        pixel = y * width + x
        _, last = np.unique(pixel[::-1], return_index=True)
        keep = len(pixel) - 1 - last
        cell = (y[keep] // CELL) * gw + x[keep] // CELL
        for c in range(2):
            np.maximum.at(grid[c], cell, values[keep, c])
    grid[grid < -1000] = 0.0
    return grid.reshape(2, gh, gw)


def check_resize(resize: str) -> None:
    """Refuse a resize variant other than "tv016" / "tv017" with a UsageError."""
    if resize not in RESIZES:
        raise UsageError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")


def clip_grids(grids: Sequence[np.ndarray]) -> torch.Tensor:
    """float32 (24, 2, Hg, Wg): a clip's grids (at most 24, then zero padding), frame 12 interpolated."""
    if not 1 <= len(grids) <= CLIP_FRAMES:
        raise ValueError(f"a clip has 1..{CLIP_FRAMES} frames, got {len(grids)}")
    gh, gw = grids[0].shape[-2:]
    motions = torch.zeros((CLIP_FRAMES, 2, gh, gw), dtype=torch.float32)
    motions[: len(grids)] = torch.from_numpy(np.stack(grids))
    i = INTERPOLATED_FRAME
    pair = torch.cat([motions[i - 1 : i], motions[i + 1 : i + 2]]).permute(1, 0, 2, 3).unsqueeze(0)
    middle = F.interpolate(pair, scale_factor=(1.5, 1.0, 1.0), mode="trilinear")[0]
    motions[i] = middle.permute(1, 0, 2, 3)[1]
    return motions


def clip_tensor(grids: Sequence[np.ndarray], resize: Resize = "tv016") -> torch.Tensor:
    """The tokenizer input float32 (2, 24, 20, 36) of a clip's grids (at most 24, the rest is padding)."""
    check_resize(resize)
    out = F.interpolate(
        clip_grids(grids), size=MOTION_SIZE, mode="bicubic", align_corners=False, antialias=resize == "tv017"
    )
    return out.permute(1, 0, 2, 3).contiguous()
