"""The benchmark's settings (:class:`BenchConfig`), the metrics it knows and the protocol as it ran."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..dtypes import canonical_dtype
from ..errors import UsageError

BENCH_METRICS = ("psnr", "ssim", "lpips", "fvd")
FRAME_METRICS = ("psnr", "ssim", "lpips")


LONG_VIDEO_CHUNK = 16  # frames per encoder step after the first frame (the official tiled setting)


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


@dataclass
class BenchConfig:
    """What ``run_bench`` measures and how.

    ``protocol``: ``"vidtok"`` (the paper's; fps 30, size 256, centre crop, 17/16-frame clips, float32)
    or ``"custom"`` (then ``fps`` (None: every frame), ``size`` (None: native size), ``crop`` and
    ``frames`` (None: the model's native clip length) and ``precision`` apply). ``precision``: ``auto``
    (the vidtok protocol: fp32; custom: bf16 autocast on CUDA, fp32 on the CPU), ``fp32``, ``bf16`` or
    ``fp16`` (autocast; see ``vidtok_cli.runtime``). ``long_video``: stream whole videos
    instead of independent clips (causal models). ``metrics``: any of psnr, ssim, lpips, fvd;
    ``strict_metrics``: a metric that cannot run (weights missing) is an error instead of a note.
    ``max_clips``: at most this many clips per video. ``rd_codecs``: codecs for rate-distortion
    (x264, x265) at ``rd_crfs``; ``rd_latent_bits``: also the model's continuous latents
    quantized at each of these bits per value (``--latent-bits``), as RD points of their own. ``save_samples``: a folder for side-by-side MP4s and PNG grids.
    ``batch``: independent clips of one video run through the model this many at a time (scores equal
    to one at a time up to float rounding; per-clip times are the batch's share).
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
    precision: str = "auto"
    device: str = "auto"
    u8: bool = True
    rate: bool = True
    rd_codecs: tuple[str, ...] = ()
    rd_crfs: tuple[int, ...] = (18, 23, 28, 33, 38, 43, 48)
    rd_latent_bits: tuple[int, ...] = ()
    rd_preset: str = "medium"
    rd_pix_fmt: str = "yuv420p"
    save_samples: str | None = None
    sample_gain: float = 4.0
    grid_frames: int = 4
    force: bool = False
    batch: int = 1

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
                    ("--precision", self.run_precision, "fp32"),
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
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        if self.long_video and self.batch > 1:
            raise UsageError("--batch runs independent clips together; a --long-video stream has one")
        if self.long_video and self.rd_codecs:
            raise UsageError("--rd works on clips; it cannot be combined with --long-video")
        self.run_precision  # noqa: B018 (raises for an unknown precision)
        if self.sample_gain <= 0:
            raise UsageError("the difference gain must be positive")

    @property
    def run_precision(self) -> str:
        """``precision`` with ``auto`` resolved where the protocol fixes it (vidtok: ``fp32``); otherwise
        ``auto`` (decided by the device, see ``vidtok_cli.runtime.compute_dtype``) or ``fp32``/``bf16``/``fp16``."""
        from ..dtypes import SHORT
        from ..runtime import PRECISIONS

        p = str(self.precision).lower()
        if p == "auto":
            return "fp32" if self.protocol == "vidtok" else "auto"
        if p not in PRECISIONS:
            p = SHORT[canonical_dtype(p, "precision")]
        return p

    def describe(self, clip_frames: int, causal: bool, precision: str) -> dict[str, Any]:
        """The protocol as it ran (``precision``: the one the model ran in), for the report; its name says
        when it streamed whole videos or ran in reduced precision."""
        variant = [
            v
            for v in ("long video" if self.long_video else "", "" if precision == "fp32" else precision)
            if v
        ]
        return {
            "name": self.protocol + (f" ({', '.join(variant)})" if variant else ""),
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
            "precision": precision,
            "aggregation": "mean over every scored frame of every video (frame-weighted)",
            "u8": "reconstruction rounded to uint8 (as `vidtok decode` writes it) vs the float ground truth",
            "max_clips_per_video": self.max_clips,
            "metrics": list(self.metrics),
        }
