"""Encode/decode speed and peak memory of the clip models at full size: VidTwin and the Video-LaVIT motion tokenizer.

Usage: python benchmarks/clip_models.py [--models vidtwin,lavit] [--device cpu|cuda] [--batch 1] [--repeats 3]
       [--precision fp32|bf16|fp16] [--small] [--json]

Random weights built from the zoo cards' architecture (speed and memory do not depend on the weight values):
`vidtwin-structure-7-7-8-dynamics-7-8` (clips of 16x224x224 frames -> the three latent streams) and
`lavit-motion` (24-frame motion-vector clips on a 20x36 grid -> 135 tokens; the motion model only, not the key-frame
model or the motion-vector extraction). Each model runs in its own child process so that its peak memory
(peak RSS on CPU, peak allocated CUDA memory) is its own. Prints clips per second for encode and for decode
(median of ``--repeats`` rounds after one warm-up round), frames per second, and for LaVIT tokens per second.
``--small`` uses tiny configs of the same architectures and finishes in seconds (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

MODELS = {"vidtwin": "vidtwin-structure-7-7-8-dynamics-7-8", "lavit": "lavit-motion"}
SMALL = {
    "vidtwin": dict(
        input_size=(4, 32, 32), hidden_size=32, depth=1, num_heads=2, num_query_tokens=4, query_hidden_size=16,
        qformer_num_hidden_layers=1, qformer_num_attention_heads=2, qformer_intermediate_size=32, init_ch=8,
    ),
    "lavit": {"encoder": dict(dim=32, num_heads=2), "decoder": dict(dim=32, num_heads=2)},
}  # fmt: skip


def _config(model: str, small: bool) -> Any:
    """The card's architecture config, or its tiny variant."""
    import dataclasses

    from vidtok_cli.zoo import get_card

    cfg = get_card(MODELS[model]).config
    if not small:
        return cfg
    if model == "vidtwin":
        return dataclasses.replace(cfg, **SMALL["vidtwin"])
    parts = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in SMALL["lavit"].items()}
    return dataclasses.replace(cfg, **parts)


def _steps(
    model: str, cfg: Any, batch: int, device: Any
) -> tuple[Callable[[], Any], Callable[[Any], Any], dict]:
    """(encode(), decode(latent), facts) for one batch of random clips of ``model``."""
    import torch

    from vidtok_cli import families

    net = families.get(get_family(model)).build(cfg).eval().to(device)
    params = sum(p.numel() for p in net.parameters())
    if model == "vidtwin":
        t, h, w = cfg.input_size
        x = torch.rand(batch, cfg.in_channels, t, h, w, device=device) * 2 - 1

        def decode(e: Any) -> Any:
            return net.decode(e.structure, e.dynamics_x, e.dynamics_y)

        facts = {"clip": f"{t}x{h}x{w}", "frames_per_clip": t, "tokens_per_clip": None, "parameters": params}
        return (lambda: net.encode(x)), decode, facts
    t, h, w = cfg.input_shape
    x = torch.randn(batch, 2, t, h, w, device=device)
    facts = {
        "clip": f"2x{t}x{h}x{w} motion",
        "frames_per_clip": t,
        "tokens_per_clip": cfg.num_tokens,
        "parameters": params,
    }
    return (lambda: net.encode(x)[1]), net.decode_tokens, facts


def get_family(model: str) -> str:
    from vidtok_cli.zoo import get_card

    return get_card(MODELS[model]).family


def measure(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one model in this process and returns its numbers."""
    import torch

    device = torch.device(args.device)
    cfg = _config(model, args.small)
    encode, decode, facts = _steps(model, cfg, args.batch, device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    amp = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    enc_t, dec_t = [], []
    with torch.inference_mode(), amp:
        for i in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            z = encode()
            sync()
            t1 = time.perf_counter()
            decode(z)
            sync()
            t2 = time.perf_counter()
            if i:  # the first round is warm-up
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
    enc, dec = statistics.median(enc_t), statistics.median(dec_t)
    clips = args.batch
    out: dict[str, Any] = {
        "model": MODELS[model] + (" (small)" if args.small else ""),
        "device": str(device),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "batch": clips,
        **facts,
        "encode_s": enc,
        "decode_s": dec,
        "encode_clips_per_s": clips / enc,
        "decode_clips_per_s": clips / dec,
        "encode_frames_per_s": clips * facts["frames_per_clip"] / enc,
        "decode_frames_per_s": clips * facts["frames_per_clip"] / dec,
    }
    if facts["tokens_per_clip"]:
        out["encode_tokens_per_s"] = clips * facts["tokens_per_clip"] / enc
        out["decode_tokens_per_s"] = clips * facts["tokens_per_clip"] / dec
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def line(r: dict[str, Any]) -> str:
    """One human line of a result."""
    mem = f"peak CUDA {r['peak_cuda_mib']:.0f} MiB, " if "peak_cuda_mib" in r else ""
    tok = ""
    if "encode_tokens_per_s" in r:
        tok = f" / {r['encode_tokens_per_s']:.0f} and {r['decode_tokens_per_s']:.0f} tokens/s"
    return (
        f"{r['model']} {r['clip']} x{r['batch']} on {r['device']} ({r['precision']}, {r['threads']} threads, "
        f"{r['parameters'] / 1e6:.1f} M params): encode {r['encode_clips_per_s']:.3f} clips/s ({r['encode_s']:.2f} s), "
        f"decode {r['decode_clips_per_s']:.3f} clips/s ({r['decode_s']:.2f} s){tok}; "
        f"{r['encode_frames_per_s']:.1f} and {r['decode_frames_per_s']:.1f} frames/s; "
        f"{mem}peak RSS {r['peak_rss_mib']:.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="vidtwin,lavit", help="comma-separated: vidtwin, lavit")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    ap.add_argument("--batch", type=int, default=1, help="clips per encode/decode call")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    ap.add_argument("--small", action="store_true", help="tiny configs: a smoke test that takes seconds")
    ap.add_argument("--json", action="store_true", help="one JSON object per model instead of a line")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models or args.batch < 1 or args.repeats < 1:
        ap.error(f"--models takes {', '.join(MODELS)}; --batch and --repeats are >= 1")
    if args.child:
        print(json.dumps(measure(models[0], args)))
        return
    for m in models:
        argv = ["--models", m, "--device", args.device, "--precision", args.precision]
        argv += ["--batch", str(args.batch), "--repeats", str(args.repeats), "--child"]
        argv += ["--small"] if args.small else []
        child = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"{m}: {child.stderr.strip().splitlines()[-1] if child.stderr.strip() else 'failed'}")
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps(r) if args.json else line(r), flush=True)


if __name__ == "__main__":
    main()
