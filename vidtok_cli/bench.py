"""The evaluation protocol of ``vidtok bench``: PSNR/SSIM/LPIPS/FVD, speed and memory, rate, RD vs codecs.

The default protocol (``vidtok``) is the official VidTok evaluation (``scripts/inference_evaluate.py``;
see docs/BENCH.md and METRICS.md):

1. Frames are sampled with ``interval = round(src_fps / 30)`` (every ``interval``-th decoded frame)
   over the **whole** video and cut into consecutive clips of 17 frames (16 for non-causal models);
   the last clip is padded by repeating its final frame, and the copies are scored like real frames.
2. Each clip: uint8 / 255 in float32, short side resized to 256 (bilinear, antialias), centre crop
   256x256, into [-1, 1], encoded and decoded on its own in float32.
3. Output ``clamp(-1, 1)`` then to [0, 1]; PSNR, SSIM and LPIPS per frame against the float ground
   truth; FVD over all clips (I3D features of every ground-truth clip and its reconstruction).
4. Every value is the mean over every scored frame of every video (frame-weighted).

Besides the float output, the same metrics are computed on the 8-bit output (rounded to uint8, as
``vidtok decode`` writes it), reported as ``psnr_u8`` etc. Every clip is also written into a real
``.vtok`` file (tokens for FSQ, float16 latents for KL) whose size is the rate.

``protocol="custom"`` changes the sampling rate, size, crop and clip length; ``long_video=True``
streams whole videos through the causal encoder/decoder instead (the v1.1 tables' protocol).

Library use::

    from vidtok_cli.bench import BenchConfig, run_bench
    result = run_bench(["videos/"], load_model("vidtok-kl-causal-488-4chn"), BenchConfig())
    result.to_json("results.json"); print(result.overall)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .errors import CheckpointError, UsageError, VidtokError, WeightsUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BENCH_METRICS",
    "BenchConfig",
    "BenchResult",
    "IdentityModel",
    "VIDEO_EXTENSIONS",
    "collect_videos",
    "print_report",
    "run_bench",
]

BENCH_METRICS = ("psnr", "ssim", "lpips", "fvd")
FRAME_METRICS = ("psnr", "ssim", "lpips")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi")
LONG_VIDEO_CHUNK = 16  # frames per encoder step after the first frame (the official tiled setting)

Progress = Callable[[int, "int | None"], None]
"""progress(clips done, clips expected or None)."""

METRIC_IMPLEMENTATIONS = {
    "psnr": "per frame -10*log10(MSE + 1e-8) over RGB in [0, 1] (cap 80 dB); vidtok_cli.metrics.psnr",
    "ssim": "per frame, 11x11 Gaussian sigma 1.5, valid filtering, population statistics, C1=0.01^2, "
    "C2=0.03^2, mean of RGB channels; frames with min side >= 384 avg-pooled first; vidtok_cli.metrics.ssim",
    "lpips": "LPIPS VGG16 + v0.1 linear layers, inputs 2x-1, per frame (same maths as lpips 0.1.4 "
    "net='vgg'); vidtok_cli.metrics.lpips",
    "fvd": "StyleGAN-V I3D TorchScript, 400-d logits averaged over time; clips resized short side 224 "
    "(bilinear, no antialias) + centre crop, [-1, 1]; float64 unbiased covariance; computed once over all "
    "clips; vidtok_cli.metrics.fvd",
}


# ============================================================================================
# Configuration
# ============================================================================================


@dataclass
class BenchConfig:
    """What ``run_bench`` measures and how.

    ``protocol``: ``"vidtok"`` (the paper's; fps 30, size 256, centre crop, 17/16-frame clips, float32)
    or ``"custom"`` (then ``fps`` (None: every frame), ``size`` (None: native size), ``crop`` and
    ``frames`` (None: the model's native clip length) apply). ``long_video``: stream whole videos
    instead of independent clips (causal models). ``metrics``: any of psnr, ssim, lpips, fvd;
    ``strict_metrics``: a metric that cannot run (weights missing) is an error instead of a note.
    ``max_clips``: at most this many clips per video. ``rd_codecs``: codecs for rate-distortion
    (x264, x265) at ``rd_crfs``. ``save_samples``: a folder for side-by-side MP4s and PNG grids.
    """

    protocol: str = "vidtok"
    fps: float | None = 30.0
    size: int | None = 256
    crop: bool = True
    frames: int | None = None
    long_video: bool = False
    metrics: tuple[str, ...] = BENCH_METRICS
    strict_metrics: bool = False
    lpips_weights: str | None = None
    i3d_weights: str | None = None
    max_clips: int | None = None
    dtype: str = "float32"
    device: str = "auto"
    u8: bool = True
    rate: bool = True
    rd_codecs: tuple[str, ...] = ()
    rd_crfs: tuple[int, ...] = (18, 23, 28, 33, 38, 43, 48)
    rd_preset: str = "medium"
    rd_pix_fmt: str = "yuv420p"
    save_samples: str | None = None
    sample_gain: float = 4.0
    grid_frames: int = 4
    force: bool = False

    def validate(self) -> None:
        """UsageError (one line) for impossible settings."""
        if self.protocol not in ("vidtok", "custom"):
            raise UsageError(f"unknown protocol {self.protocol!r} (vidtok or custom)")
        if self.protocol == "vidtok":
            wrong = [
                name
                for name, value, want in (
                    ("--fps", self.fps, 30.0),
                    ("--size", self.size, 256),
                    ("--crop", self.crop, True),
                    ("--dtype", _dtype_name(self.dtype), "float32"),
                )
                if value != want
            ]
            if wrong:
                raise UsageError(
                    f"{', '.join(wrong)} cannot change the vidtok protocol (fps 30, 256x256 centre crop, "
                    "17/16-frame clips, float32); add --protocol custom"
                )
        bad = [m for m in self.metrics if m not in BENCH_METRICS]
        if bad:
            raise UsageError(f"unknown metric {bad[0]!r} (choose from {', '.join(BENCH_METRICS)})")
        if not self.metrics:
            raise UsageError("--metrics needs at least one metric")
        if self.fps is not None and not self.fps > 0:
            raise UsageError(f"--fps must be positive, got {self.fps}")
        if self.size is not None and self.size < 8:
            raise UsageError(f"--size must be at least 8 pixels, got {self.size}")
        if self.crop and self.size is None:
            raise UsageError("a centre crop needs --size")
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames must be positive, got {self.frames}")
        if self.max_clips is not None and self.max_clips < 1:
            raise UsageError(f"--max-clips must be at least 1, got {self.max_clips}")
        if self.long_video and self.rd_codecs:
            raise UsageError("--rd works on clips; it cannot be combined with --long-video")
        _dtype_name(self.dtype)
        if self.sample_gain <= 0:
            raise UsageError("the difference gain must be positive")

    def describe(self, clip_frames: int, causal: bool) -> dict[str, Any]:
        """The protocol as it ran, for the report."""
        return {
            "name": self.protocol + (" (long video)" if self.long_video else ""),
            "sampling": "every round(src_fps / fps)-th decoded frame over the whole video"
            if self.fps
            else "every decoded frame",
            "fps": self.fps,
            "resize": None if self.size is None else f"short side {self.size}, bilinear, antialias, float32",
            "crop": f"centre {self.size}x{self.size}" if self.crop else None,
            "clip_frames": clip_frames,
            "clips": "whole video streamed (truncated to 1 + 16k frames), scored in windows of clip_frames"
            if self.long_video
            else "consecutive, non-overlapping; last clip padded by repeating its last frame (duplicates scored)",
            "model_causal": causal,
            "precision": _dtype_name(self.dtype),
            "aggregation": "mean over every scored frame of every video (frame-weighted)",
            "u8": "reconstruction rounded to uint8 (as `vidtok decode` writes it) vs the float ground truth",
            "max_clips_per_video": self.max_clips,
            "metrics": list(self.metrics),
        }


def _dtype_name(dtype: Any) -> str:
    names = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
             "bf16": "bfloat16", "bfloat16": "bfloat16"}  # fmt: skip
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise UsageError(f"unknown dtype {dtype!r} (fp32, bf16 or fp16)")
    return names[key]


# ============================================================================================
# Inputs
# ============================================================================================


def collect_videos(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Video files from files, folders (recursive, by extension) and CSV files with a ``videos`` column.

    CSV paths are taken relative to the CSV's folder unless absolute. Order: as given, folders sorted;
    duplicates dropped. UsageError when an input does not exist or nothing is found.
    """
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise UsageError(f"{p}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
            out.extend(found)
        elif p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_videos_from_csv(p))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    seen: set[str] = set()
    unique = []
    for f in out:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise UsageError("no videos to benchmark")
    return unique


def _videos_from_csv(path: Path) -> list[Path]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "videos" not in reader.fieldnames:
            raise UsageError(f"{path}: the CSV has no 'videos' column (columns: {reader.fieldnames})")
        rows = [r["videos"].strip() for r in reader if r.get("videos") and r["videos"].strip()]
    out = []
    for r in rows:
        p = Path(r).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        if not p.is_file():
            raise UsageError(f"{path}: listed video {r} does not exist ({p})")
        out.append(p)
    return out


# ============================================================================================
# The thing under test
# ============================================================================================


class IdentityModel:
    """A stand-in tokenizer whose reconstruction is its input (no rate).

    Benchmarking it checks the measurement itself: PSNR at the 80 dB cap, SSIM 1, LPIPS 0, FVD 0 (up
    to float noise); ``u8`` values show the cost of 8-bit output alone.
    """

    def __init__(self, causal: bool = True, temporal_factor: int = 4, device: str = "cpu") -> None:
        self.causal = causal
        self.temporal_factor = temporal_factor
        self.device = device
        self.card = {"name": "identity", "description": "reconstruction = input (measurement check)"}


class _Subject:
    """A uniform view of a VidTok model or the identity model for the benchmark loop."""

    def __init__(self, model: Any, dtype: str) -> None:
        import torch

        self.model = model
        self.identity = isinstance(model, IdentityModel)
        self.dtype = getattr(torch, _dtype_name(dtype))
        if self.identity:
            self.device = torch.device(model.device)
            self.causal, self.tdf, self.sf = model.causal, model.temporal_factor, 1
            self.mode: str | None = None
            self.levels: list[int] | None = None
            self.card: dict[str, Any] = dict(model.card)
            self.weights_sha256: str | None = None
            self.param_bytes = 0
        else:
            cfg = model.cfg
            p = next(model.parameters())
            self.device = p.device
            if p.dtype != torch.float32:
                raise UsageError(
                    f"the model's weights are {p.dtype}; bench loads them in float32 (use --dtype for autocast)"
                )
            self.causal, self.tdf, self.sf = cfg.causal, cfg.time_downsample_factor, cfg.spatial_factor
            self.mode = "tokens" if cfg.regularizer == "fsq" else "latent"
            self.levels = list(cfg.fsq_levels) if self.mode == "tokens" else None
            self.card = dict(model.card or {})
            self.card.setdefault("name", "unnamed")
            self.weights_sha256 = _weights_sha256(model)
            self.param_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())

    @property
    def name(self) -> str:
        return str(self.card.get("name", "model"))

    @property
    def native_frames(self) -> int:
        return 17 if self.causal else 16

    def check_frames(self, t: int) -> None:
        if self.causal and (t - 1) % self.tdf:
            raise UsageError(
                f"--frames must be 1 + k*{self.tdf} for this causal model (e.g. {1 + 4 * self.tdf}), got {t}"
            )
        if not self.causal and (t % self.tdf or t < 4):
            raise UsageError(f"--frames must be a multiple of {self.tdf} for this non-causal model, got {t}")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32 or self.identity:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latent, indices or None) of a clip (1, 3, T, H, W) in [-1, 1]."""
        if self.identity:
            return x, None
        with self.autocast():
            out = self.model.encode(x)
        return out.latent, out.indices

    def decode(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        """The reconstruction (1, 3, T, H, W) of a clip of ``frames`` frames."""
        if self.identity:
            return latent
        with self.autocast():
            y = self.model.decode(latent)
        if y.shape[2] < frames:
            raise VidtokError(f"the model decoded {y.shape[2]} frames for a clip of {frames}")
        return y[:, :, y.shape[2] - frames :]

    def encode_chunk(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        if self.identity:
            return x, None, None
        with self.autocast():
            out, state = self.model.encode_chunk(x, state)
        return out.latent, out.indices, state

    def decode_chunk(self, z: torch.Tensor, state: Any, final: bool) -> tuple[torch.Tensor, Any]:
        if self.identity:
            return z, None
        with self.autocast():
            return self.model.decode_chunk(z, state, final=final)


def _weights_sha256(model: Any) -> str:
    """sha256 of the weights file a model was loaded from, else of its tensors (names, dtypes, bytes)."""
    import hashlib

    import torch

    path = (model.card or {}).get("weights_file")
    if path and Path(path).is_file():
        from .hub import file_sha256

        return file_sha256(path)
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ============================================================================================
# Metrics
# ============================================================================================


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
            from .metrics.fvd import I3D_MIN_FRAMES

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
    from .metrics import load_lpips

    return load_lpips(weights_dir=weights_dir, device=device)


def _load_i3d(weights: str | None, device: torch.device) -> Any:
    from .metrics import load_i3d

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

    from .metrics import psnr, ssim

    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in candidates}
    for name, c in candidates.items():
        if "psnr" in metrics:
            out[name]["psnr"] = psnr(gt, c).cpu().numpy()
        if "ssim" in metrics:
            out[name]["ssim"] = ssim(gt, c).cpu().numpy()
    if "lpips" in metrics and lpips_model is not None:
        from .metrics.lpips import LPIPS_EPS

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


# ============================================================================================
# Frames -> clips
# ============================================================================================


@dataclass
class _VideoPlan:
    path: Path
    name: str
    width: int
    height: int
    src_fps: Fraction
    interval: int
    sample_fps: float
    frames_estimate: int
    clips_estimate: int


def _plan(path: Path, name: str, cfg: BenchConfig, clip_frames: int) -> _VideoPlan:
    from . import video

    info = video.probe(path)
    interval = video.official_interval(info.fps, cfg.fps) if cfg.fps else 1
    n = -(-info.frame_count // interval)
    if cfg.long_video:
        n = 1 + (n - 1) // LONG_VIDEO_CHUNK * LONG_VIDEO_CHUNK if n else 0
    clips = -(-n // clip_frames)
    if cfg.max_clips is not None:
        clips = min(clips, cfg.max_clips)
        n = min(n, clips * clip_frames)
    return _VideoPlan(
        path, name, info.width, info.height, info.fps, interval, float(info.fps) / interval, n, clips
    )


def _prepare(frames: list[np.ndarray], cfg: BenchConfig, device: torch.device) -> torch.Tensor:
    """uint8 frames (H, W, 3) -> float32 (T, 3, h, w) in [0, 1] on ``device``: /255, resize, centre crop."""
    import torch

    from . import video

    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if cfg.size:
        x = video.resize_short_side(x, cfg.size)
        if cfg.crop:
            x = video.center_crop(x, cfg.size, cfg.size)
    return x.contiguous()


def _iter_clips(
    plan: _VideoPlan, clip_frames: int, max_clips: int | None
) -> Iterator[tuple[list[np.ndarray], int, int]]:
    """(frames, number of real frames, index of the first sampled frame) per clip; the last clip is padded
    by repeating its final frame."""
    from . import video

    buf: list[np.ndarray] = []
    first = 0
    count = 0
    for k, frame in enumerate(video.iter_frames(plan.path, interval=plan.interval)):
        if not buf:
            first = k
        buf.append(frame)
        if len(buf) == clip_frames:
            yield buf, clip_frames, first
            buf = []
            count += 1
            if max_clips is not None and count >= max_clips:
                return
    if buf:
        n = len(buf)
        yield buf + [buf[-1]] * (clip_frames - n), n, first


def _to_u8(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the 8-bit values `vidtok decode` writes, back in [0, 1] (round half to even)."""
    return (x01 * 255.0).round() / 255.0


def _from_model(y: torch.Tensor) -> torch.Tensor:
    """Model output (1, 3, T, H, W) in [-1, 1] -> float32 frames (T, 3, H, W) in [0, 1]."""
    import torch

    return ((y[0].to(torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 0, 2, 3).contiguous()


# ============================================================================================
# Rate: real .vtok files
# ============================================================================================


class _Rate:
    """Writes latents/tokens into real .vtok files in a scratch folder and reports their sizes."""

    def __init__(self, subject: _Subject, tmpdir: Path, fps: float) -> None:
        self.s = subject
        self.dir = tmpdir
        self.fps = Fraction(fps).limit_denominator(1001)
        self._n = 0

    @property
    def active(self) -> bool:
        return self.s.mode is not None

    def open(self, width: int, height: int, lat_h: int, lat_w: int, frames_per_record: int) -> Any:
        from . import vtok

        header = vtok.make_header(
            model_card=self.s.name, weights_sha256=self.s.weights_sha256 or "0" * 64, mode=self.s.mode,
            latent_channels=self.s.model.cfg.z_channels, latent_height=lat_h, latent_width=lat_w,
            temporal_factor=self.s.tdf if self.s.causal else 4, spatial_factor=self.s.sf, width=width,
            height=height, fps=self.fps, latent_dtype="float16", fsq_levels=self.s.levels,
            frames_per_record=frames_per_record, causal=self.s.causal, source_file="bench",
        )  # fmt: skip
        self._n += 1
        path = self.dir / f"r{self._n}.vtok"
        return vtok.VtokWriter(path, header, force=True)

    def write(
        self, writer: Any, latent: torch.Tensor, indices: torch.Tensor | None, f0: int, f1: int, l0: int
    ) -> int:
        """Write one chunk; returns the ideal bits n_tokens*log2(K) for tokens (0 for latents)."""
        if self.s.mode == "tokens":
            assert indices is not None
            idx = indices[0].cpu().numpy()
            writer.write_tokens(idx, f0, f1, l0)
            return int(idx.size)
        writer.write_latents(latent[0].float().cpu().numpy(), f0, f1, l0)
        return 0

    def ideal_bits(self, n_tokens: int) -> float | None:
        if self.s.mode != "tokens" or self.s.levels is None:
            return None
        return n_tokens * math.log2(math.prod(self.s.levels))

    @staticmethod
    def finish(writer: Any, frames: int) -> int:
        writer.close(header_updates={"source": {"frame_count": frames}})
        size = writer.path.stat().st_size
        writer.path.unlink(missing_ok=True)
        return int(size)


# ============================================================================================
# Samples
# ============================================================================================


class _Samples:
    """Side-by-side MP4 (original | reconstruction | amplified difference) and a PNG grid per video."""

    def __init__(self, folder: Path, stem: str, fps: float, plan_frames: int, cfg: BenchConfig) -> None:
        self.folder, self.stem, self.fps, self.cfg = folder, stem, fps, cfg
        self.mp4 = folder / f"{stem}_compare.mp4"
        self.png = folder / f"{stem}_grid.png"
        for p in (self.mp4, self.png):
            if p.exists() and not cfg.force:
                raise UsageError(f"{p} exists; pass --force to overwrite it")
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

        from . import video

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
        from . import video

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


# ============================================================================================
# Records and the result
# ============================================================================================


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


@dataclass
class BenchResult:
    """Everything a bench run measured; ``to_json``/``to_csv`` write it, ``print_report`` shows it.

    ``clips`` and ``videos`` are lists of dicts (per-clip values with per-frame lists; per-video
    frame-weighted means); ``overall`` the means over every scored frame of every video; ``fvd`` the
    FVD summary with its sample size N; ``speed`` encode/decode frames per second and peak memory;
    ``rd`` codec points and verdicts; ``partial`` is True when the run was interrupted.
    """

    tool: dict[str, Any]
    protocol: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    videos: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)
    fvd: dict[str, Any] | None = None
    fvd_u8: dict[str, Any] | None = None
    speed: dict[str, Any] = field(default_factory=dict)
    rd: dict[str, Any] | None = None
    samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
        """The result as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=2, default=_json_default, allow_nan=False)
        if path is not None:
            _write_text(Path(path), text + "\n", force)
        return text

    def csv_rows(self) -> list[dict[str, Any]]:
        """Flat rows: one per clip, per video, overall, and per RD point (``level`` says which)."""
        common = {
            "model": self.model.get("name"), "model_sha256": self.model.get("weights_sha256"),
            "protocol": self.protocol.get("name"), "tool_version": self.tool.get("version"),
        }  # fmt: skip
        rows: list[dict[str, Any]] = []
        for c in self.clips:
            rows.append(
                {"level": "clip", **{k: v for k, v in c.items() if not isinstance(v, (dict, list))}, **common}
            )
        for v in self.videos:
            rows.append(
                {
                    "level": "video",
                    **{k: x for k, x in v.items() if not isinstance(x, (dict, list))},
                    **common,
                }
            )
        rows.append({"level": "overall", "video": "ALL", **{k: x for k, x in self.overall.items()
                                                              if not isinstance(x, (dict, list))}, **common})  # fmt: skip
        if self.rd:
            for p in self.rd.get("points", []):
                rows.append({"level": "rd", "video": "ALL", **p, **common})
        return rows

    def to_csv(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
        """The values as CSV text (see ``csv_rows``); written atomically to ``path`` when given.

        The protocol, metric implementations and weight hashes are in the JSON report; each CSV row
        names the model, its weights' sha256, the protocol and the tool version.
        """
        rows = self.csv_rows()
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        text = buf.getvalue()
        if path is not None:
            _write_text(Path(path), text, force)
        return text


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (Path, Fraction)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_text(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


# ============================================================================================
# The run
# ============================================================================================


class _Speed:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.enc_s = self.dec_s = 0.0
        self.frames = 0
        self.timed = 0
        self.warmup_frames = 0
        self.seen = 0
        self.peak = 0
        self.peak_above_baseline = 0
        self._base = 0
        self.cuda = device.type == "cuda"

    def begin(self) -> None:
        """Before a model step: reset CUDA's peak counter and note what is already allocated."""
        import torch

        if self.cuda:
            self._base = int(torch.cuda.memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)

    def end(self) -> None:
        """After a model step: fold its CUDA peak into the run's maximum."""
        import torch

        if self.cuda:
            p = int(torch.cuda.max_memory_allocated(self.device))
            self.peak = max(self.peak, p)
            self.peak_above_baseline = max(self.peak_above_baseline, p - self._base)

    def add(self, enc_s: float, dec_s: float, frames: int) -> None:
        self.seen += 1
        if self.seen == 1:
            self._first = (enc_s, dec_s, frames)
            return
        self.enc_s += enc_s
        self.dec_s += dec_s
        self.frames += frames
        self.timed += 1

    def summary(self, subject: _Subject) -> dict[str, Any]:
        import torch

        enc_s, dec_s, frames, timed, warm = self.enc_s, self.dec_s, self.frames, self.timed, True
        if self.timed == 0 and self.seen == 1:  # a single clip: report it, flagged as including warm-up
            enc_s, dec_s, frames = self._first
            timed, warm = 1, False
        d: dict[str, Any] = {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device)
            if self.cuda
            else platform.processor() or platform.machine(),
            "dtype": str(subject.dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(),
            "encode_fps": frames / enc_s if enc_s > 0 else None,
            "decode_fps": frames / dec_s if dec_s > 0 else None,
            "encode_seconds": enc_s,
            "decode_seconds": dec_s,
            "frames_timed": frames,
            "steps_timed": timed,
            "warmup_excluded": warm,
            "model_weights_bytes": subject.param_bytes,
        }
        if self.cuda:
            d["peak_memory_bytes"] = self.peak
            d["peak_memory_kind"] = (
                "CUDA max_memory_allocated during encode+decode (resident metric networks included)"
            )
            d["peak_model_activations_bytes"] = self.peak_above_baseline
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            d["peak_memory_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
            d["peak_memory_kind"] = (
                "peak RSS of the process (ru_maxrss; metric networks and video decoding included)"
            )
        return d


def run_bench(
    inputs: Sequence[str | os.PathLike[str]],
    model: Any = None,
    config: BenchConfig | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``model`` on the videos in ``inputs`` (files, folders, CSVs) under ``config``.

    ``model``: a loaded VidTok model, an :class:`IdentityModel`, a zoo name / weights path, or None for
    the default model. ``progress(done, expected)`` is called after every clip. A KeyboardInterrupt
    during the run ends it early: the result holds what was gathered, with ``partial=True``.
    Raises UsageError for bad settings, WeightsUnavailableError when a metric that was asked for
    explicitly cannot run.
    """
    import torch

    cfg = config or BenchConfig()
    cfg.validate()
    videos = collect_videos(inputs)
    if model is None or isinstance(model, (str, os.PathLike)):
        from .loading import load_model

        model = load_model(model, device=cfg.device)
    subject = _Subject(model, cfg.dtype)
    if cfg.long_video and not subject.causal:
        raise UsageError("--long-video streams whole videos and needs a causal model")
    clip_frames = cfg.frames or subject.native_frames
    if cfg.protocol == "vidtok" and clip_frames != subject.native_frames:
        raise UsageError(
            f"--frames cannot change the vidtok protocol ({subject.native_frames}-frame clips for this model); "
            "add --protocol custom"
        )
    subject.check_frames(clip_frames)
    if cfg.size and cfg.crop and cfg.size % subject.sf:
        raise UsageError(
            f"--size must be a multiple of {subject.sf} for this model when cropping, got {cfg.size}"
        )
    rd_acc = None
    if cfg.rd_codecs:
        from .rd import RDAccumulator, parse_codecs, parse_crfs

        rd_acc = RDAccumulator(
            parse_codecs(cfg.rd_codecs), parse_crfs(cfg.rd_crfs), cfg.rd_preset, cfg.rd_pix_fmt
        )
    samples_dir = Path(cfg.save_samples).expanduser() if cfg.save_samples else None
    if samples_dir is not None:
        if samples_dir.exists() and not samples_dir.is_dir():
            raise UsageError(f"--save-samples {samples_dir} is a file, not a folder")
        samples_dir.mkdir(parents=True, exist_ok=True)

    notes: list[str] = []
    mets = _Metrics(cfg, subject.device, clip_frames, notes)
    card = dict(subject.card)
    card["weights_sha256"] = subject.weights_sha256
    if not subject.identity and "config" not in card:
        card["config"] = subject.model.cfg.to_dict()
    import av

    result = BenchResult(
        tool={"name": "vidtok", "version": __version__},
        protocol=cfg.describe(clip_frames, subject.causal),
        model=card,
        environment={
            "device": str(subject.device),
            "dtype": str(subject.dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "av": av.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cuda": torch.version.cuda if subject.device.type == "cuda" else None,
        },  # fmt: skip
        metrics=mets.info,
        notes=notes,
    )
    stems = _unique_stems(videos)
    plans = [_plan(v, s, cfg, clip_frames) for v, s in zip(videos, stems, strict=True)]
    expected = sum(p.clips_estimate for p in plans)
    speed = _Speed(subject.device)
    overall = _Mean()
    fvd_acc = fvd_u8_acc = None
    if mets.i3d is not None:
        from .metrics import FVDAccumulator

        fvd_acc, fvd_u8_acc = FVDAccumulator(), FVDAccumulator()
    state = _RunState(cfg, subject, mets, result, speed, overall, fvd_acc, fvd_u8_acc, rd_acc, clip_frames)
    done = 0
    if progress is not None:
        progress(0, expected)
    with tempfile.TemporaryDirectory(prefix="vidtok-bench-") as tmp:
        rate = _Rate(subject, Path(tmp), 30.0)
        try:
            for plan in plans:
                rate.fps = Fraction(plan.sample_fps).limit_denominator(1001)
                samples = (
                    _Samples(samples_dir, plan.name, plan.sample_fps, plan.frames_estimate, cfg)
                    if samples_dir
                    else None
                )
                vstate = _VideoState(plan)
                try:
                    runner = state.long_video if cfg.long_video else state.clips
                    for _ in runner(plan, vstate, rate, samples):
                        done += 1
                        if progress is not None:
                            progress(done, max(expected, done))
                except KeyboardInterrupt:
                    result.videos.append(vstate.record(subject))
                    if samples is not None:
                        result.samples.extend(samples.close())
                    raise
                except BaseException:
                    if samples is not None:
                        samples.abort()
                    raise
                result.videos.append(vstate.record(subject))
                if samples is not None:
                    result.samples.extend(samples.close())
        except KeyboardInterrupt:
            result.partial = True
            notes.append(
                f"interrupted: partial results from {len(result.clips)} clips of {len(result.videos)} videos"
            )
    _finish(result, state)
    return result


def _unique_stems(videos: list[Path]) -> list[str]:
    stems = [v.stem for v in videos]
    out = []
    for i, (v, s) in enumerate(zip(videos, stems, strict=True)):
        out.append(
            s if stems.count(s) == 1 else f"{s}_{i}" if v.parent.name == "" else f"{v.parent.name}_{s}_{i}"
        )
    return out


class _VideoState:
    """Per-video running sums."""

    def __init__(self, plan: _VideoPlan) -> None:
        self.plan = plan
        self.mean = _Mean()
        self.clips = 0
        self.frames = 0
        self.padded = 0
        self.sampled = 0
        self.bytes = 0
        self.tokens = 0
        self.pixels = 0
        self.height = self.width = 0

    def record(self, subject: _Subject) -> dict[str, Any]:
        p = self.plan
        d: dict[str, Any] = {
            "video": str(p.path), "name": p.name, "source_width": p.width, "source_height": p.height,
            "source_fps": f"{p.src_fps.numerator}/{p.src_fps.denominator}", "interval": p.interval,
            "sample_fps": p.sample_fps, "frames_sampled": self.sampled, "clips": self.clips,
            "frames_scored": self.frames, "frames_padded": self.padded, "width": self.width, "height": self.height,
        }  # fmt: skip
        d.update({k: _finite(v) for k, v in self.mean.means().items()})
        if self.bytes and self.pixels:
            d["vtok_bytes"] = self.bytes
            d["bpp"] = 8 * self.bytes / self.pixels
            if subject.mode == "tokens" and self.tokens:
                d["tokens"] = self.tokens
                d["bpp_ideal"] = self.tokens * math.log2(math.prod(subject.levels or [1])) / self.pixels
        return d


class _RunState:
    """The loops over clips (or long-video windows) and the accumulators they feed."""

    def __init__(self, cfg: BenchConfig, subject: _Subject, mets: _Metrics, result: BenchResult, speed: _Speed,
                 overall: _Mean, fvd: Any, fvd_u8: Any, rd: Any, clip_frames: int) -> None:  # fmt: skip
        self.cfg, self.s, self.m, self.result, self.speed = cfg, subject, mets, result, speed
        self.overall, self.fvd, self.fvd_u8, self.rd = overall, fvd, fvd_u8, rd
        self.clip_frames = clip_frames
        self.totals = {"bytes": 0, "tokens": 0, "pixels": 0, "clips": 0, "frames": 0, "padded": 0}

    # -- shared ------------------------------------------------------------------------------
    def _timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        _sync(self.s.device)
        t0 = time.perf_counter()
        out = fn()
        _sync(self.s.device)
        return out, time.perf_counter() - t0

    def _model_input(self, gt: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(1, 3, T, H', W') in [-1, 1], spatially padded (replicate, right/bottom) to the model's factor."""
        import torch.nn.functional as F

        x = ((gt - 0.5) / 0.5).permute(1, 0, 2, 3).unsqueeze(0)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.s.sf, (-w) % self.s.sf
        if ph or pw:
            b, c, t = x.shape[:3]
            x = F.pad(x.reshape(b, c * t, h, w), (0, pw, 0, ph), mode="replicate").reshape(
                b, c, t, h + ph, w + pw
            )
        return x.contiguous(), (h, w)

    def _score(self, vstate: _VideoState, gt: torch.Tensor, rec: torch.Tensor, n_real: int, clip_index: int,
               first: int, extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:  # fmt: skip
        """Score one clip (float and 8-bit), feed every accumulator, append the clip record."""
        plan = vstate.plan
        t = gt.shape[0]
        cands = {"": rec}
        rec_u8 = _to_u8(rec) if self.cfg.u8 else rec
        if self.cfg.u8:
            cands["_u8"] = rec_u8
        values = score_frames(gt, cands, self.m.frame_metrics, self.m.lpips)
        rec_d: dict[str, Any] = {
            "video": plan.name, "clip": clip_index,
            "first_frame": first * plan.interval, "last_frame": (first + n_real - 1) * plan.interval,
            "frames": t, "padded": t - n_real,
        }  # fmt: skip
        per_frame: dict[str, list[float | None]] = {}
        for suffix, vals in values.items():
            for metric, arr in vals.items():
                key = metric + suffix
                rec_d[key] = _finite(float(arr.mean())) if arr.size else None
                per_frame[key] = [_finite(float(x)) for x in arr]
                vstate.mean.add(key, arr)
                self.overall.add(key, arr)
        rec_d.update(extra)
        rec_d["per_frame"] = per_frame
        if self.fvd is not None and t >= 10:
            from .metrics import i3d_features

            real = gt.permute(1, 0, 2, 3).unsqueeze(0)
            fr = i3d_features(self.m.i3d, real)
            self.fvd.add_features(
                real=fr, fake=i3d_features(self.m.i3d, rec.permute(1, 0, 2, 3).unsqueeze(0))
            )
            if self.cfg.u8:
                self.fvd_u8.add_features(
                    real=fr, fake=i3d_features(self.m.i3d, rec_u8.permute(1, 0, 2, 3).unsqueeze(0))
                )
        vstate.clips += 1
        vstate.frames += t
        vstate.padded += t - n_real
        vstate.height, vstate.width = gt.shape[-2:]
        self.totals["clips"] += 1
        self.totals["frames"] += t
        self.totals["padded"] += t - n_real
        self.result.clips.append(rec_d)
        return rec_u8, rec_d

    # -- independent clips (the paper's protocol) -----------------------------------------------
    def clips(
        self, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
    ) -> Iterator[int]:
        import torch

        for ci, (frames, n_real, first) in enumerate(_iter_clips(plan, self.clip_frames, self.cfg.max_clips)):
            vstate.sampled += n_real
            gt = _prepare(frames, self.cfg, self.s.device)
            del frames
            x, (h, w) = self._model_input(gt)
            t = gt.shape[0]
            with torch.no_grad():
                self.speed.begin()
                (latent, indices), enc_s = self._timed(lambda x=x: self.s.encode(x))
                y, dec_s = self._timed(lambda latent=latent, t=t: self.s.decode(latent, t))
                self.speed.end()
            self.speed.add(enc_s, dec_s, t)
            rec = _from_model(y)[..., :h, :w]
            extra: dict[str, Any] = {"encode_s": enc_s, "decode_s": dec_s}
            if self.cfg.rate and rate.active:
                writer = rate.open(
                    w + (-w) % self.s.sf, h + (-h) % self.s.sf, latent.shape[-2], latent.shape[-1], t
                )
                n_tok = rate.write(writer, latent, indices, 0, t, 0)
                size = rate.finish(writer, t)
                pixels = t * h * w
                extra.update(vtok_bytes=size, bpp=8 * size / pixels)
                if n_tok:
                    extra.update(tokens=n_tok, bpp_ideal=rate.ideal_bits(n_tok) / pixels)
                vstate.bytes += size
                vstate.tokens += n_tok
                vstate.pixels += pixels
                self.totals["bytes"] += size
                self.totals["tokens"] += n_tok
                self.totals["pixels"] += pixels
            del x, y, latent, indices
            rec_u8, _ = self._score(vstate, gt, rec, n_real, ci, first, extra)
            if self.rd is not None:
                self._rd_clip(gt, plan, ci)
            if samples is not None:
                samples.add(gt[:n_real], rec_u8[:n_real], first)
            yield ci

    def _rd_clip(self, gt: torch.Tensor, plan: _VideoPlan, ci: int) -> None:
        import torch

        from .rd import codec_round_trip

        u8 = (gt * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        runs = {}
        for codec in self.rd.codecs:
            for crf in self.rd.crfs:
                runs[(codec, crf)] = codec_round_trip(u8, codec, crf, preset=self.rd.preset, pix_fmt=self.rd.pix_fmt,
                                                      fps=plan.sample_fps)  # fmt: skip
        cands = {
            f"{c}@{q}": torch.from_numpy(r.frames).to(gt.device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
            for (c, q), r in runs.items()
        }
        values = score_frames(gt, cands, self.m.frame_metrics, self.m.lpips)
        for (c, q), r in runs.items():
            self.rd.add(c, q, r, values[f"{c}@{q}"], video=plan.name, clip=ci)

    # -- whole videos, streamed (v1.1 protocol) -------------------------------------------------
    def long_video(
        self, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
    ) -> Iterator[int]:
        """Stream the video through the causal encoder and decoder: a first chunk of one frame, then chunks
        of 16 (a last shorter chunk is dropped: 1 + 16k frames, as the official long-video evaluation);
        output frames are scored in windows of ``clip_frames``."""
        import torch

        from . import video

        s = self.s
        frames = video.iter_frames(plan.path, interval=plan.interval)
        enc_state = dec_state = None
        pending_gt: list[torch.Tensor] = []  # ground truth frames waiting for their reconstruction
        win_gt: list[torch.Tensor] = []
        win_rec: list[torch.Tensor] = []
        win_first = 0
        window = 0
        writer = None
        n_lat = n_tok = n_in = 0
        size_hw = (0, 0)
        max_windows = self.cfg.max_clips
        limit = max_windows * self.clip_frames if max_windows else None

        def chunks() -> Iterator[list[np.ndarray]]:
            buf: list[np.ndarray] = []
            want = 1
            for f in frames:
                buf.append(f)
                if len(buf) == want:
                    yield buf
                    buf, want = [], LONG_VIDEO_CHUNK

        def flush_windows(rec: torch.Tensor, final: bool) -> Iterator[int]:
            nonlocal win_first, window
            if rec.shape[0] > len(pending_gt):
                raise VidtokError(
                    f"{plan.path}: the streaming decoder returned more frames than were encoded"
                )
            for i in range(rec.shape[0]):
                win_gt.append(pending_gt.pop(0))
                win_rec.append(rec[i])
            while len(win_gt) >= self.clip_frames or (final and win_gt):
                if max_windows is not None and window >= max_windows:
                    win_gt.clear()  # streamed past the last window asked for: not scored
                    win_rec.clear()
                    break
                k = min(len(win_gt), self.clip_frames)
                g, r = torch.stack(win_gt[:k]), torch.stack(win_rec[:k])
                del win_gt[:k], win_rec[:k]
                rec_u8, _ = self._score(vstate, g, r, k, window, win_first, {})
                if samples is not None:
                    samples.add(g, rec_u8, win_first)
                win_first += k
                window += 1
                yield window

        try:
            for chunk in chunks():
                if limit is not None and n_in >= limit:
                    break
                gt = _prepare(chunk, self.cfg, s.device)
                vstate.sampled += gt.shape[0]
                x, (h, w) = self._model_input(gt)
                size_hw = (h, w)
                pending_gt.extend(gt.unbind(0))
                with torch.no_grad():
                    self.speed.begin()
                    (latent, indices, enc_state), enc_s = self._timed(
                        lambda x=x, st=enc_state: s.encode_chunk(x, st)
                    )
                    (y, dec_state), dec_s = self._timed(
                        lambda z=latent, st=dec_state: s.decode_chunk(z, st, False)
                    )
                    self.speed.end()
                self.speed.add(enc_s, dec_s, gt.shape[0])
                if self.cfg.rate and rate.active and latent.shape[2]:
                    if writer is None:
                        writer = rate.open(
                            x.shape[-1], x.shape[-2], latent.shape[-2], latent.shape[-1], LONG_VIDEO_CHUNK
                        )
                    t_lat = latent.shape[2]
                    f0 = 0 if n_lat == 0 else 1 + (n_lat - 1) * s.tdf
                    f1 = 1 + (n_lat + t_lat - 1) * s.tdf
                    n_tok += rate.write(writer, latent, indices, f0, f1, n_lat)
                    n_lat += t_lat
                n_in += gt.shape[0]
                yield from flush_windows(_from_model(y)[..., :h, :w], False)
            if n_in:
                with torch.no_grad():
                    (y, dec_state), dec_s = self._timed(
                        lambda: s.decode_chunk(latent[:, :, :0], dec_state, True)
                    )
                self.speed.dec_s += dec_s if self.speed.timed else 0.0
                yield from flush_windows(_from_model(y)[..., : size_hw[0], : size_hw[1]], True)
                if pending_gt:
                    raise VidtokError(
                        f"{plan.path}: the streaming decoder returned {n_in - len(pending_gt)} frames for {n_in}"
                    )
        finally:
            if writer is not None:
                if n_in and not pending_gt:
                    size = rate.finish(writer, n_in)
                    h, w = size_hw
                    vstate.bytes += size
                    vstate.tokens += n_tok
                    vstate.pixels += n_in * h * w
                    self.totals["bytes"] += size
                    self.totals["tokens"] += n_tok
                    self.totals["pixels"] += n_in * h * w
                else:
                    writer.abort()


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


def _finish(result: BenchResult, st: _RunState) -> None:
    """Overall means, FVD, speed and the RD comparison."""
    t = st.totals
    o: dict[str, Any] = {"videos": len(result.videos), "clips": t["clips"], "frames_scored": t["frames"],
                         "frames_padded": t["padded"]}  # fmt: skip
    means = st.overall.means()
    for m in FRAME_METRICS:
        if m in st.m.wanted:
            for suffix in ("", "_u8") if st.cfg.u8 else ("",):
                o[m + suffix] = (
                    _finite(means[m + suffix]) if st.m.available(m) and (m + suffix) in means else None
                )
    if t["bytes"] and t["pixels"]:
        o["vtok_bytes"] = t["bytes"]
        o["bpp"] = 8 * t["bytes"] / t["pixels"]
        if t["tokens"]:
            o["tokens"] = t["tokens"]
            o["bpp_ideal"] = t["tokens"] * math.log2(math.prod(st.s.levels or [1])) / t["pixels"]
    result.fvd = _fvd_summary(st.fvd, "FVD", result.notes)
    result.fvd_u8 = _fvd_summary(st.fvd_u8, "FVD (8-bit)", []) if st.cfg.u8 else None
    if "fvd" in st.m.wanted:
        o["fvd"] = result.fvd.get("fvd") if result.fvd else None
        o["fvd_n"] = result.fvd.get("n") if result.fvd else None
        if st.cfg.u8:
            o["fvd_u8"] = result.fvd_u8.get("fvd") if result.fvd_u8 else None
    result.overall = o
    result.speed = st.speed.summary(st.s) if st.speed.seen else {}
    if st.rd is not None:
        from .rd import dominating_metrics, rd_verdicts

        points = st.rd.points()
        metrics = list(st.m.frame_metrics)
        ours = {"model": st.s.name, "bpp": o.get("bpp"), "bpp_ideal": o.get("bpp_ideal"),
                **{m: o.get(m) for m in metrics}}  # fmt: skip
        for p in points:
            p["beats_tokens_on"] = dominating_metrics(ours, p, metrics)
        result.rd = {
            "codecs": list(st.rd.codecs), "crfs": list(st.rd.crfs), "preset": st.rd.preset, "pix_fmt": st.rd.pix_fmt,
            "bits": "sum of packet sizes per clip, x264's encoder-settings SEI excluded (bits_with_sei includes it); "
            "bpp = total bits / total pixels over all clips",
            "tokens_bits": "real .vtok file size per clip (header, index and checksums included); bpp_ideal = "
            "n_tokens*log2(K)",
            "colour": "RGB -> YUV BT.709 limited range -> RGB",
            "metrics": metrics, "ours": ours, "points": points, "clips": st.rd.clips,
            "verdicts": rd_verdicts(ours, points, metrics),
        }  # fmt: skip


# ============================================================================================
# Report
# ============================================================================================


def _cell(v: Any, metric: str, available: bool) -> str:
    if not available:
        return "unavailable"
    if v is None:
        return "-"
    if metric.startswith("psnr"):
        return f"{v:.2f}"
    if metric.startswith(("ssim", "lpips")):
        return f"{v:.4f}"
    if metric.startswith("bpp"):
        return f"{v:.4f}"
    return str(v)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def print_report(result: BenchResult, console: Any) -> None:
    """Print the per-video/overall table, FVD with N, speed and memory, and the RD table with verdicts
    on a rich ``console``."""
    from rich.table import Table

    cols = [m for m in FRAME_METRICS if m in result.metrics]
    avail = {m: bool(result.metrics[m]["available"]) for m in result.metrics}
    u8 = any(k.endswith("_u8") for k in result.overall)
    title = f"vidtok bench: {result.model.get('name')} ({result.protocol.get('name')} protocol)"
    if result.partial:
        title += " [PARTIAL: interrupted]"
    table = Table(title=title, title_justify="left")
    table.add_column("video", no_wrap=True)
    table.add_column("clips", justify="right")
    table.add_column("frames (dup)", justify="right")
    for m in cols:
        table.add_column(m.upper(), justify="right")
    if u8:
        for m in cols:
            table.add_column(f"{m.upper()} 8-bit", justify="right")
    has_rate = any("bpp" in v for v in result.videos)
    if has_rate:
        table.add_column("bpp (.vtok)", justify="right")

    def row(
        name: str, d: dict[str, Any], clips: Any, frames: Any, padded: Any, style: str | None = None
    ) -> None:
        cells = [name, str(clips), f"{frames} ({padded})"]
        cells += [_cell(d.get(m), m, avail[m]) for m in cols]
        if u8:
            cells += [_cell(d.get(m + "_u8"), m, avail[m]) for m in cols]
        if has_rate:
            cells.append(_cell(d.get("bpp"), "bpp", True))
        table.add_row(*cells, style=style)

    for v in result.videos:
        row(v["name"], v, v["clips"], v["frames_scored"], v["frames_padded"])
    o = result.overall
    row("overall", o, o.get("clips", 0), o.get("frames_scored", 0), o.get("frames_padded", 0), style="bold")
    console.print(table)
    lines: list[str] = []
    if "bpp_ideal" in o:
        lines.append(
            f"rate: {o['bpp']:.4f} bpp in real .vtok files (header included; tokens entropy-coded where that is "
            f"smaller); fixed-length n_tokens*log2(K): {o['bpp_ideal']:.4f} bpp"
        )
    if "fvd" in result.metrics:
        if not avail["fvd"]:
            lines.append("FVD: unavailable")
        elif result.fvd and result.fvd.get("fvd") is not None:
            f = result.fvd
            text = f"rFVD {f['fvd']:.2f} (ours, N={f['n']} clips)"
            if result.fvd_u8 and result.fvd_u8.get("fvd") is not None:
                text += f"; 8-bit output {result.fvd_u8['fvd']:.2f}"
            if f.get("small_sample"):
                text += f" [N <= {f.get('feature_dim', 400)}: biased upwards, see warning]"
            lines.append(text + "; StyleGAN-V I3D, not comparable with published FVDs (see docs/BENCH.md)")
        else:
            lines.append(f"FVD: not computed ({(result.fvd or {}).get('reason', 'no clips')})")
    sp = result.speed
    if sp:
        enc = f"{sp['encode_fps']:.2f}" if sp.get("encode_fps") else "-"
        dec = f"{sp['decode_fps']:.2f}" if sp.get("decode_fps") else "-"
        warm = (
            "first step excluded as warm-up" if sp.get("warmup_excluded") else "single step, warm-up included"
        )
        lines.append(
            f"speed: encode {enc} frames/s, decode {dec} frames/s ({sp['dtype']} on {sp['device']} "
            f"{sp.get('device_name', '')}, {sp['frames_timed']} frames, {warm}); peak memory "
            f"{_fmt_bytes(sp['peak_memory_bytes'])} ({sp['peak_memory_kind'].split(' (')[0]})"
        )
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if result.rd:
        _print_rd(result.rd, console)


def _print_rd(rd: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    metrics = rd["metrics"]
    t = Table(
        title=f"rate-distortion vs codecs (preset {rd['preset']}, {rd['pix_fmt']})", title_justify="left"
    )
    for c in ("codec", "CRF", "bpp", "bpp +SEI", *[m.upper() for m in metrics], "vs tokens"):
        t.add_column(c, justify="left" if c in ("codec", "vs tokens") else "right")
    ours = rd["ours"]
    if ours.get("bpp"):
        ideal = f" (n*log2K {ours['bpp_ideal']:.4f})" if ours.get("bpp_ideal") else ""
        t.add_row(f"tokens: {ours['model']}", "-", f"{ours['bpp']:.4f}{ideal}", "-",
                  *[_cell(ours.get(m), m, True) for m in metrics], "", style="bold")  # fmt: skip
    for p in sorted(rd["points"], key=lambda p: (p["codec"], p["crf"])):
        beats = p.get("beats_tokens_on") or []
        t.add_row(
            p["codec"], str(p["crf"]), f"{p['bpp']:.4f}", f"{p['bpp_with_sei']:.4f}",
            *[_cell(p.get(m), m, True) for m in metrics],
            f"beats tokens on {', '.join(beats)} at a lower rate" if beats else "",
            style="red" if beats else None,
        )  # fmt: skip
    console.print(t)
    for line in rd["verdicts"]:
        console.print(line, markup=False, highlight=False)
