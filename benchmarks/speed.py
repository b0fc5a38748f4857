"""Encode/decode speed and peak memory of a full-size VidTok config (random weights: speed does not depend on them).

Usage: python benchmarks/speed.py [--model vidtok-kl-causal-488-4chn] [--frames 17] [--size 256] [--repeats 3]
Prints frames per second for encode and decode separately (warm-up excluded), the device and dtype.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from vidtok_cli.arch import build_model
from vidtok_cli.zoo import get_card


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vidtok-kl-causal-488-4chn")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    device = torch.device(args.device)
    card = get_card(args.model)
    model = build_model(card.config).eval().to(device)
    x = torch.rand(1, 3, args.frames, args.size, args.size, device=device) * 2 - 1
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    enc_t, dec_t = [], []
    with torch.no_grad(), amp:
        for i in range(args.repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            z = model.encode(x).latent
            sync(device)
            t1 = time.perf_counter()
            y = model.decode(z)
            sync(device)
            t2 = time.perf_counter()
            if i:  # the first round is warm-up
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
    assert y.shape == x.shape
    enc, dec = statistics.median(enc_t), statistics.median(dec_t)
    mem = (
        f"peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        if device.type == "cuda"
        else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print(
        f"{card.name} {args.frames}x{args.size}x{args.size} on {device} ({args.dtype}, {torch.get_num_threads()} threads): "
        f"encode {args.frames / enc:.2f} frames/s ({enc:.2f} s), decode {args.frames / dec:.2f} frames/s ({dec:.2f} s), {mem}"
    )


if __name__ == "__main__":
    main()
