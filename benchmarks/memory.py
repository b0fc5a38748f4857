"""Peak memory of `vidtok encode`/`decode` against video length, and spatial tiling quality.

Usage: python benchmarks/memory.py [--model NAME_OR_PATH] [--frames 65] [--size 256] [--tile 128]

1. Writes a synthetic 1x and a 4x longer video (moving textures, `--size` square), then runs
   `vidtok encode` and `vidtok decode` on each in a fresh subprocess and reads the child's peak RSS
   (getrusage). Prints the 4x/1x ratio for encode and decode (goal: <= 1.1: memory does not grow with
   the length of the video).
2. Encodes and decodes the 1x video with `--tile` and without, and prints the PSNR (dB) between the
   tiled and the untiled reconstruction, and of each against the source.

Without `--model`, a random-weight VidTok config of width `--ch` is used (memory does not depend on the
weight values; the tiling PSNR does, so pass real weights for a meaningful tiling number).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: int, size: int, fps: int = 30) -> None:
    """A moving, textured synthetic video (so that the codec and the model have real work)."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            dy, dx = (2 * i) % size, (3 * i) % size
            img = tex[dy : dy + size, dx : dx + size].copy()
            img[..., 0] = ((xx + yy + 4 * i) % 256).astype(np.uint8) // 2 + img[..., 0] // 2
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def run_child(args: list[str]) -> tuple[float, float]:
    """Runs `python -m vidtok_cli ARGS` and returns (peak RSS MiB of that child, seconds)."""
    code = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run([sys.executable, '-m', 'vidtok_cli', *sys.argv[1:]])\n"
        "if r.returncode: sys.exit(r.returncode)\n"
        "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
        "time.perf_counter() - t]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"vidtok {' '.join(args)} failed:\n{proc.stderr}")
    rss, secs = json.loads(proc.stdout.strip().splitlines()[-1])
    return rss, secs


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="zoo name or weights (default: random weights)")
    ap.add_argument("--ch", type=int, default=16, help="width of the random-weight model")
    ap.add_argument("--frames", type=int, default=129, help="frames of the 1x video")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--chunk-frames", type=int, default=8)
    ap.add_argument("--tile", type=int, default=64)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        model = args.model
        if model is None:
            import torch

            from vidtok_cli.arch import VidTokConfig, build_model
            from vidtok_cli.checkpoints import save_safetensors

            torch.manual_seed(0)
            cfg = VidTokConfig(ch=args.ch, z_channels=4)
            model = str(tmp / "random.safetensors")
            save_safetensors(
                build_model(cfg).state_dict(), model, {"vidtok.config": json.dumps(cfg.to_dict())}
            )
        common = ["--model", model, "--chunk-frames", str(args.chunk_frames), "-q"]
        print(
            f"model: {args.model or f'random VidTok ch={args.ch}'}; {args.size}x{args.size}, chunk {args.chunk_frames}"
        )
        rows = []
        for mult in (1, 4):
            n = args.frames * mult
            src = tmp / f"v{mult}.mp4"
            write_video(src, n, args.size)
            vt, out = tmp / f"v{mult}.vtok", tmp / f"v{mult}_rec.mp4"
            enc_rss, enc_s = run_child(["encode", str(src), "-o", str(vt), *common])
            dec_rss, dec_s = run_child(["decode", str(vt), "-o", str(out), "-q"])
            rows.append((n, enc_rss, dec_rss, enc_s, dec_s))
            print(
                f"{mult}x ({n:4d} frames): encode peak RSS {enc_rss:7.0f} MiB ({n / enc_s:5.2f} fr/s), "
                f"decode peak RSS {dec_rss:7.0f} MiB ({n / dec_s:5.2f} fr/s)"
            )
        print(
            f"peak RSS ratio 4x/1x: encode {rows[1][1] / rows[0][1]:.3f}, decode {rows[1][2] / rows[0][2]:.3f} "
            "(goal <= 1.1)"
        )

        src = tmp / "v1.mp4"
        results = {}
        for name, extra in (("untiled", []), ("tiled", ["--tile", str(args.tile)])):
            vt, out = tmp / f"{name}.vtok", tmp / f"{name}.mp4"
            t0 = time.perf_counter()
            e_rss, _ = run_child(["encode", str(src), "-o", str(vt), *common, *extra])
            d_rss, _ = run_child(["decode", str(vt), "-o", str(out), "-q", *extra, "--format", "mp4"])
            results[name] = (frames_of(out), e_rss, d_rss, time.perf_counter() - t0)
        ref = frames_of(src)
        u, t = results["untiled"][0], results["tiled"][0]
        print(
            f"tiling ({args.tile}px tiles, {args.tile // 4}px overlap): PSNR tiled vs untiled {psnr(t, u):.2f} dB; "
            f"vs source: untiled {psnr(u, ref):.2f} dB, tiled {psnr(t, ref):.2f} dB; "
            f"peak RSS encode {results['tiled'][1]:.0f} vs {results['untiled'][1]:.0f} MiB, "
            f"decode {results['tiled'][2]:.0f} vs {results['untiled'][2]:.0f} MiB"
        )


if __name__ == "__main__":
    main()
