"""Reconstruction metrics of the `bench` protocol: PSNR, SSIM, LPIPS-VGG and FVD (see METRICS.md).

Pure functions and modules on tensors; the only file I/O is loading the LPIPS and I3D weights.
Frames are float RGB in [0, 1] of shape (..., 3, H, W); per-frame values are returned so the caller
can average over every scored frame.  Importing this package imports torch (the CLI imports it inside
the `bench` command only).
"""

from __future__ import annotations

from ._weights import UnverifiedWeightsWarning, WeightsFile
from .fvd import (
    I3D,
    FVDAccumulator,
    FVDResult,
    feature_stats,
    frechet_distance,
    i3d_features,
    i3d_preprocess,
    load_i3d,
)
from .lpips import LPIPS, load_lpips, lpips_frames
from .psnr import clip_frames, mse, psnr
from .ssim import ssim

__all__ = [
    "FVDAccumulator",
    "FVDResult",
    "I3D",
    "LPIPS",
    "UnverifiedWeightsWarning",
    "WeightsFile",
    "clip_frames",
    "feature_stats",
    "frechet_distance",
    "i3d_features",
    "i3d_preprocess",
    "load_i3d",
    "load_lpips",
    "lpips_frames",
    "mse",
    "psnr",
    "ssim",
]
