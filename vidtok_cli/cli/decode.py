"""The ``vidtok decode`` command: a .vtok file back to video."""

from __future__ import annotations

from pathlib import Path

import typer

from ..runtime import COMPILE_MODE_HELP
from .app import app
from .console import console, frame_progress, plan_printer, print_summary


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
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16."
    ),
    tile: int | None = typer.Option(
        None, "--tile", help="Decode overlapping spatial tiles of this many pixels (large frames)."
    ),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", help="Pixels shared by neighbouring tiles (default: a quarter tile)."
    ),
    max_memory: str | None = typer.Option(
        None,
        "--max-memory",
        help="Pick the decoding chunk and --tile (if not given) so that decoding fits in this much memory, "
        "e.g. 4GiB, 512MiB (weights included).",
    ),
    only: str | None = typer.Option(
        None,
        "--only",
        help="Decode one stream group alone (models with groups, e.g. VidTwin: structure, dynamics).",
    ),
    dynamics_from: Path | None = typer.Option(
        None,
        "--dynamics-from",
        help="Take the 'dynamics' streams from this .vtok of the same model (cross-reenactment).",
    ),
    size: str | None = typer.Option(
        None, "--size", help="'source': scale a fixed-size model's frames back to the source video's size."
    ),
    view: str | None = typer.Option(
        None, "--view", help="Motion-token files: frames (default) or motion (the colour-coded motion field)."
    ),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the model (minutes of compilation; for long jobs)."
    ),
    compile_mode: str = typer.Option("auto", "--compile-mode", help=COMPILE_MODE_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Decode a .vtok file back into video."""
    from ..codec import decode_file

    with frame_progress(quiet or as_json, f"decode {src.name}") as cb:
        summary = decode_file(
            src, output, weights=weights, crf=crf, preset=preset, start_frame=start_frame, frames=frames,
            fmt=fmt, audio=not no_audio, force=force, device=device, progress=cb, tile=tile,
            tile_overlap=tile_overlap, precision=precision, only=only, size=size, view=view,
            streams_from=None if dynamics_from is None else (dynamics_from, "dynamics"), compile=compile_,
            compile_mode=compile_mode,
            max_memory=max_memory, on_plan=plan_printer(quiet),
        )  # fmt: skip
    if summary.get("warning") and not (quiet or as_json):
        console(stderr=True).print(f"vidtok: warning: {summary['warning']}", markup=False, highlight=False)
    print_summary(summary, as_json, quiet, f"decoded {src.name}")
