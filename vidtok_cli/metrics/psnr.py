"""Per-frame PSNR of RGB frames in [0, 1], as the official VidTok evaluation computes it (METRICS.md §2)."""

from __future__ import annotations

import torch

__all__ = ["PSNR_EPS", "check_frame_pair", "clip_frames", "mse", "psnr"]

PSNR_EPS = 1e-8
"""Added to the MSE before the logarithm; caps PSNR of identical frames at 80 dB."""


def check_frame_pair(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``x`` and ``y`` are floating frame tensors of one shape (..., C, H, W)."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"{name}: expected two tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape != y.shape:
        raise ValueError(f"{name}: frame shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim < 3:
        raise ValueError(f"{name}: expected frames of shape (..., C, H, W), got {tuple(x.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"{name}: expected float frames in [0, 1], got {x.dtype} and {y.dtype}")


def clip_frames(video: torch.Tensor) -> torch.Tensor:
    """The frames of a batch of clips: (B, C, T, H, W) -> (B*T, C, H, W), clip-major order."""
    if video.ndim != 5:
        raise ValueError(f"expected clips of shape (B, C, T, H, W), got {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame mean squared error over (C, H, W), in float64; shape = the leading dimensions."""
    check_frame_pair(x, y, "MSE")
    d = x.to(torch.float64) - y.to(torch.float64)
    return d.square().mean(dim=(-3, -2, -1))


def psnr(x: torch.Tensor, y: torch.Tensor, *, eps: float = PSNR_EPS) -> torch.Tensor:
    """Per-frame PSNR in dB for data range 1: ``-10 log10(MSE + eps)``.

    ``x`` and ``y`` are float frames in [0, 1] of shape (..., C, H, W), e.g. (T, 3, H, W); the result
    is float64 of shape (...,), one value per frame (80 dB for identical frames with the default eps).
    Average these over every scored frame to get the benchmark number (not PSNR of the pooled MSE).
    """
    return -10.0 * torch.log10(mse(x, y) + eps)
