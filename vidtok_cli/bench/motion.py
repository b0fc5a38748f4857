"""The bench of motion-token models (``input_kind == "motion"``, Video-LaVIT): rate, motion and frame quality.

Per video, the default plan (the whole video at 6 fps, or its first ``max_clips`` clips) is encoded into
a real motion-token file (``motion_codec.encode_motion_file``, in a scratch folder) and each clip is
decoded from that file, as ``vidtok decode`` does; scored on the clip's valid frames:

- rate: bits per pixel (6 fps frames x the source size) of the file's ``motion_tokens`` payloads, of its
  ``key_frame`` payloads, and of the whole file (header and index included);
- ``epe``: the mean end-point error (pixels per frame, at the source size) of the decoded motion against
  the extracted vectors (the tokenizer's input, before tokens), over frames 1..valid-1;
- PSNR / SSIM against the 6 fps source frames (the official frame choice) of four predictions from the
  clip's decoded key frame: ``tokens`` (warped by the decoded motion: what ``vidtok decode`` writes),
  ``extracted`` (warped by the extracted motion: the tokenizer's loss removed), ``repeat`` (the key frame
  repeated: the baseline), and ``key_frame`` (frame 0 alone: the key-frame model's quality);
- a real codec on the same 6 fps frames: each clip through x264 (``bench.rd.codec_round_trip``, a CRF
  sweep), and its PSNR at the motion-token file's rate (log-rate interpolation; None outside the sweep).

Values are means over scored frames (frame-weighted); rates are total bits over total pixels. The frames
are a motion-compensated prediction with no residual, so quality falls with every frame: this measures
the motion tokens, not a video codec.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .rd import DEFAULT_CRFS, DEFAULT_PRESET, RDAccumulator, interpolate_log_rate

PREDICTIONS = ("tokens", "extracted", "repeat")
NOTE = (
    "a key frame warped by motion with no residual: quality falls with every frame; this measures the "
    "motion tokens, not a codec"
)


def run_motion_bench(
    videos: Sequence[str | Path],
    m: Any,
    progress: Callable[[int], None] | None = None,
    *,
    max_clips: int | None = None,
    codecs: Sequence[str] = ("x264",),
    crfs: Sequence[int] = DEFAULT_CRFS,
    preset: str = DEFAULT_PRESET,
) -> dict[str, Any]:
    """Scores the motion-token model ``m`` on ``videos``; returns ``{"videos": [...], "overall": {...},
    "rd": [...], "note": ...}`` with the rates, ``epe``, ``psnr`` / ``ssim`` per prediction and
    ``psnr_<codec>`` at the file's rate (see the module doc). ``max_clips``: the first clips only."""
    import torch

    rows = []
    totals: dict[str, list[float]] = {}
    bits_total: dict[str, int] = {}
    rd_all = RDAccumulator(codecs, crfs, preset, "yuv420p")
    done = 0
    max_frames = None if max_clips is None else max_clips * _clip_frames()
    with tempfile.TemporaryDirectory(prefix="vidtok-bench-motion-") as tmp, torch.inference_mode():
        for path in videos:
            rd_video = RDAccumulator(codecs, crfs, preset, "yuv420p")
            values, bits = _video(Path(path), m, Path(tmp) / "v.vtok", max_frames, (rd_video, rd_all))
            row = {
                "video": Path(path).name,
                **_rates(bits),
                **{k: float(np.mean(v)) for k, v in values.items()},
            }
            rows.append({**row, **_codec_at_rate(rd_video, row["bpp_file"])})
            for k, v in values.items():
                totals.setdefault(k, []).extend(v)
            for k, b in bits.items():
                bits_total[k] = bits_total.get(k, 0) + b
            done += 1
            if progress is not None:
                progress(done)
    overall = {**_rates(bits_total), **{k: float(np.mean(v)) for k, v in totals.items()}}
    overall.update(_codec_at_rate(rd_all, overall.get("bpp_file", 0.0)))
    return {
        "model": getattr(m, "card", {}).get("name"),
        "max_clips": max_clips,
        "videos": rows,
        "overall": overall,
        "rd": rd_all.points(),
        "note": _note(overall, rd_all),
    }


def _clip_frames() -> int:
    from ..motion import CLIP_FRAMES

    return CLIP_FRAMES


def _rates(bits: dict[str, int]) -> dict[str, float]:
    pixels = bits.get("pixels", 0)
    if not pixels:
        return {}
    return {f"bpp_{k}": bits[k] / pixels for k in ("motion", "key_frame", "file")}


def _codec_at_rate(rd: RDAccumulator, bpp: float) -> dict[str, float | None]:
    """``psnr_<codec>`` / ``ssim_<codec>``: each codec's quality at ``bpp`` (None outside its sweep)."""
    out: dict[str, float | None] = {}
    points = rd.points()
    for codec in rd.codecs:
        for metric in ("psnr", "ssim"):
            curve = [(p["bpp"], p[metric]) for p in points if p["codec"] == codec]
            out[f"{metric}_{codec}"] = interpolate_log_rate(curve, bpp)
    return out


def _note(overall: dict[str, Any], rd: RDAccumulator) -> str:
    """The table's note: what is measured, and the real codec's numbers beside the file's."""
    parts = [NOTE]
    bpp, psnr = overall.get("bpp_file"), overall.get("psnr_tokens")
    for codec in rd.codecs:
        at = overall.get(f"psnr_{codec}")
        if bpp is None or psnr is None:
            continue
        if at is not None:
            parts.append(
                f"{codec} on the same 6 fps frames at the same rate ({bpp:.4f} bpp): {at:.2f} dB PSNR vs "
                f"{psnr:.2f} dB here ({at - psnr:+.2f} dB)"
            )
            continue
        curve = sorted((p["bpp"], p["psnr"], p["crf"]) for p in rd.points() if p["codec"] == codec)
        if curve:
            b, q, crf = curve[0] if bpp < curve[0][0] else curve[-1]
            parts.append(
                f"{codec} on the same 6 fps frames, outside its CRF sweep at this rate ({bpp:.4f} bpp); its "
                f"nearest point (CRF {crf}): {b:.4f} bpp, {q:.2f} dB PSNR vs {psnr:.2f} dB here"
            )
    return "; ".join(parts)


def _video(
    path: Path, m: Any, scratch: Path, max_frames: int | None, rds: Sequence[RDAccumulator]
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-frame scores of one video and the bits of its motion-token file (and its pixel count)."""
    from .. import vtok
    from ..file_meta import DEFAULT_LATENT_BITS
    from ..motion import extract_clips
    from ..motion.extract import resample
    from ..motion_codec import chunk_latents, encode_motion_file
    from ..motion_warp import end_point_error, motion_compensate, to_pixels
    from .rd import codec_round_trip
    from .scoring import score_frames

    summary = encode_motion_file(
        path, scratch, m, force=True, max_frames=max_frames, latent_bits=DEFAULT_LATENT_BITS
    )  # the file `vidtok encode` writes
    reader = vtok.VtokReader(scratch)
    streams = reader.stats()["streams"]
    bits = {
        "motion": int(streams["motion_tokens"]["bits"]),
        "key_frame": int(streams["key_frame"]["bits"]),
        "file": 8 * int(summary["file_bytes"]),
        "pixels": int(summary["frames"]) * int(summary["width"]) * int(summary["height"]),
    }
    source = (f.to_ndarray(format="rgb24") for f in resample(path, max_frames=max_frames))
    out: dict[str, list[float]] = {"epe": []}
    clips = extract_clips(path, max_frames=max_frames)
    for clip, chunk in zip(clips, reader.iter_chunks(), strict=True):
        gt_frames = np.stack([next(source) for _ in range(clip.valid)])
        h, w = clip.key_frame.shape[:2]
        lat = {k: v.to(m.device) for k, v in chunk_latents(chunk, m.latent_specs).items()}
        decoded_key = m.decode(lat, only="key_frame", size=(h, w))[:, :, 0].float().cpu()
        flow = m.motion_pixels(lat["motion_tokens"], h, w).float().cpu()[:, :, : clip.valid]
        ref = to_pixels(clip.motion[None, :, : clip.valid], h, w)
        if clip.valid > 1:
            out["epe"].extend([float(end_point_error(flow[:, :, 1:], ref[:, :, 1:]))] * (clip.valid - 1))
        preds = {
            "tokens": motion_compensate(decoded_key, flow),
            "extracted": motion_compensate(decoded_key, ref),
            "repeat": decoded_key.unsqueeze(2).expand(-1, -1, clip.valid, -1, -1),
        }
        gt = _unit(gt_frames)
        unit = {k: p[0].transpose(0, 1).clamp(-1, 1).double().add(1).div(2) for k, p in preds.items()}
        scores = score_frames(gt, unit, ("psnr", "ssim"))
        scores["key_frame"] = score_frames(gt[:1], {"key_frame": unit["repeat"][:1]}, ("psnr", "ssim"))[
            "key_frame"
        ]
        for name, metric_values in scores.items():
            for metric, v in metric_values.items():
                out.setdefault(f"{metric}_{name}", []).extend(v.tolist())
        for codec in rds[0].codecs:
            for crf in rds[0].crfs:
                coded = codec_round_trip(gt_frames, codec, crf, preset=rds[0].preset, fps=6)
                values = score_frames(gt, {"c": _unit(coded.frames)}, ("psnr", "ssim"))["c"]
                for rd in rds:
                    rd.add(codec, crf, coded, values, video=path.name, clip=clip.start)
    return out, bits


def _unit(frames: np.ndarray) -> Any:
    """uint8 (T, H, W, 3) frames as float64 (T, 3, H, W) in [0, 1], as ``score_frames`` takes them."""
    from ..frames import frames_to_tensor

    return frames_to_tensor(frames)[0].transpose(0, 1).double().add(1).div(2)


def columns(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, heading) of the table's value columns, in order."""
    codecs = [k.removeprefix("psnr_") for k in result["overall"] if k.startswith("psnr_")]
    codecs = [c for c in codecs if c not in (*PREDICTIONS, "key_frame")]
    cols = [("bpp_motion", "bpp motion"), ("bpp_key_frame", "bpp key frame"), ("bpp_file", "bpp file")]
    cols.append(("epe", "EPE px"))
    for mt in ("psnr", "ssim"):
        cols += [(f"{mt}_{p}", f"{mt.upper()} {p.replace('_', ' ')}") for p in (*PREDICTIONS, "key_frame")]
        cols += [(f"{mt}_{c}", f"{mt.upper()} {c} same rate") for c in codecs]
    return cols


def _cell(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if key.startswith("bpp"):
        return f"{v:.4f}"
    return f"{v:.3f}" if key.startswith(("ssim", "epe")) else f"{v:.2f}"


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows (each video, then ``overall``) as dicts of ``video`` and the value columns."""
    keys = [k for k, _ in columns(result)]
    return [
        {"video": row["video"], **{k: row.get(k) for k in keys}}
        for row in [*result["videos"], {"video": "overall", **result["overall"]}]
    ]


def format_table(result: dict[str, Any]) -> str:
    """The bench as a plain-text table (one row per video and the overall means) with its note."""
    cols = columns(result)
    lines = [" | ".join(["video"] + [h for _, h in cols])]
    for row in table_rows(result):
        lines.append(" | ".join([row["video"]] + [_cell(k, row[k]) for k, _ in cols]))
    lines.append(f"note: {result['note']}")
    return "\n".join(lines)


def to_csv(result: dict[str, Any]) -> str:
    """The table as CSV (header line; one line per video and ``overall``; empty cells for None)."""
    import csv
    import io

    buf = io.StringIO()
    rows = table_rows(result)
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()
