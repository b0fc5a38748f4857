"""Scoring: the metric networks, per-frame PSNR/SSIM/LPIPS, frame-weighted means and the FVD summary."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, UsageError, WeightsUnavailableError
from .config import BENCH_METRICS, FRAME_METRICS, METRIC_IMPLEMENTATIONS, BenchConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _Metrics:
    """The metric networks that could be loaded, and why the others could not."""

    def __init__(self, cfg: BenchConfig, device: torch.device, clip_frames: int, notes: list[str]) -> None:
        self.wanted = tuple(m for m in BENCH_METRICS if m in cfg.metrics)
        self.lpips: Any = None
        self.i3d: Any = None
        self.info: dict[str, dict[str, Any]] = {}
        for m in self.wanted:
            self.info[m] = {"implementation": METRIC_IMPLEMENTATIONS[m], "available": True, "reason": None}
        if "lpips" in self.wanted:
            self.lpips = self._load(
                "lpips", cfg, notes, explicit=cfg.lpips_weights is not None,
                loader=lambda: _load_lpips(cfg.lpips_weights, device),
            )  # fmt: skip
            if self.lpips is not None:
                self.info["lpips"]["weights"] = self.lpips.weights_info()
        if "fvd" in self.wanted:
            from ..metrics.fvd import I3D_MIN_FRAMES

            if clip_frames < I3D_MIN_FRAMES:
                reason = (
                    f"FVD needs clips of at least {I3D_MIN_FRAMES} frames for I3D, these have {clip_frames}"
                )
                if cfg.strict_metrics:
                    raise UsageError(reason)
                self._unavailable("fvd", reason, notes)
            else:
                self.i3d = self._load(
                    "fvd", cfg, notes, explicit=cfg.i3d_weights is not None,
                    loader=lambda: _load_i3d(cfg.i3d_weights, device),
                )  # fmt: skip
                if self.i3d is not None:
                    self.info["fvd"]["weights"] = {"i3d": self.i3d.weights_info()}

    def _unavailable(self, metric: str, reason: str, notes: list[str]) -> None:
        self.info[metric].update(available=False, reason=reason)
        notes.append(f"{metric.upper()} unavailable: {reason}")

    def _load(
        self, metric: str, cfg: BenchConfig, notes: list[str], explicit: bool, loader: Callable[[], Any]
    ) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                obj = loader()
            except (WeightsUnavailableError, CheckpointError) as e:
                if cfg.strict_metrics or explicit:
                    raise
                self._unavailable(metric, str(e), notes)
                return None
        for w in caught:
            notes.append(" ".join(str(w.message).split()))
        return obj

    def available(self, metric: str) -> bool:
        return metric in self.info and bool(self.info[metric]["available"])

    @property
    def frame_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in FRAME_METRICS if self.available(m))


def _load_lpips(weights_dir: str | None, device: torch.device) -> Any:
    from ..metrics import load_lpips

    return load_lpips(weights_dir=weights_dir, device=device)


def _load_i3d(weights: str | None, device: torch.device) -> Any:
    from ..metrics import load_i3d

    return load_i3d(weights, device=device)


def score_frames(
    gt: torch.Tensor,
    candidates: dict[str, torch.Tensor],
    metrics: Sequence[str],
    lpips_model: Any = None,
    batch_size: int = 8,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame metric values of each candidate against ``gt``, all (T, 3, H, W) float in [0, 1].

    Returns ``{candidate: {metric: float64 array (T,)}}``. LPIPS computes the ground truth's VGG
    features once per batch of frames and reuses them for every candidate (same maths as
    :func:`vidtok_cli.metrics.lpips_frames`).
    """
    import torch

    from ..metrics import psnr, ssim

    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in candidates}
    for name, c in candidates.items():
        if "psnr" in metrics:
            out[name]["psnr"] = psnr(gt, c).cpu().numpy()
        if "ssim" in metrics:
            out[name]["ssim"] = ssim(gt, c).cpu().numpy()
    if "lpips" in metrics and lpips_model is not None:
        from ..metrics.lpips import LPIPS_EPS

        dev = next(lpips_model.parameters()).device
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in candidates}

        def unit(feats: list[torch.Tensor]) -> list[torch.Tensor]:
            return [f / (f.square().sum(dim=1, keepdim=True).sqrt() + LPIPS_EPS) for f in feats]

        with torch.no_grad():
            for i in range(0, gt.shape[0], batch_size):
                ref = unit(lpips_model.layer_features(gt[i : i + batch_size].to(dev, torch.float32) * 2 - 1))
                for name, c in candidates.items():
                    feats = unit(
                        lpips_model.layer_features(c[i : i + batch_size].to(dev, torch.float32) * 2 - 1)
                    )
                    total = torch.zeros(feats[0].shape[0], device=dev)
                    for f, r, lin in zip(feats, ref, lpips_model.lins, strict=True):
                        total = total + lin((f - r).square()).mean(dim=(1, 2, 3))
                    parts[name].append(total.to("cpu", torch.float64))
        for name in candidates:
            out[name]["lpips"] = torch.cat(parts[name]).numpy() if parts[name] else np.zeros(0)
    return out


class _Mean:
    """Running sums for frame-weighted means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, values: np.ndarray) -> None:
        a = np.asarray(values, dtype=np.float64)
        self.sums[key] = self.sums.get(key, 0.0) + float(a.sum())
        self.counts[key] = self.counts.get(key, 0) + int(a.size)

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _fvd_summary(acc: Any, label: str, notes: list[str]) -> dict[str, Any] | None:
    if acc is None:
        return None
    n = min(acc.n_real, acc.n_fake)
    if n < 2:
        notes.append(f"{label}: needs at least 2 clips, got {n}; not computed")
        return {"fvd": None, "n": n, "reason": f"needs at least 2 clips, got {n}"}
    r = acc.compute()
    d = r.as_dict()
    d["n"] = r.n
    d["label"] = f"rFVD (ours, N={r.n} clips)"
    d["warning"] = r.warning
    if r.warning:
        notes.append(f"{label}: {r.warning}")
    return d
