"""The ``vidtok`` command line. Thin: parse options, call one library function, print with rich.

Heavy imports (torch, av) happen inside commands so that ``vidtok --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ._version import __version__
from .errors import UsageError, VidtokError

app = typer.Typer(
    name="vidtok",
    help="Video tokenizer and neural video codec: encode videos to latents/tokens (.vtok) and back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _console(stderr: bool = False):  # noqa: ANN202 - rich import kept lazy
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output gets wide lines instead of rich's 80-column default, so tables stay readable
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vidtok {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vidtok: VidTok / VidTwin / motion video tokenizers from the command line."""


# ----------------------------------------------------------------------------- models


def _fmt_metric(card_metrics: dict, key: str, fmt: str) -> str:
    v = card_metrics.get(key)
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON."),
) -> None:
    """List the model zoo: official checkpoints and their published PSNR/SSIM/LPIPS/FVD."""
    from . import zoo
    from .loading import weights_cached

    cards = zoo.list_cards()
    if as_json:
        out = []
        for c in cards:
            d = c.to_dict()
            d["cached"] = weights_cached(c)
            out.append(d)
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"vidtok model zoo ({len(cards)} models)", title_justify="left")
    for col, justify in [
        ("name", "left"), ("ver", "left"), ("causal", "center"), ("TxHxW", "left"), ("latent", "left"),
        ("PSNR", "right"), ("SSIM", "right"), ("LPIPS", "right"), ("FVD", "right"), ("local", "center"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=col == "name")
    for c in cards:
        latent = f"KL {c.latent_channels}ch" if c.regularizer == "kl" else f"FSQ {c.codebook_size:,}"
        name = f"{c.name} (default)" if c.default else c.name
        table.add_row(
            name, c.version, "yes" if c.causal else "no", c.compression, latent,
            _fmt_metric(c.metrics, "psnr", ".2f"), _fmt_metric(c.metrics, "ssim", ".3f"),
            _fmt_metric(c.metrics, "lpips", ".3f"), _fmt_metric(c.metrics, "fvd", ".1f"),
            "yes" if weights_cached(c) else "-",
        )  # fmt: skip
    con = _console()
    con.print(table)
    con.print(
        "Metrics as published (MCL-JCV, 30 fps, 256x256; v1.1 rows use the long-video protocol). "
        "'local': weights already on this machine."
    )


# ----------------------------------------------------------------------------- convert


@app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="Official Lightning .ckpt (or any state-dict file) to convert."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Zoo name, official YAML, or card TOML; not needed for official file names.",
    ),
    dtype: str | None = typer.Option(
        None, "--dtype", help="Store weights as fp32, fp16 or bf16 (default: as stored)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Convert a checkpoint to a self-describing .safetensors file (weights + config + card + source sha256)."""
    from .checkpoints import read_safetensors_metadata
    from .loading import convert_checkpoint

    out = convert_checkpoint(src, output, config=config, dtype=dtype, force=force)
    if not quiet:
        meta = read_safetensors_metadata(out)
        size = out.stat().st_size
        _console().print(
            f"wrote {out} ({size / 2**20:.1f} MiB); source sha256 {meta.get('vidtok.source_sha256', '?')[:16]}..."
        )


# ----------------------------------------------------------------------------- encode / decode / info


def _summary(summary: dict, as_json: bool, quiet: bool, title: str) -> None:
    if as_json:  # one line per file (JSON Lines), so several inputs and ranks stay parseable
        typer.echo(json.dumps(summary, default=str))
        return
    if quiet:
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    for k, v in summary.items():
        if v is None:
            continue
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    _console().print(table)


@contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Callable[[int], None] | None]:
    """Yields a frame-count callback driving a rich progress bar on a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(label), BarColumn(), TextColumn("{task.completed} frames"), TimeElapsedColumn(),
        console=_console(stderr=True),
    )  # fmt: skip
    task = bar.add_task(label, total=None)
    with bar:
        yield lambda n: bar.update(task, completed=n)


@app.command("encode")
def encode_cmd(
    inputs: list[Path] = typer.Argument(..., help="Video file(s) to encode."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output .vtok file, or a folder for several inputs."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Zoo name, weights file or run directory."),
    chunk_frames: int = typer.Option(16, "--chunk-frames", help="Frames per encoder step (memory vs speed)."),
    fps: float | None = typer.Option(
        None, "--fps", help="Resample to this frame rate (default: source rate)."
    ),
    size: int | None = typer.Option(None, "--size", help="Resize the short side (bilinear + antialias)."),
    crop: bool = typer.Option(
        False, "--crop", help="Centre-crop a --size square instead of keeping the aspect."
    ),
    start: float = typer.Option(0.0, "--start", help="Start time in seconds."),
    duration: float | None = typer.Option(None, "--duration", help="Seconds to encode."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Encode at most this many frames."),
    latent_dtype: str = typer.Option(
        "float16", "--latent-dtype", help="float16, bfloat16 or float32 (KL latents)."
    ),
    segment_frames: int | None = typer.Option(
        None, "--segment-frames", help="Independent segments for random access."
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="Do not store the source's audio."),
    tile: int | None = typer.Option(
        None, "--tile", help="Encode overlapping spatial tiles of this many pixels (large frames)."
    ),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", help="Pixels shared by neighbouring tiles (default: a quarter tile)."
    ),
    clip_overlap: int = typer.Option(
        0,
        "--clip-overlap",
        help="Non-causal models: frames shared by consecutive clips, cross-faded at decode.",
    ),
    psnr: bool = typer.Option(
        False, "--psnr", help="Decode the written file and report its PSNR against the input frames."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Encode video(s) into .vtok files (latents or tokens); the default model when --model is not given.

    Under torchrun each process (RANK of WORLD_SIZE) encodes its share of the inputs.
    """
    from .codec import encode_file
    from .dtypes import parse_latent_dtype
    from .loading import load_model

    if len(inputs) > 1 or output.is_dir():
        output.mkdir(parents=True, exist_ok=True)
        targets = [(i, output / (i.stem + ".vtok")) for i in inputs]
        stems = [t[1].name for t in targets]
        if len(set(stems)) != len(stems):
            dup = next(s for s in stems if stems.count(s) > 1)
            raise UsageError(f"two inputs would both be written to {output / dup}; encode them separately")
    else:
        targets = [(inputs[0], output)]
    rank, world = _dist_rank()
    targets = targets[rank::world]
    if not targets:
        return
    if world > 1 and device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}" if _cuda_available() else "cpu"
    m = load_model(model, device=device)
    for src, dst in targets:
        with _progress(quiet or as_json, f"encode {src.name}") as cb:
            summary = encode_file(
                src, dst, m, chunk_frames=chunk_frames, fps=fps, size=size, crop=crop, start=start,
                duration=duration, max_frames=max_frames, latent_dtype=parse_latent_dtype(latent_dtype),
                segment_frames=segment_frames, audio=not no_audio, force=force, progress=cb, tile=tile,
                tile_overlap=tile_overlap, clip_overlap=clip_overlap, psnr=psnr,
            )  # fmt: skip
        if world > 1:
            summary["rank"] = rank
        _summary(summary, as_json, quiet, f"encoded {src.name}")


def _dist_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by torchrun."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as e:
        raise UsageError(f"RANK/WORLD_SIZE must be integers ({e})") from e
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"invalid RANK={rank} for WORLD_SIZE={world}")
    return rank, world


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@app.command("decode")
def decode_cmd(
    src: Path = typer.Argument(..., help="A .vtok file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4 (or a folder with --format png)."),
    weights: str | None = typer.Option(
        None, "--weights", help="Decode with these weights instead of the file's model."
    ),
    crf: int = typer.Option(18, "--crf", help="x264 quality (lower is better)."),
    preset: str = typer.Option("medium", "--preset", help="x264 preset."),
    start_frame: int = typer.Option(0, "--start-frame", help="First frame to decode."),
    frames: int | None = typer.Option(None, "--frames", help="Number of frames to decode."),
    fmt: str = typer.Option("mp4", "--format", help="mp4 or png."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Drop the stored audio."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda ..."),
    tile: int | None = typer.Option(
        None, "--tile", help="Decode overlapping spatial tiles of this many pixels (large frames)."
    ),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", help="Pixels shared by neighbouring tiles (default: a quarter tile)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Decode a .vtok file back into video."""
    from .codec import decode_file

    with _progress(quiet or as_json, f"decode {src.name}") as cb:
        summary = decode_file(
            src, output, weights=weights, crf=crf, preset=preset, start_frame=start_frame, frames=frames,
            fmt=fmt, audio=not no_audio, force=force, device=device, progress=cb, tile=tile,
            tile_overlap=tile_overlap,
        )  # fmt: skip
    _summary(summary, as_json, quiet, f"decoded {src.name}")


@app.command("info")
def info_cmd(
    src: Path = typer.Argument(..., help="A .vtok file."),
    as_json: bool = typer.Option(False, "--json", help="Print header and statistics as JSON."),
) -> None:
    """Show a .vtok file's header, records, bits per token and bits per pixel (verifies every checksum)."""
    from .vtok import VtokReader

    reader = VtokReader(src)
    reader.verify()
    info = {"header": reader.header, "stats": reader.stats()}
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    h = reader.header
    flat = {
        "model": h["model"]["card"], "mode": h["mode"],
        "source": f"{h['source']['width']}x{h['source']['height']}, {h['source']['frame_count']} frames @ "
        f"{h['source']['fps'][0]}/{h['source']['fps'][1]} fps",
        "latent": f"{h['latent']['channels']}ch {h['latent']['height']}x{h['latent']['width']} ({h['latent']['dtype']})",
        **{k: v for k, v in info["stats"].items() if not isinstance(v, (dict, list))},
    }  # fmt: skip
    _summary(flat, False, False, str(src))


# ----------------------------------------------------------------------------- train


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: str | None = typer.Option(
        None, "--data", help="Folder of videos (recursive) or CSV with a 'videos' column."
    ),
    out: str | None = typer.Option(None, "--out", "-o", help="Run directory (checkpoints, log.jsonl)."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Architecture to train from scratch: card TOML, official YAML or zoo name.",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Fine-tune these weights: zoo name, weights file or run directory."
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start from a run directory (weights, discriminator, log-variance), e.g. stage 2; or 'trivial' (with --config): weights that compute the trivial codec, a warm start for small models.",
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    val: str | None = typer.Option(None, "--val", help="Validation videos (folder or CSV): PSNR/SSIM."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder the CSV paths are relative to."),
    name: str | None = typer.Option(None, "--name", help="Model card name of the result."),
    size: int = typer.Option(256, "--size", help="Clip side: short side resized, then a square crop."),
    resize: str | None = typer.Option(
        None, "--resize", help="Short side before cropping: N, or MIN-MAX drawn per clip (default --size)."
    ),
    frames: int = typer.Option(17, "--frames", help="Frames per clip (1 + 4k for causal 4x models)."),
    fps: float = typer.Option(3.0, "--fps", help="Sampling frame rate of training clips (0: every frame)."),
    val_fps: float = typer.Option(
        8.0, "--val-fps", help="Sampling frame rate of validation clips (0: every frame)."
    ),
    val_size: int | None = typer.Option(None, "--val-size", help="Validation clip side (default --size)."),
    val_frames: int | None = typer.Option(
        None, "--val-frames", help="Validation clip length (default --frames)."
    ),
    val_videos: int = typer.Option(16, "--val-videos", help="Validation videos used (one clip each)."),
    crop: str = typer.Option("random", "--crop", help="random or center crop of training clips."),
    steps: int = typer.Option(50000, "--steps", help="Optimiser steps in total."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Clips per step and process."),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default 1e-4 from scratch, 1e-5 fine-tuning)."
    ),
    disc_lr: float | None = typer.Option(
        None, "--disc-lr", help="Discriminator learning rate (default --lr)."
    ),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay."),
    warmup: int | None = typer.Option(
        None,
        "--warmup",
        help="Linear learning-rate warm-up steps, then cosine decay (default min(1000, steps/10)).",
    ),
    min_lr_ratio: float = typer.Option(0.1, "--min-lr-ratio", help="Final learning rate / peak."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimiser step."),
    clip_grad: float = typer.Option(20.0, "--clip-grad", help="Gradient-norm clipping (0: off)."),
    ema: float = typer.Option(0.999, "--ema", help="EMA decay of the weights (0: off)."),
    perceptual_weight: float = typer.Option(1.0, "--perceptual-weight", help="LPIPS weight (0: no LPIPS)."),
    lpips_weights: str | None = typer.Option(
        None, "--lpips-weights", help="Folder with the LPIPS VGG16 weights."
    ),
    disc_start: int = typer.Option(10000, "--disc-start", help="Step at which the GAN loss starts."),
    disc_weight: float = typer.Option(0.2, "--disc-weight", help="GAN weight (times the adaptive weight)."),
    disc_loss: str = typer.Option("hinge", "--disc-loss", help="Discriminator loss: hinge or vanilla."),
    gen_loss: str = typer.Option(
        "non-saturating", "--gen-loss", help="Generator GAN loss: non-saturating or hinge."
    ),
    disc_dim: str = typer.Option("2d", "--disc-dim", help="PatchGAN on frames (2d) or clips (3d)."),
    disc_layers: int = typer.Option(3, "--disc-layers", help="PatchGAN depth."),
    lecam_weight: float = typer.Option(0.005, "--lecam-weight", help="LeCam regularisation weight."),
    learn_logvar: bool = typer.Option(
        True, "--learn-logvar/--fixed-logvar", help="Learn the output log-variance."
    ),
    kl_weight: float = typer.Option(1e-6, "--kl-weight", help="KL weight (KL models)."),
    kl_warmup: int | None = typer.Option(
        None, "--kl-warmup", help="KL warm-up steps (default 2000 from scratch)."
    ),
    posterior_logvar_init: float | None = typer.Option(
        None, "--posterior-logvar-init", help="Initial encoder log-variance (default -6 for KL from scratch)."
    ),
    posterior_logvar_max: float | None = typer.Option(
        None, "--posterior-logvar-max", help="Clamp the encoder log-variance to at most this in training."
    ),
    mean_steps: int = typer.Option(
        0, "--mean-steps", help="Decode the posterior mean (no sampling, no KL) first."
    ),
    entropy_weight: float = typer.Option(0.1, "--entropy-weight", help="FSQ entropy weight."),
    entropy_annealing_steps: int = typer.Option(
        2000, "--entropy-annealing-steps", help="FSQ entropy annealing."
    ),
    entropy_annealing_factor: float = typer.Option(
        3.0, "--entropy-annealing-factor", help="Initial entropy factor."
    ),
    commitment_weight: float = typer.Option(0.25, "--commitment-weight", help="FSQ commitment weight."),
    freeze_encoder: bool = typer.Option(
        False, "--freeze-encoder", help="Train the decoder only (tokens unchanged)."
    ),
    freeze_decoder: bool = typer.Option(False, "--freeze-decoder", help="Train the encoder only."),
    grad_checkpointing: bool = typer.Option(
        False, "--grad-checkpointing", help="Recompute activations (less memory)."
    ),
    save_every: int = typer.Option(5000, "--save-every", help="Checkpoint every N steps."),
    val_every: int = typer.Option(2000, "--val-every", help="Validate every N steps."),
    log_every: int = typer.Option(10, "--log-every", help="Log every N steps."),
    stop_at: int | None = typer.Option(
        None, "--stop-at", help="Stop (with a checkpoint) at this step; resume later."
    ),
    workers: int = typer.Option(4, "--workers", help="DataLoader worker processes per training process."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda ..."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16."
    ),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard logs."),
    force: bool = typer.Option(
        False, "--force", "-f", help="Start over in a run directory that holds a run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output or summary."),
) -> None:
    """Train or fine-tune a VidTok tokenizer (one process, or many under torchrun)."""
    from .train.config import TrainConfig
    from .train.trainer import resume_config, train

    options = {k: v for k, v in ctx.params.items() if k != "as_json"}
    options["fps"] = fps or None
    options["val_fps"] = val_fps or None
    options["quiet"] = quiet or as_json  # --json: stdout holds the summary only
    if resume:
        # options given now override the run's own; the others keep the values the run was started with
        given = {
            k: v
            for k, v in options.items()
            if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        }
        if as_json:
            given["quiet"] = True
        cfg = resume_config(resume, **given)
    else:
        cfg = TrainConfig(**options)
    summary = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        _summary(summary, as_json, quiet, "training finished")


# ----------------------------------------------------------------------------- bench


@app.command("bench")
def bench_cmd(
    inputs: list[Path] = typer.Argument(
        ..., help="Videos, folders (searched recursively) or CSV files with a 'videos' column."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Zoo name, weights file or run directory."),
    protocol: str = typer.Option(
        "vidtok",
        "--protocol",
        help="vidtok: the paper's (30 fps sampling, 256x256 centre crop, 17/16-frame clips, fp32); "
        "custom: set --fps/--size/--frames/--crop/--dtype.",
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
    rd: str | None = typer.Option(None, "--rd", help="Rate-distortion against codecs: x264,x265."),
    crf: str = typer.Option("18,23,28,33,38,43,48", "--crf", help="CRF sweep of --rd."),
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
    dtype: str = typer.Option("fp32", "--dtype", help="custom: fp32, bf16 or fp16 (autocast)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    identity: bool = typer.Option(False, "--identity", hidden=True, help="Bench reconstruction = input."),
    baseline: bool = typer.Option(
        False,
        "--baseline",
        help="Bench the trivial codec (every 4th frame, 8x bilinear down/up) instead of a model.",
    ),
) -> None:
    """Measure reconstruction quality (PSNR, SSIM, LPIPS, FVD), speed, memory and rate, by the paper's protocol.

    Ctrl-C stops early and prints (and writes) the results gathered so far.
    """
    from .bench import BENCH_METRICS, BenchConfig, IdentityModel, collect_videos, run_bench
    from .bench_report import print_report
    from .loading import load_model, resolve_device

    custom = {"--fps": fps, "--size": size, "--frames": frames, "--crop": crop,
              "--dtype": None if dtype.lower() in ("fp32", "float32") else dtype}  # fmt: skip
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
        if out.exists() and not force:
            raise UsageError(f"{out} exists; pass --force to overwrite it")
    wanted = tuple(m.strip().lower() for m in metrics.split(",") if m.strip()) if metrics else BENCH_METRICS
    cfg = BenchConfig(
        protocol=protocol,
        fps=30.0 if fps is None else (fps or None),
        size=256 if size is None else (size or None),
        crop=(crop or ("center" if size is None or size else "none")) == "center",
        frames=frames, long_video=long_video, metrics=wanted, strict_metrics=metrics is not None,
        lpips_weights=None if lpips_weights is None else str(lpips_weights),
        i3d_weights=None if i3d_weights is None else str(i3d_weights),
        max_clips=max_clips, dtype=dtype, device=device,
        rd_codecs=tuple(c for c in (rd or "").split(",") if c.strip()), rd_crfs=crf, rd_preset=preset,
        save_samples=None if save_samples is None else str(save_samples), force=force,
    )  # fmt: skip
    if cfg.rd_codecs:
        from .rd import parse_codecs, parse_crfs

        cfg.rd_codecs, cfg.rd_crfs = parse_codecs(cfg.rd_codecs), parse_crfs(crf)
    cfg.validate()
    videos = collect_videos(inputs)  # before loading a model: a wrong path is reported at once
    if identity:
        m = IdentityModel(device=str(resolve_device(device)))
    elif baseline:
        m = load_model("trivial", device=device)
    else:
        m = load_model(model, device=device)
    err = _console(stderr=True)
    show = not quiet and json_out != "-"
    with _bench_progress(not show) as cb:
        result = run_bench(videos, m, cfg, progress=cb)
    for note in result.notes:
        err.print(f"vidtok: warning: {note}", markup=False, highlight=False, soft_wrap=True)
    if show:
        print_report(result, _console())
    if json_out == "-":
        typer.echo(result.to_json())
    elif json_out:
        result.to_json(json_out, force=force)
    if csv_out is not None:
        result.to_csv(csv_out, force=force)
    if plot is not None and result.rd:
        from .rd import plot_rd

        plot_rd(
            result.rd, plot, force=force, title=f"{result.model.get('name')}: {result.protocol.get('name')}"
        )
    if result.partial:
        raise typer.Exit(130)


@contextmanager
def _bench_progress(quiet: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A clip-count progress bar with ETA on a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=_console(stderr=True),
    )  # fmt: skip
    task = bar.add_task("bench", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point: runs the app and turns vidtok errors into one-line messages."""
    try:
        app()
    except VidtokError as e:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("vidtok: error: ", "bold red"), str(e)))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _console(stderr=True).print("vidtok: interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the user gets one line; VIDTOK_DEBUG=1 shows the traceback
        if os.environ.get("VIDTOK_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        _console(stderr=True).print(
            f"vidtok: internal error: {type(e).__name__}: {first} (set VIDTOK_DEBUG=1 for the traceback)",
            markup=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
