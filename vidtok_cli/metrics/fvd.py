"""Fréchet Video Distance with the StyleGAN-V I3D TorchScript model (METRICS.md §4, recommended protocol).

Features are the 400-d Kinetics-400 logits averaged over time that the TorchScript model returns with
``return_features=True``.  Clips are float RGB in [0, 1], shape (N, 3, T, H, W); each is resized so
its short side is 224 (bilinear, no antialias, long side rounded up), centre-cropped to 224x224 and
mapped to [-1, 1] before the model is called with ``rescale=False, resize=False``.  Statistics are
float64 with the unbiased covariance; the matrix square root uses a symmetric eigendecomposition
(torch.linalg on one thread), so scipy is not needed.  FVD is computed once over every clip, never averaged over batches.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError, UsageError
from ._weights import UnverifiedWeightsWarning, WeightsFile, existing_file, file_hash, hub_file, hub_source

__all__ = [
    "FVDAccumulator",
    "FVDResult",
    "I3D",
    "I3D_FEATURE_DIM",
    "I3D_HUB_FILE",
    "I3D_HUB_REPO",
    "I3D_MIN_FRAMES",
    "I3D_RESOLUTION",
    "feature_stats",
    "frechet_distance",
    "i3d_features",
    "i3d_preprocess",
    "load_i3d",
    "trace_sqrt_product",
]

I3D_HUB_REPO = "flateon/FVD-I3D-torchscript"
I3D_HUB_FILE = "i3d_torchscript.pt"
# sha256 reported for the Hub file by third-party code (not verified here): a mismatch only warns.
I3D_SHA256 = "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2"
I3D_FEATURE_DIM = 400
I3D_RESOLUTION = 224
I3D_MIN_FRAMES = 10

_REMEDY = f"download {I3D_HUB_FILE} (Hub {I3D_HUB_REPO}) and pass --i3d-weights PATH"

ArrayLike = Any  # numpy array or torch tensor


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch's CPU linear algebra on one thread: for 400x400 matrices threads only add contention."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _f64(a: ArrayLike, name: str) -> torch.Tensor:
    """``a`` as a float64 CPU tensor, refusing NaN and infinity."""
    if isinstance(a, torch.Tensor):
        out = a.detach().to("cpu", torch.float64)
    else:
        out = torch.as_tensor(np.asarray(a, dtype=np.float64))
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} has non-finite values")
    return out


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a (numerically) positive semi-definite matrix."""
    w, v = torch.linalg.eigh((s + s.T) / 2.0)
    return (v * w.clamp(min=0.0).sqrt()) @ v.T


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    ev = torch.linalg.eigvalsh((m + m.T) / 2.0)
    return float(ev.clamp(min=0.0).sqrt().sum())


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    """Tr((Σ1 Σ2)^{1/2}) for covariance matrices, via the eigenvalues of Σ1^{1/2} Σ2 Σ1^{1/2}."""
    with _one_thread():
        return _trace_sqrt_product(_f64(sigma1, "sigma1"), _f64(sigma2, "sigma2"))


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance ‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2}) of two Gaussians, in float64.

    Inputs are numpy arrays or tensors.  Tiny negative eigenvalues from rounding are treated as 0, and
    so is a tiny negative total.
    """
    m1, m2 = _f64(mu1, "mu1"), _f64(mu2, "mu2")
    s1, s2 = _f64(sigma1, "sigma1"), _f64(sigma2, "sigma2")
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.ndim != 1 or m2.shape != m1.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"Fréchet distance: expected means (D,) and covariances (D, D), got {tuple(m1.shape)}, "
            f"{tuple(s1.shape)}, {tuple(m2.shape)}, {tuple(s2.shape)}"
        )
    diff = m1 - m2
    with _one_thread():
        value = float(diff @ diff + s1.trace() + s2.trace()) - 2.0 * _trace_sqrt_product(s1, s2)
    return max(value, 0.0)


def feature_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) as float64 numpy arrays, of features of shape (N, D) with N >= 2."""
    f = _f64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature statistics need features of shape (N>=2, D), got {tuple(f.shape)}")
    with _one_thread():
        mu = f.mean(dim=0)
        centred = f - mu
        sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu.numpy(), sigma.numpy()


# --------------------------------------------------------------------------------------------
# I3D
# --------------------------------------------------------------------------------------------


class I3D:
    """The StyleGAN-V I3D TorchScript model on a device, with the provenance of its file.

    Calling it on preprocessed clips ((N, 3, T, 224, 224) float32 in [-1, 1]) returns the (N, 400)
    features.
    """

    def __init__(self, module: torch.jit.ScriptModule, weights: WeightsFile, device: torch.device) -> None:
        self.module = module
        self.weights = weights
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features of preprocessed clips; CheckpointError when the model does not answer (N, 400)."""
        out = self.module(x.to(self.device), rescale=False, resize=False, return_features=True)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], I3D_FEATURE_DIM):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CheckpointError(
                f"I3D model {self.weights.path} returned {shape} for {x.shape[0]} clips, expected "
                f"({x.shape[0]}, {I3D_FEATURE_DIM}) features; is it the StyleGAN-V i3d_torchscript.pt?"
            )
        return out

    def weights_info(self) -> dict[str, Any]:
        """Provenance of the TorchScript file (path, sha256, source, verified)."""
        return self.weights.as_dict()


def load_i3d(weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> I3D:
    """The I3D TorchScript model from ``weights`` (a local file) or the Hub (``flateon/FVD-I3D-torchscript``).

    A file whose sha256 differs from the reported Hub file is used with an UnverifiedWeightsWarning.
    Raises WeightsUnavailableError (one line) when the Hub file is neither cached nor downloadable,
    CheckpointError when the file is not a loadable TorchScript archive, UsageError for a path that
    is not a file.
    """
    if weights is not None:
        path = existing_file(weights, "I3D weights file")
        source = "explicit"
    else:
        path = hub_file(I3D_HUB_REPO, I3D_HUB_FILE, what="I3D weights for FVD", remedy=_REMEDY)
        source = hub_source(I3D_HUB_REPO, I3D_HUB_FILE, path)
    dev = torch.device(device)
    try:
        # The model only exists as TorchScript: torch's deprecation notice for jit.load is noise here.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning
            )
            module = torch.jit.load(str(path), map_location=dev)
    except Exception as e:  # noqa: BLE001 - RuntimeError, ValueError, zip errors...
        text = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"cannot load the I3D TorchScript model {path}: {text}") from None
    module.eval()
    sha = file_hash(path)
    if sha != I3D_SHA256:
        warnings.warn(
            f"I3D model {path} has sha256 {sha}, not that of {I3D_HUB_REPO}/{I3D_HUB_FILE} ({I3D_SHA256}); "
            "FVD values may not be comparable",
            UnverifiedWeightsWarning,
            stacklevel=2,
        )
    record = WeightsFile(
        role="i3d",
        path=str(path),
        sha256=sha,
        source=source,
        verified=sha == I3D_SHA256,
        expected_sha256=I3D_SHA256,
    )
    return I3D(module, record, dev)


def _resized_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """Short side to ``resolution``, long side scaled and rounded up (as common_metrics_on_video_quality)."""
    scale = resolution / min(h, w)
    if h < w:
        return resolution, math.ceil(w * scale)
    return math.ceil(h * scale), resolution


def i3d_preprocess(clips: torch.Tensor, resolution: int = I3D_RESOLUTION) -> torch.Tensor:
    """Clips (N, 3, T, H, W) in [0, 1] -> (N, 3, T, 224, 224) float32 in [-1, 1], ready for the I3D model.

    Each frame is resized bilinearly (align_corners=False, no antialias) so that its short side is
    ``resolution``, centre-cropped (offsets rounded down) and mapped by ``2x - 1``.
    """
    if clips.ndim != 5 or clips.shape[1] != 3:
        raise ValueError(f"I3D: expected clips of shape (N, 3, T, H, W), got {tuple(clips.shape)}")
    if not clips.is_floating_point():
        raise ValueError(f"I3D: expected float clips in [0, 1], got {clips.dtype}")
    n, c, t, h, w = clips.shape
    th, tw = _resized_size(h, w, resolution)
    x = clips.to(torch.float32).reshape(n, c * t, h, w)
    x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=False)
    top = (th - resolution) // 2
    left = (tw - resolution) // 2
    x = x[:, :, top : top + resolution, left : left + resolution]
    return ((x - 0.5) * 2.0).reshape(n, c, t, resolution, resolution).contiguous()


@torch.no_grad()
def i3d_features(model: I3D, clips: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
    """I3D features (N, 400), float64 on the CPU, of clips (N, 3, T, H, W) in [0, 1] (T >= 10).

    Clips are preprocessed with :func:`i3d_preprocess` and run in batches of ``batch_size``.
    """
    if clips.ndim != 5:
        raise ValueError(f"I3D: expected clips of shape (N, 3, T, H, W), got {tuple(clips.shape)}")
    if clips.shape[2] < I3D_MIN_FRAMES:
        raise UsageError(f"FVD needs clips of at least {I3D_MIN_FRAMES} frames for I3D, got {clips.shape[2]}")
    out = []
    step = max(1, batch_size)
    for i in range(0, clips.shape[0], step):
        x = i3d_preprocess(clips[i : i + step].to(model.device))
        out.append(model(x).to("cpu", torch.float64))
    if not out:
        return torch.empty(0, I3D_FEATURE_DIM, dtype=torch.float64)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Accumulation over a benchmark
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FVDResult:
    """An FVD value with its sample sizes; ``small_sample`` flags N <= feature dimension (rank-deficient covariances)."""

    value: float
    n_real: int
    n_fake: int
    feature_dim: int

    @property
    def n(self) -> int:
        """The smaller of the two sample sizes."""
        return min(self.n_real, self.n_fake)

    @property
    def small_sample(self) -> bool:
        """True when N < feature_dim + 1: the covariances are singular and FVD is biased upwards."""
        return self.n <= self.feature_dim

    @property
    def warning(self) -> str | None:
        """A one-line caution to print next to the value, or None."""
        if not self.small_sample:
            return None
        return (
            f"FVD from only {self.n} clips (< {self.feature_dim + 1} for {self.feature_dim}-d features): the "
            "covariances are rank-deficient and the value is biased upwards; compare it only with FVDs of the same N"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "fvd": self.value,
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "feature_dim": self.feature_dim,
            "small_sample": self.small_sample,
        }


class FVDAccumulator:
    """Collects I3D features of real and reconstructed clips over a whole benchmark, then computes FVD once.

    ``update(real, fake)`` takes clips (N, 3, T, H, W) in [0, 1] and needs ``model``;
    ``add_features`` takes precomputed (N, D) features.
    """

    def __init__(
        self, model: I3D | None = None, *, batch_size: int = 8, feature_dim: int = I3D_FEATURE_DIM
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.feature_dim = feature_dim
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []

    @property
    def n_real(self) -> int:
        """Number of real clips so far."""
        return sum(a.shape[0] for a in self._real)

    @property
    def n_fake(self) -> int:
        """Number of reconstructed clips so far."""
        return sum(a.shape[0] for a in self._fake)

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Add the I3D features of a batch of real clips and of their reconstructions."""
        if self.model is None:
            raise ValueError(
                "FVDAccumulator.update needs an I3D model (load_i3d); use add_features otherwise"
            )
        if real.shape != fake.shape:
            raise ValueError(
                f"FVD: real and reconstructed clips differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}"
            )
        self.add_features(
            real=i3d_features(self.model, real, batch_size=self.batch_size),
            fake=i3d_features(self.model, fake, batch_size=self.batch_size),
        )

    def add_features(self, real: ArrayLike | None = None, fake: ArrayLike | None = None) -> None:
        """Add precomputed features (N, D) of real and/or reconstructed clips."""
        for feats, store, name in ((real, self._real, "real"), (fake, self._fake, "fake")):
            if feats is None:
                continue
            a = _f64(feats, f"{name} features")
            if a.ndim != 2 or a.shape[1] != self.feature_dim:
                raise ValueError(
                    f"FVD: {name} features must have shape (N, {self.feature_dim}), got {tuple(a.shape)}"
                )
            store.append(a.numpy().copy())  # a copy: the caller may reuse its buffer

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        """All real and reconstructed features so far, (N_real, D) and (N_fake, D) float64."""
        empty = np.empty((0, self.feature_dim))
        real = np.concatenate(self._real) if self._real else empty
        fake = np.concatenate(self._fake) if self._fake else empty
        return real, fake

    def compute(self) -> FVDResult:
        """FVD over every clip added so far; UsageError with fewer than 2 clips on either side."""
        real, fake = self.features()
        if min(real.shape[0], fake.shape[0]) < 2:
            raise UsageError(
                f"FVD needs at least 2 clips on each side, got {real.shape[0]} real and {fake.shape[0]} reconstructed"
            )
        mu_r, sigma_r = feature_stats(real)
        mu_f, sigma_f = feature_stats(fake)
        value = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
        return FVDResult(
            value=value, n_real=real.shape[0], n_fake=fake.shape[0], feature_dim=self.feature_dim
        )
