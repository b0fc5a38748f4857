"""One run that measures vidtok's speed: the model (fp32, bf16, compiled), a chunked stream, the official
code beside it, and the whole file pipeline (how busy the model is). Prints Markdown tables (``--json``
for JSON).

    python benchmarks/perf.py --quick                         # CI smoke run: tiny default model, seconds
    python benchmarks/perf.py                                 # full-size model rows (minutes on a CPU)
    python benchmarks/perf.py --stream-size 1920x1080 --stream-frames 49 --compile   # the GPU run
    python benchmarks/perf.py --shape 1x3x17x256x256 --compile --video long.mp4 --max-frames 240
    python benchmarks/perf.py --official-python VENV/bin/python --official-ref CHECKOUT \\
        --official-harness ../shared/official-bench              # + vidtok vs official, same weights

Model rows: random weights of a zoo config (speed does not depend on them); frames/s of encode and of
decode (warm-up excluded, median of ``--repeats``), peak memory of the row (CUDA: allocator peak; CPU:
the process's peak RSS, reset before each row on Linux; freed heap stays mapped, so a row shows at
least what earlier rows left resident), FLOPs per frame counted from the model
(torch.utils.flop_counter) and, on CUDA, the achieved fraction of the GPU's dense bf16 peak.

Stream rows (JSON key ``stream``): a synthetic moving gradient (``--stream-size`` WxH,
``--stream-frames``, made frame by frame in a reader thread) through ``vidtok_cli.stream.encode_frames``
in chunks of ``--stream-chunk`` with the causal state carried, then ``decode_chunks``: the path ``vidtok
encode``/``decode`` take, on CUDA with pinned host memory and asynchronous copies; frames/s and peak
memory per precision (and compiled). Defaults: 1920x1080, 49 frames on CUDA; 256x144, 17 frames on a
CPU; 64x64, 17 frames with ``--quick``; one warm-up pass first on CUDA and when compiled.

The official comparison needs the official code, its own venv and the harness (time_official.py) and
is skipped with a note otherwise. The pipeline row encodes and decodes ``--video`` through
encode_file/decode_file and reports the fraction of wall time the model's parts were computing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidtok_cli import families
from vidtok_cli.arch import build_model
from vidtok_cli.zoo import get_card

# dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, for the achieved fraction
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "4090": 165.0}


QUICK_MODEL = "vidtok-default-kl"
QUICK_SHAPE = "1x3x5x32x32"
# stream rows: (size WxH, frames) with --quick, on CUDA, on a CPU
STREAM_DEFAULTS = {"quick": ("64x64", 17), "cuda": ("1920x1080", 49), "cpu": ("256x144", 17)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    """Starts a new peak: CUDA's allocator peak, or on Linux the process's peak RSS (VmHWM)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak since the process started


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """FLOPs of one encode and one decode of ``x``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        with FlopCounterMode(display=False) as enc:
            z = model.encode(x).latent
        with FlopCounterMode(display=False) as dec:
            model.decode(z)
    return enc.get_total_flops(), dec.get_total_flops()


def model_row(
    model: Any, x: torch.Tensor, label: str, amp: torch.dtype | None, repeats: int
) -> dict[str, Any]:
    device = x.device
    reset_peak_memory(device)
    enc_t, dec_t = [], []
    ctx = (
        torch.autocast(device.type, dtype=amp)
        if amp is not None
        else torch.autocast(device.type, enabled=False)
    )
    with torch.no_grad(), ctx:
        for i in range(repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            z = model.encode(x).latent
            sync(device)
            t1 = time.perf_counter()
            model.decode(z)
            sync(device)
            t2 = time.perf_counter()
            if i:  # the first round is warm-up (and compilation)
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
    frames = x.shape[0] * x.shape[2]
    enc, dec = statistics.median(enc_t), statistics.median(dec_t)
    return {"run": label, "encode_fps": frames / enc, "decode_fps": frames / dec, "encode_s": enc,
            "decode_s": dec, "peak_mib": peak_memory_mib(device)}  # fmt: skip


def moving_gradient(n: int, height: int, width: int) -> Iterator[np.ndarray]:
    """``n`` uint8 (H, W, 3) frames of a colour gradient moving 4 px right and 2 px down per frame."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], -1)
    base = base.astype(np.uint8)
    for t in range(n):
        yield np.roll(base, (2 * t, 4 * t), axis=(0, 1))


def stream_row(
    tok: Any, label: str, amp: torch.dtype | None, size: tuple[int, int], n: int, chunk: int, warmup: bool
) -> dict[str, Any]:
    """Encodes and decodes a synthetic stream chunk by chunk (``encode_frames``/``decode_chunks``)."""
    from vidtok_cli.frames import pinned_frames
    from vidtok_cli.prefetch import prefetch
    from vidtok_cli.stream import decode_chunks, encode_frames

    device = tok.device
    width, height = size

    def once() -> tuple[float, float, int]:
        frames = prefetch(pinned_frames(moving_gradient(n, height, width), device), depth=2 * chunk)
        with torch.no_grad():
            sync(device)
            t0 = time.perf_counter()
            chunks = list(encode_frames(tok, frames, chunk_frames=chunk, autocast_dtype=amp))
            sync(device)
            t1 = time.perf_counter()
            decoded = sum(block.shape[0] for _, block in decode_chunks(tok, chunks, autocast_dtype=amp))
            sync(device)
            return t1 - t0, time.perf_counter() - t1, decoded

    row: dict[str, Any] = {"run": label, "size": f"{width}x{height}", "frames": n, "chunk": chunk}
    try:
        if warmup:
            once()
        reset_peak_memory(device)
        enc, dec, decoded = once()
    except torch.OutOfMemoryError:  # e.g. fp32 at 1080p: report it and go on with the other rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {**row, "encode_fps": "out of memory", "peak_mib": peak_memory_mib(device)}
    return {**row, "encode_fps": n / enc, "decode_fps": decoded / dec, "encode_s": enc, "decode_s": dec,
            "peak_mib": peak_memory_mib(device)}  # fmt: skip


def official_rows(a: argparse.Namespace, threads: int) -> list[dict[str, Any]] | str:
    """vidtok vs the official code on the same weights and input, alternating; or why it was skipped."""
    harness = Path(a.official_harness or os.environ.get("VIDTOK_OFFICIAL_HARNESS", ""))
    ref = a.official_ref or os.environ.get("VIDTOK_REF", "")
    if not (a.official_python and ref and (harness / "time_official.py").is_file()):
        return ("skipped: needs --official-python (a venv with the official code's dependencies), "
                "--official-ref (an official checkout) and --official-harness (time_official.py)")  # fmt: skip
    from vidtok_cli.loading import load_model

    work = Path(tempfile.mkdtemp(prefix="vidtok-official-"))
    files = {k: str(work / f) for k, f in (("ckpt", "w.ckpt"), ("input", "x.pt"), ("output", "y.pt"))}
    cmd = [a.official_python, str(harness / "time_official.py"), "--config", a.official_config,
           "--shape", a.official_shape, "--runs", "1", "--threads", str(threads)]  # fmt: skip
    cmd += [f"--{k}={v}" for k, v in files.items()]
    env = {**os.environ, "VIDTOK_REF": ref}
    official, ours, diff = [], [], 0.0
    for _ in range(a.official_rounds):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        official.append(float(out.strip().splitlines()[-1].split()[1]))
        m = load_model(files["ckpt"], config=str(Path(ref) / "configs" / f"{a.official_config}.yaml")).module
        x, y_ref = torch.load(files["input"]), torch.load(files["output"])
        with torch.no_grad():
            m.decode(m.encode(x).latent)  # warm-up, as the harness does
            t = time.perf_counter()
            y = m.decode(m.encode(x).latent)
            ours.append(time.perf_counter() - t)
        diff = max(diff, (y[:, :, -x.shape[2] :] - y_ref).abs().max().item())
    o, v = statistics.median(official), statistics.median(ours)
    return [{"shape": a.official_shape, "official_s": o, "vidtok_s": v, "ratio": v / o, "max_abs_diff": diff,
             "rounds": a.official_rounds}]  # fmt: skip


def pipeline_row(video: str, max_frames: int | None, chunk_frames: int) -> dict[str, Any]:
    """Encodes and decodes ``video`` through the file API; the model's busy fraction of wall time."""
    from vidtok_cli.codec import decode_file, encode_file
    from vidtok_cli.loading import load_model

    tok = load_model(None, device="cpu")
    busy = [0.0]
    started: dict[int, float] = {}

    def pre(mod: torch.nn.Module, _args: Any) -> None:
        started[id(mod)] = time.perf_counter()

    def post(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        busy[0] += time.perf_counter() - started.pop(id(mod))

    for part in tok.module.children():
        part.register_forward_pre_hook(pre)
        part.register_forward_hook(post)
    work = Path(tempfile.mkdtemp(prefix="vidtok-pipeline-"))
    t = time.perf_counter()
    s = encode_file(
        video, work / "a.vtok", tok, chunk_frames=chunk_frames, max_frames=max_frames, audio=False
    )
    enc_wall, enc_busy = time.perf_counter() - t, busy[0]
    busy[0] = 0.0
    t = time.perf_counter()
    from unittest import mock

    with mock.patch("vidtok_cli.codec._load_for_file", lambda *args, **kw: tok):
        decode_file(work / "a.vtok", work / "b.mp4", audio=False)
    dec_wall, dec_busy = time.perf_counter() - t, busy[0]
    return {"video": Path(video).name, "frames": s["frames"], "encode_wall_s": enc_wall,
            "encode_busy": enc_busy / enc_wall, "decode_wall_s": dec_wall, "decode_busy": dec_busy / dec_wall}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every row's columns, in first-seen order
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke mode: the embedded default model ({QUICK_MODEL}), input {QUICK_SHAPE}, fp32 "
        "only, one repeat (seconds on a CPU); explicit --model/--shape/--precisions/--repeats win",
    )
    ap.add_argument("--model", help="zoo model (default: vidtok-kl-causal-488-4chn, the official size)")
    ap.add_argument("--shape", help="BxCxTxHxW (default: 1x3x17x256x256 on CUDA, 1x3x1x32x32 on CPU)")
    ap.add_argument("--repeats", type=int, help="timed repeats after one warm-up (default 2)")
    ap.add_argument("--device", default="cuda" if cuda else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    ap.add_argument("--precisions", help="comma-separated rows: fp32, bf16 (autocast) (default both)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile'd rows (minutes on CPU)")
    ap.add_argument("--compile-mode", default="auto", help="auto (reduce-overhead on CUDA), default, ...")
    ap.add_argument(
        "--stream-size", help="WxH of the stream rows (default 1920x1080 on CUDA, 256x144 on CPU)"
    )
    ap.add_argument(
        "--stream-frames", type=int, help="frames of the stream rows (49 on CUDA, 17 on CPU; 0: none)"
    )
    ap.add_argument("--stream-chunk", type=int, default=16, help="frames per chunk of the stream rows")
    ap.add_argument("--official-python")
    ap.add_argument("--official-ref")
    ap.add_argument("--official-harness")
    ap.add_argument("--official-config", default="vidtok_kl_causal_488_4chn")
    ap.add_argument("--official-shape", default="1x3x17x64x64")
    ap.add_argument("--official-rounds", type=int, default=3)
    ap.add_argument("--video", help="a video for the pipeline row (default model, CPU)")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--chunk-frames", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    defaults = (
        (QUICK_MODEL, QUICK_SHAPE, 1, "fp32")
        if a.quick
        else ("vidtok-kl-causal-488-4chn", "1x3x17x256x256" if cuda else "1x3x1x32x32", 2, "fp32,bf16")
    )
    a.model = a.model or defaults[0]
    a.shape = a.shape or defaults[1]
    a.repeats = a.repeats or defaults[2]
    a.precisions = a.precisions or defaults[3]
    stream_size, stream_frames = STREAM_DEFAULTS["quick" if a.quick else "cuda" if cuda else "cpu"]
    a.stream_size = a.stream_size or stream_size
    a.stream_frames = stream_frames if a.stream_frames is None else a.stream_frames
    if a.threads:
        torch.set_num_threads(a.threads)
    from vidtok_cli.runtime import compile_model, resolve_compile_mode, reuse_freed_memory

    reuse_freed_memory()
    device = torch.device(a.device)
    torch.manual_seed(0)
    card = get_card(a.model)
    model = build_model(card.config).eval().to(device)
    tok = families.for_config(card.config).wrap(model, card.to_dict())
    size = tuple(int(v) for v in a.stream_size.split("x"))
    factor = tok.frame_layout.spatial_factor
    if len(size) != 2 or size[0] % factor or size[1] % factor:
        raise SystemExit(f"--stream-size {a.stream_size}: WxH, both multiples of {factor}")
    x = torch.rand(*(int(v) for v in a.shape.split("x")), device=device) * 2 - 1
    enc_f, dec_f = count_flops(model, x)
    rows, streams = [], []
    stream = (size, a.stream_frames, a.stream_chunk)
    amps = {p: None if p == "fp32" else torch.bfloat16 for p in a.precisions.split(",")}
    for p, amp in amps.items():
        rows.append(model_row(model, x, p, amp, a.repeats))
    for p, amp in amps.items() if a.stream_frames else ():
        streams.append(stream_row(tok, p, amp, *stream, warmup=device.type == "cuda"))
    if a.compile:
        compile_model(tok, mode=a.compile_mode)
        label = f"fp32+compile ({resolve_compile_mode(a.compile_mode, device)})"
        rows.append(model_row(model, x, label, None, a.repeats))
        if a.stream_frames:
            streams.append(stream_row(tok, label, None, *stream, warmup=True))
    frames = x.shape[0] * x.shape[2]
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if cuda and k in torch.cuda.get_device_name()), None)
    for r in rows:
        r["gflop_per_frame"] = (enc_f + dec_f) / frames / 1e9
        achieved = (enc_f / r["encode_s"] + dec_f / r["decode_s"]) / 2 / 1e12
        r["bf16_peak_fraction"] = achieved / peak if peak and device.type == "cuda" else "n/a (no CUDA)"
    result: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "model": a.model,
                              "shape": a.shape, "model_rows": rows, "stream": streams}  # fmt: skip
    result["official"] = official_rows(a, torch.get_num_threads())
    if a.video:
        result["pipeline"] = [pipeline_row(a.video, a.max_frames, a.chunk_frames)]
    if a.json:
        json.dump(result, sys.stdout, indent=1, default=str)
        print()
        return
    print(f"{a.model} on {device} ({torch.get_num_threads()} threads), input {a.shape}\n")
    print(table(rows))
    if streams:
        w, h = size
        print(
            f"\nstream {w}x{h}, {a.stream_frames} frames, chunks of {a.stream_chunk} (encode_frames, decode_chunks)\n"
        )
        print(table(streams))
    off = result["official"]
    print("\nofficial: " + off if isinstance(off, str) else "\n" + table(off))
    if a.video:
        print("\n" + table(result["pipeline"]))


if __name__ == "__main__":
    main()
