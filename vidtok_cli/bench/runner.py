"""``run_bench``: check the settings, run every video through the model, sum up the result."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import UsageError
from .clips import _plan, _VideoPlan
from .config import FRAME_METRICS, BenchConfig
from .long_video import _stream_video
from .rate import _Rate
from .result import BenchResult
from .samples import _Samples
from .scoring import _finite, _fvd_summary, _Mean, _Metrics
from .speed import _Speed
from .state import _rate_values, _RunState, _VideoState
from .subject import _Subject
from .videos import _unique_stems, collect_videos

Progress = Callable[[int, "int | None"], None]
"""progress(clips done, clips expected or None)."""


def run_bench(
    inputs: Sequence[str | os.PathLike[str]],
    model: Any = None,
    config: BenchConfig | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``model`` on the videos in ``inputs`` (files, folders, CSVs) under ``config``.

    ``model``: a loaded `Tokenizer` of any family (``load_model(...)``, ``load_model("trivial")`` for
    the baseline), an :class:`IdentityModel`, a zoo name / weights path / ``trivial``, or None for the
    default model. ``progress(done, expected)`` is called after every clip. A KeyboardInterrupt
    during the run ends it early: the result holds what was gathered, with ``partial=True``.
    Raises UsageError for bad settings, WeightsUnavailableError when a metric that was asked for
    explicitly cannot run.
    """
    cfg = config or BenchConfig()
    cfg.validate()
    videos = collect_videos(inputs)
    if model is None or isinstance(model, (str, os.PathLike)):
        from ..loading import load_model

        model = load_model(model, device=cfg.device)
    subject = _Subject(model, cfg.run_precision)
    cfg = _fixed_size(cfg, subject)
    clip_frames = _clip_frames(cfg, subject)
    rd_acc = _rd_accumulator(cfg)
    samples_dir = _samples_dir(cfg)
    notes: list[str] = []
    mets = _Metrics(cfg, subject.device, clip_frames, notes)
    result = _new_result(cfg, subject, mets, clip_frames, notes)
    stems = _unique_stems(videos)
    plans = [_plan(v, s, cfg, clip_frames) for v, s in zip(videos, stems, strict=True)]
    fvd_acc = fvd_u8_acc = None
    if mets.i3d is not None:
        from ..metrics import FVDAccumulator

        fvd_acc, fvd_u8_acc = FVDAccumulator(), FVDAccumulator()
    state = _RunState(cfg, subject, mets, result, _Speed(subject.device), _Mean(), fvd_acc, fvd_u8_acc, rd_acc,
                      clip_frames)  # fmt: skip
    if rd_acc is not None and cfg.rd_latent_bits:
        from .rd import LATENT_BITS_CODEC, RDAccumulator

        state.latent_rd = RDAccumulator((LATENT_BITS_CODEC,), cfg.rd_latent_bits, "-", "-")
    _run_videos(state, plans, samples_dir, progress)
    _finish(result, state)
    return result


def _fixed_size(cfg: BenchConfig, subject: _Subject) -> BenchConfig:
    """``cfg`` for a model that takes frames of one size (``frame_layout.input_size``): its protocol resizes
    the short side to that size and centre-crops (in place of the default 256); UsageError for another
    size, no crop, or a non-square input size."""
    size = subject.layout.input_size
    if size is None:
        return cfg
    h, w = size
    if h != w:
        raise UsageError(f"bench: this model takes {h}x{w} frames; only square input sizes can be benched")
    if cfg.size not in (256, h) or not cfg.crop:
        raise UsageError(f"--size/--crop: this model takes {h}x{w} frames (short side {h}, centre crop)")
    return replace(cfg, size=h, crop=True)


def _clip_frames(cfg: BenchConfig, subject: _Subject) -> int:
    """The clip length for this model under ``cfg``; UsageError when the model cannot run it."""
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
    return clip_frames


def _rd_accumulator(cfg: BenchConfig) -> Any:
    """The rate-distortion accumulator for ``cfg.rd_codecs``, or None."""
    if not cfg.rd_codecs:
        return None
    from .rd import RDAccumulator, parse_codecs, parse_crfs

    return RDAccumulator(parse_codecs(cfg.rd_codecs), parse_crfs(cfg.rd_crfs), cfg.rd_preset, cfg.rd_pix_fmt)


def _samples_dir(cfg: BenchConfig) -> Path | None:
    """The folder for sample files, created; None when no samples are asked for."""
    samples_dir = Path(cfg.save_samples).expanduser() if cfg.save_samples else None
    if samples_dir is not None:
        if samples_dir.exists() and not samples_dir.is_dir():
            raise UsageError(f"--save-samples {samples_dir} is a file, not a folder")
        samples_dir.mkdir(parents=True, exist_ok=True)
    return samples_dir


def _new_result(
    cfg: BenchConfig, subject: _Subject, mets: _Metrics, clip_frames: int, notes: list[str]
) -> BenchResult:
    """An empty result naming the tool, the protocol, the model (card and weights hash) and the environment."""
    import av
    import torch

    card = dict(subject.card)
    card["weights_sha256"] = subject.weights_sha256
    card["frame_layout"] = subject.layout.to_dict()
    card["latent_specs"] = [spec.to_dict() for spec in subject.specs.values()]
    return BenchResult(
        tool={"name": "vidtok", "version": __version__},
        protocol=cfg.describe(clip_frames, subject.causal, subject.precision),
        model=card,
        environment={
            "device": str(subject.device),
            "precision": subject.precision,
            "dtype": subject.dtype_name,
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


def _run_videos(
    state: _RunState, plans: list[_VideoPlan], samples_dir: Path | None, progress: Progress | None
) -> None:
    """Every video in turn; a KeyboardInterrupt ends the run with what was gathered (``partial``)."""
    result = state.result
    expected = sum(p.clips_estimate for p in plans)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, max(expected, done))

    if progress is not None:
        progress(0, expected)
    with tempfile.TemporaryDirectory(prefix="vidtok-bench-") as tmp:
        rate = _Rate(state.s, Path(tmp), 30.0)
        try:
            for plan in plans:
                rate.fps = Fraction(plan.sample_fps).limit_denominator(1001)
                _run_video(state, plan, rate, samples_dir, tick)
        except KeyboardInterrupt:
            result.partial = True
            result.notes.append(
                f"interrupted: partial results from {len(result.clips)} clips of {len(result.videos)} videos"
            )


def _run_video(
    state: _RunState, plan: _VideoPlan, rate: _Rate, samples_dir: Path | None, tick: Callable[[], None]
) -> None:
    """One video's clips (or long-video windows), ``tick()`` after each; its record goes into the result,
    also when interrupted."""
    cfg, result = state.cfg, state.result
    samples = (
        _Samples(samples_dir, plan.name, plan.sample_fps, plan.frames_estimate, cfg) if samples_dir else None
    )
    vstate = _VideoState(plan)
    try:
        if cfg.long_video:
            steps = _stream_video(state, plan, vstate, rate, samples)
        else:
            steps = state.clips(plan, vstate, rate, samples)
        for _ in steps:
            tick()
    except KeyboardInterrupt:
        result.videos.append(vstate.record())
        if samples is not None:
            result.samples.extend(samples.close())
        raise
    except BaseException:
        if samples is not None:
            samples.abort()
        raise
    result.videos.append(vstate.record())
    if samples is not None:
        result.samples.extend(samples.close())


def _finish(result: BenchResult, st: _RunState) -> None:
    """Overall means, FVD, speed and the RD comparison."""
    o = _overall(result, st)
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
        result.rd = _rd_summary(st, o)


def _overall(result: BenchResult, st: _RunState) -> dict[str, Any]:
    """Counts, frame-weighted means over every scored frame, and the rate over every video."""
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
    o.update(_rate_values(t["bytes"], t["tokens"], t["bits"], t["pixels"]))
    return o


def _rd_summary(st: _RunState, o: dict[str, Any]) -> dict[str, Any]:
    """The codec points against the tokens' overall values ``o``, with the verdicts."""
    from .rd import dominating_metrics, rd_verdicts

    points = st.rd.points()
    metrics = list(st.m.frame_metrics)
    ours = {"model": st.s.name, "bpp": o.get("bpp"), "bpp_ideal": o.get("bpp_ideal"),
            **{m: o.get(m) for m in metrics}}  # fmt: skip
    verdicts = rd_verdicts(ours, points, metrics)
    if st.latent_rd is not None:
        points += st.latent_rd.points()
    for p in points:
        p["beats_tokens_on"] = dominating_metrics(ours, p, metrics)
    return {
        "codecs": list(st.rd.codecs), "crfs": list(st.rd.crfs), "preset": st.rd.preset, "pix_fmt": st.rd.pix_fmt,
        "bits": "sum of packet sizes per clip, x264's encoder-settings SEI excluded (bits_with_sei includes it); "
        "bpp = total bits / total pixels over all clips",
        "tokens_bits": "real .vtok file size per clip (header, index and checksums included); bpp_ideal = "
        "n_tokens*log2(K)",
        "colour": "RGB -> YUV BT.709 limited range -> RGB",
        "metrics": metrics, "ours": ours, "points": points, "clips": st.rd.clips,
        "verdicts": verdicts,
    }  # fmt: skip
