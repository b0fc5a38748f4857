"""One run that measures vidtok's speed: the model (fp32, bf16, compiled), the official code beside it,
and the whole file pipeline (how busy the model is). Prints a Markdown table (``--json`` for JSON).

    python benchmarks/perf.py --quick                         # CI smoke run: tiny default model, seconds
    python benchmarks/perf.py                                 # full-size model rows (minutes on a CPU)
    python benchmarks/perf.py --shape 1x3x17x256x256 --compile --video long.mp4 --max-frames 240
    python benchmarks/perf.py --official-python VENV/bin/python --official-ref CHECKOUT \\
        --official-harness ../shared/official-bench              # + vidtok vs official, same weights

Model rows: random weights of a zoo config (speed does not depend on them); frames/s of encode and of
decode (warm-up excluded, median of ``--repeats``), peak memory (CUDA: allocator peak; CPU: the
process's peak RSS so far), FLOPs per frame counted from the model (torch.utils.flop_counter) and, on
CUDA, the achieved fraction of the GPU's dense bf16 peak. The official comparison needs the official
code, its own venv and the harness (time_official.py) and is skipped with a note otherwise. The
pipeline row encodes and decodes ``--video`` through encode_file/decode_file and reports the fraction
of wall time the model's parts were computing.
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
from pathlib import Path
from typing import Any

import torch

from vidtok_cli.arch import build_model
from vidtok_cli.zoo import get_card

# dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, for the achieved fraction
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "4090": 165.0}


QUICK_MODEL = "vidtok-default-kl"
QUICK_SHAPE = "1x3x5x32x32"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
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
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
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
    keys = list(rows[0])
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
    ap.add_argument("--compile", action="store_true", help="also a torch.compile'd row (minutes on CPU)")
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
    if a.threads:
        torch.set_num_threads(a.threads)
    from vidtok_cli.runtime import compile_model, reuse_freed_memory

    reuse_freed_memory()
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(get_card(a.model).config).eval().to(device)
    x = torch.rand(*(int(v) for v in a.shape.split("x")), device=device) * 2 - 1
    enc_f, dec_f = count_flops(model, x)
    rows = []
    for p in a.precisions.split(","):
        rows.append(model_row(model, x, p, None if p == "fp32" else torch.bfloat16, a.repeats))
    if a.compile:
        from types import SimpleNamespace

        compile_model(SimpleNamespace(module=model))
        rows.append(model_row(model, x, "fp32+compile", None, a.repeats))
    frames = x.shape[0] * x.shape[2]
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if cuda and k in torch.cuda.get_device_name()), None)
    for r in rows:
        r["gflop_per_frame"] = (enc_f + dec_f) / frames / 1e9
        achieved = (enc_f / r["encode_s"] + dec_f / r["decode_s"]) / 2 / 1e12
        r["bf16_peak_fraction"] = achieved / peak if peak and device.type == "cuda" else "n/a (no CUDA)"
    result: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "model": a.model,
                              "shape": a.shape, "model_rows": rows}  # fmt: skip
    result["official"] = official_rows(a, torch.get_num_threads())
    if a.video:
        result["pipeline"] = [pipeline_row(a.video, a.max_frames, a.chunk_frames)]
    if a.json:
        json.dump(result, sys.stdout, indent=1, default=str)
        print()
        return
    print(f"{a.model} on {device} ({torch.get_num_threads()} threads), input {a.shape}\n")
    print(table(rows))
    off = result["official"]
    print("\nofficial: " + off if isinstance(off, str) else "\n" + table(off))
    if a.video:
        print("\n" + table(result["pipeline"]))


if __name__ == "__main__":
    main()
