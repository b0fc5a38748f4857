"""The torch-side frame conventions in one place: uint8 (T, H, W, 3) RGB <-> (B, 3, T, H, W) in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def frames_to_tensor(
    frames: Sequence[np.ndarray] | np.ndarray,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (H, W, 3) frames (a list or a (T, H, W, 3) array) -> (1, 3, T, H, W) in [-1, 1]."""
    arr = frames if isinstance(frames, np.ndarray) else np.stack(frames)
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return (x.permute(3, 0, 1, 2).unsqueeze(0).to(dtype) / 127.5 - 1.0).contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), rounded to nearest."""
    y = ((x[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(1, 2, 3, 0).cpu().numpy()
