"""The ``vidtok encode`` command: videos to .vtok files, shared out by rank under torchrun."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import UsageError
from ..runtime import COMPILE_MODE_HELP
from .app import app
from .console import frame_progress, plan_printer, print_summary


@app.command("encode")
def encode_cmd(
    inputs: list[Path] = typer.Argument(..., help="Video file(s) to encode."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output .vtok file, or a folder for several inputs."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Zoo name, weights file or run directory."),
    config: Path | None = typer.Option(
        None, "--config", help="Architecture of --model weights that carry none (official YAML/JSON, card)."
    ),
    clips: str | None = typer.Option(
        None, "--clips", help="Motion-token models: default (the whole video) or official (<= 8 clips)."
    ),
    keyframe_model: str | None = typer.Option(
        None, "--keyframe-model", help="Motion-token models: the model of the key frames (default model)."
    ),
    chunk_frames: int | None = typer.Option(
        None, "--chunk-frames", help="Frames per encoder step (memory vs speed; default 16)."
    ),
    max_memory: str | None = typer.Option(
        None,
        "--max-memory",
        help="Pick --chunk-frames and --tile (those not given) so that encoding and decoding fit in this "
        "much memory, e.g. 4GiB, 4G, 512MiB, 1.5GB (weights included).",
    ),
    fps: float | None = typer.Option(
        None,
        "--fps",
        help="Resample to this frame rate (default: source rate); fixed-size models (VidTwin) keep every "
        "round(source fps / fps)-th frame, default fps 30.",
    ),
    size: int | None = typer.Option(
        None, "--size", help="Resize the short side (bilinear + antialias); fixed-size models use their own."
    ),
    crop: bool = typer.Option(
        False, "--crop", help="Centre-crop a --size square instead of keeping the aspect."
    ),
    start: float = typer.Option(0.0, "--start", help="Start time in seconds."),
    duration: float | None = typer.Option(None, "--duration", help="Seconds to encode."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Encode at most this many frames."),
    latent_dtype: str = typer.Option(
        "float16",
        "--latent-dtype",
        help="float16, bfloat16 or float32: raw continuous latents (see --latent-bits).",
    ),
    latent_bits: int | None = typer.Option(
        None,
        "--latent-bits",
        help="Continuous latents: bits per value (2..16) of their quantization, rANS-coded; 0: raw floats "
        "(--latent-dtype). Default 6; raw when --latent-dtype is bf16 or fp32.",
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
    batch: int = typer.Option(
        1,
        "--batch",
        help="Models of independent clips (VidTwin, non-causal VidTok): clips run through the model this "
        "many at a time (same output; keeps a GPU busy).",
    ),
    psnr: bool = typer.Option(
        False, "--psnr", help="Decode the written file and report its PSNR against the input frames."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16."
    ),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the model (minutes of compilation; for long jobs)."
    ),
    compile_mode: str = typer.Option("auto", "--compile-mode", help=COMPILE_MODE_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Encode video(s) into .vtok files (latents or tokens); the default model when --model is not given.

    Under torchrun each process (RANK of WORLD_SIZE) encodes its share of the inputs.
    """
    from ..codec import encode_file
    from ..dtypes import parse_latent_dtype
    from ..file_meta import check_latent_bits
    from ..loading import load_model
    from ..runtime import check_compile_mode

    check_latent_bits(latent_bits, parse_latent_dtype(latent_dtype))
    check_compile_mode(compile_mode, compile_)

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
    m = load_model(model, config=config, device=device)
    if compile_:
        from ..runtime import compile_model

        compile_model(m, mode=compile_mode)
    for src, dst in targets:
        with frame_progress(quiet or as_json, f"encode {src.name}") as cb:
            summary = encode_file(
                src, dst, m, chunk_frames=chunk_frames, fps=fps, size=size, crop=crop, start=start,
                duration=duration, max_frames=max_frames, latent_dtype=parse_latent_dtype(latent_dtype),
                segment_frames=segment_frames, audio=not no_audio, force=force, progress=cb, tile=tile,
                tile_overlap=tile_overlap, clip_overlap=clip_overlap, psnr=psnr, precision=precision,
                clips=clips, keyframe_model=keyframe_model, latent_bits=latent_bits, batch=batch,
                max_memory=max_memory, on_plan=plan_printer(quiet),
            )  # fmt: skip
        if world > 1:
            summary["rank"] = rank
        print_summary(summary, as_json, quiet, f"encoded {src.name}")


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
