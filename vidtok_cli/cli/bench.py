"""The ``vidtok bench`` command: reconstruction quality, speed and rate by the paper's protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UsageError
from .app import app
from .console import clip_progress, console


@app.command("bench")
def bench_cmd(
    inputs: list[Path] = typer.Argument(
        ..., help="Videos, folders (searched recursively) or CSV files with a 'videos' column."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Zoo name, weights file, run directory, or 'trivial' (the baseline codec).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Architecture of --model weights that carry none (official YAML/JSON, card)."
    ),
    protocol: str = typer.Option(
        "vidtok",
        "--protocol",
        help="vidtok: the paper's (30 fps sampling, 256x256 centre crop, 17/16-frame clips, fp32); "
        "custom: set --fps/--size/--frames/--crop/--precision.",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="custom: keep every round(src_fps/fps)-th frame (default 30; 0: every frame)."
    ),
    size: int | None = typer.Option(
        None, "--size", help="custom: resize the short side (default 256; 0: native)."
    ),
    frames: int | None = typer.Option(
        None, "--frames", help="custom: frames per clip (default 17 causal / 16 non-causal)."
    ),
    crop: str | None = typer.Option(None, "--crop", help="custom: center (default) or none."),
    long_video: bool = typer.Option(
        False, "--long-video", help="Stream whole videos through the causal encoder/decoder (v1.1 protocol)."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated psnr,ssim,lpips,fvd (default: all, skipping any whose weights are missing; "
        "metrics named here must run).",
    ),
    lpips_weights: Path | None = typer.Option(
        None, "--lpips-weights", help="Folder with the LPIPS weights (vgg.pth and vgg16.safetensors)."
    ),
    i3d_weights: Path | None = typer.Option(None, "--i3d-weights", help="I3D TorchScript file for FVD."),
    max_clips: int | None = typer.Option(None, "--max-clips", help="At most this many clips per video."),
    batch: int = typer.Option(
        1, "--batch", help="Clips of a video run through the model this many at a time (keeps a GPU busy)."
    ),
    rd: str | None = typer.Option(None, "--rd", help="Rate-distortion against codecs: x264,x265."),
    crf: str = typer.Option("18,23,28,33,38,43,48", "--crf", help="CRF sweep of --rd."),
    latent_bits: str | None = typer.Option(
        None, "--latent-bits", help="With --rd: also the latents quantized at these bits (e.g. 4,6,8)."
    ),
    preset: str = typer.Option("medium", "--preset", help="Codec preset of --rd."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write an RD plot PNG (needs --rd and matplotlib)."
    ),
    save_samples: Path | None = typer.Option(
        None,
        "--save-samples",
        help="Folder for side-by-side MP4s and PNG frame grids, one of each per video.",
    ),
    json_out: str | None = typer.Option(
        None,
        "--json",
        help="Write the full report (per clip, per video, protocol, hashes) as JSON; '-': stdout.",
    ),
    csv_out: Path | None = typer.Option(
        None, "--csv", help="Write per-clip/per-video/overall values as CSV."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="auto (the vidtok protocol: fp32; custom: bf16 autocast on CUDA, fp32 on the CPU), fp32, "
        "or custom: bf16 or fp16 (autocast).",
    ),
    dtype: str | None = typer.Option(None, "--dtype", hidden=True, help="Old name of --precision."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    identity: bool = typer.Option(False, "--identity", hidden=True, help="Bench reconstruction = input."),
    baseline: bool = typer.Option(
        False,
        "--baseline",
        help="Bench the trivial codec (every 4th frame, 8x bilinear down/up): short for --model trivial.",
    ),
) -> None:
    """Measure reconstruction quality (PSNR, SSIM, LPIPS, FVD), speed, memory and rate, by the paper's protocol.

    Ctrl-C stops early and prints (and writes) the results gathered so far.
    """
    from ..atomic import refuse_existing
    from ..bench import BENCH_METRICS, BenchConfig, IdentityModel, collect_videos, run_bench
    from ..loading import load_model
    from ..runtime import resolve_device
    from .bench_report import print_report

    if baseline and model is not None:
        raise UsageError("--baseline is short for --model trivial; give one of them")
    if baseline:
        model = "trivial"
    precision = _precision(precision, dtype)
    custom = {"--fps": fps, "--size": size, "--frames": frames, "--crop": crop,
              "--precision": None if precision in ("auto", "fp32") else precision}  # fmt: skip
    if protocol == "vidtok" and any(v is not None for v in custom.values()):
        given = ", ".join(k for k, v in custom.items() if v is not None)
        raise UsageError(f"{given} cannot change the vidtok protocol; add --protocol custom")
    if crop is not None and crop not in ("center", "none"):
        raise UsageError(f"--crop must be center or none, got {crop!r}")
    if plot is not None and not rd:
        raise UsageError("--plot needs --rd")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(
                "--plot needs matplotlib, which is not installed; run `pip install 'vidtok[plot]'`"
            ) from None
    for out in (
        p for p in (None if json_out in (None, "-") else Path(json_out), csv_out, plot) if p is not None
    ):
        refuse_existing(out, force, UsageError)
    wanted = tuple(m.strip().lower() for m in metrics.split(",") if m.strip()) if metrics else BENCH_METRICS
    cfg = BenchConfig(
        protocol=protocol,
        fps=30.0 if fps is None else (fps or None),
        size=256 if size is None else (size or None),
        crop=(crop or ("center" if size is None or size else "none")) == "center",
        frames=frames, long_video=long_video, metrics=wanted, strict_metrics=metrics is not None,
        lpips_weights=None if lpips_weights is None else str(lpips_weights),
        i3d_weights=None if i3d_weights is None else str(i3d_weights),
        max_clips=max_clips, precision=precision, device=device, batch=batch,
        rd_codecs=tuple(c for c in (rd or "").split(",") if c.strip()), rd_crfs=crf, rd_preset=preset,
        save_samples=None if save_samples is None else str(save_samples), force=force,
    )  # fmt: skip
    if cfg.rd_codecs:
        from ..bench.rd import parse_codecs, parse_crfs, parse_latent_bits

        cfg.rd_codecs, cfg.rd_crfs = parse_codecs(cfg.rd_codecs), parse_crfs(crf)
        cfg.rd_latent_bits = parse_latent_bits(latent_bits or "")
    elif latent_bits:
        raise UsageError("--latent-bits needs --rd")
    cfg.validate()
    videos = collect_videos(inputs)  # before loading a model: a wrong path is reported at once
    m = (
        IdentityModel(device=str(resolve_device(device)))
        if identity
        else load_model(model, config=config, device=device)
    )
    if getattr(m, "input_kind", "frames") == "motion":  # motion tokens: their own measures (bench/motion.py)
        from ..motion_codec import refuse_options

        refuse_options(
            {"--protocol custom": protocol != "vidtok", **{k: v is not None for k, v in custom.items()},
             "--long-video": long_video, "--metrics": metrics is not None,
             "--lpips-weights": lpips_weights is not None, "--i3d-weights": i3d_weights is not None,
             "--plot": plot is not None, "--save-samples": save_samples is not None},
            "the bench of a motion-token model (rate, EPE, PSNR/SSIM at 6 fps)",
        )  # fmt: skip
        _motion_bench(videos, m, cfg, json_out, csv_out, quiet)
        return
    err = console(stderr=True)
    show = not quiet and json_out != "-"
    with clip_progress(not show) as cb:
        result = run_bench(videos, m, cfg, progress=cb)
    for note in result.notes:
        err.print(f"vidtok: warning: {note}", markup=False, highlight=False, soft_wrap=True)
    if show:
        print_report(result, console())
    if json_out == "-":
        typer.echo(result.to_json())
    elif json_out:
        result.to_json(json_out, force=force)
    if csv_out is not None:
        result.to_csv(csv_out, force=force)
    if plot is not None and result.rd:
        from ..bench.rd import plot_rd

        plot_rd(
            result.rd, plot, force=force, title=f"{result.model.get('name')}: {result.protocol.get('name')}"
        )
    if result.partial:
        raise typer.Exit(130)


def _precision(precision: str | None, dtype: str | None) -> str:
    """``--precision`` (or its old name ``--dtype``) as ``auto``/``fp32``/``bf16``/``fp16``."""
    from ..dtypes import SHORT, canonical_dtype

    if precision is not None and dtype is not None and precision != dtype:
        raise UsageError("--dtype is the old name of --precision; give one of them")
    p = (precision or dtype or "auto").lower()
    return p if p == "auto" else SHORT[canonical_dtype(p, "precision")]


def _motion_bench(
    videos: list, m: object, cfg: object, json_out: str | None, csv_out: Path | None, quiet: bool
) -> None:
    """The bench of a motion-token model: rates, motion end-point error and warped-frame quality vs
    baselines and a real codec at the same rate (``bench/motion.py``)."""
    import json

    from ..atomic import write_text
    from ..bench.motion import format_table, run_motion_bench, to_csv
    from ..bench.rd import parse_crfs

    result = run_motion_bench(
        videos, m, max_clips=cfg.max_clips, codecs=cfg.rd_codecs or ("x264",), crfs=parse_crfs(cfg.rd_crfs),
        preset=cfg.rd_preset,
    )  # fmt: skip
    if json_out == "-":
        typer.echo(json.dumps(result, indent=2))
    elif json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n", force=cfg.force)
    if csv_out is not None:
        write_text(csv_out, to_csv(result), force=cfg.force)
    if not quiet and json_out != "-":
        console().print(format_table(result), markup=False, highlight=False, soft_wrap=True)
