"""Per-frame SSIM of RGB frames in [0, 1], as the official VidTok evaluation computes it (METRICS.md §2).

Gaussian window 11x11 with sigma 1.5 (normalised), valid filtering (no padding), population
statistics, C1 = 0.01², C2 = 0.03², computed per channel and averaged over channels.  Equal to
``skimage.metrics.structural_similarity(x, y, channel_axis=0, data_range=1.0, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` for one (C, H, W) frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .psnr import check_frame_pair

__all__ = [
    "SSIM_C1",
    "SSIM_C2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "gaussian_window",
    "ssim",
    "ssim_downsample_factor",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps; the 2-D window is its outer product with itself."""
    centre = (size - 1) / 2.0
    taps = torch.tensor(
        [math.exp(-((i - centre) ** 2) / (2.0 * sigma * sigma)) for i in range(size)], dtype=torch.float64
    )
    return (taps / taps.sum()).to(dtype)


def ssim_downsample_factor(height: int, width: int) -> int:
    """Average-pooling factor applied before SSIM: round(min(H, W) / 256) when min(H, W) >= 384, else 1."""
    short = min(height, width)
    return max(1, round(short / 256)) if short >= 384 else 1


def _valid_blur(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable valid-mode filtering of the last two dimensions (sums of shifted slices: faster than a
    grouped convolution on the CPU, in float64 above all)."""
    k = len(taps)
    w = x.shape[-1] - k + 1
    rows = x[..., :w] * taps[0]
    for i in range(1, k):
        rows.add_(x[..., i : i + w], alpha=taps[i])
    h = x.shape[-2] - k + 1
    out = rows[..., :h, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def ssim(x: torch.Tensor, y: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-frame SSIM of float frames in [0, 1] of shape (..., C, H, W), e.g. (T, 3, H, W).

    Returns one value per frame, shape (...,), in ``dtype`` (float64 by default; float32 is faster
    and agrees to about 1e-6).  Frames with min(H, W) >= 384 are first average-pooled by
    ``ssim_downsample_factor``; after that both sides must be at least 11 pixels.
    """
    check_frame_pair(x, y, "SSIM")
    lead = x.shape[:-3]
    c, h, w = x.shape[-3:]
    xf = x.reshape(-1, c, h, w).to(dtype)
    yf = y.reshape(-1, c, h, w).to(dtype)
    f = ssim_downsample_factor(h, w)
    if f > 1:
        xf = F.avg_pool2d(xf, kernel_size=f)
        yf = F.avg_pool2d(yf, kernel_size=f)
    if min(xf.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM: frames of {h}x{w} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window (after pooling by {f})"
        )
    if xf.shape[0] == 0:
        return xf.new_empty(lead)
    taps = gaussian_window().tolist()
    per_frame = torch.cat(
        [_ssim_frames(xf[i : i + _CHUNK], yf[i : i + _CHUNK], taps) for i in range(0, xf.shape[0], _CHUNK)]
    )
    return per_frame.reshape(lead)


_CHUNK = 16  # frames filtered at once: bounds the memory of the five statistics maps


def _ssim_frames(x: torch.Tensor, y: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """SSIM of each frame of (N, C, H, W) pairs, shape (N,)."""
    c = x.shape[1]
    # The five local statistics of every channel, filtered in one pass.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, e_xx, e_yy, e_xy = _valid_blur(stacked, taps).split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = e_xx - mu_xx
    var_y = e_yy - mu_yy
    cov = e_xy - mu_xy
    num = (2.0 * mu_xy + SSIM_C1) * (2.0 * cov + SSIM_C2)
    den = (mu_xx + mu_yy + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den).mean(dim=(-2, -1)).mean(dim=-1)  # spatial mean per channel, then channel mean
