"""The bench of motion-token models (``input_kind == "motion"``, Video-LaVIT): motion and frame quality.

Per video, each clip of the default plan (the whole video at 6 fps) is tokenized and decoded; scored on
the clip's valid frames:

- ``epe``: the mean end-point error (pixels per frame, at the source size) of the decoded motion against
  the extracted vectors (the tokenizer's input, before tokens), over frames 1..valid-1;
- PSNR / SSIM against the 6 fps source frames (the official frame choice) of four predictions from the
  clip's decoded key frame: ``tokens`` (warped by the decoded motion: what ``vidtok decode`` writes),
  ``extracted`` (warped by the extracted motion: the tokenizer's loss removed), ``repeat`` (the key frame
  repeated: the baseline), and ``key_frame`` (frame 0 alone: the key-frame model's quality).

Values are means over scored frames (frame-weighted). The frames are a motion-compensated prediction with
no residual, so quality falls with every frame: this measures the motion tokens, not a video codec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS = ("tokens", "extracted", "repeat")
NOTE = (
    "a key frame warped by motion with no residual: quality falls with every frame; a real codec (x264 at "
    "a similar rate) sends residuals and is far better; this measures the motion tokens, not a codec"
)


def run_motion_bench(
    videos: Sequence[str | Path], m: Any, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Scores the motion-token model ``m`` on ``videos``; returns ``{"videos": [...], "overall": {...},
    "note": ...}`` with ``epe`` and ``psnr`` / ``ssim`` per prediction (see the module doc)."""
    import torch

    rows = []
    totals: dict[str, list[float]] = {}
    done = 0
    with torch.inference_mode():
        for path in videos:
            values = _video(Path(path), m)
            rows.append({"video": Path(path).name, **{k: float(np.mean(v)) for k, v in values.items()}})
            for k, v in values.items():
                totals.setdefault(k, []).extend(v)
            done += 1
            if progress is not None:
                progress(done)
    overall = {k: float(np.mean(v)) for k, v in totals.items()}
    return {"model": getattr(m, "card", {}).get("name"), "videos": rows, "overall": overall, "note": NOTE}


def _video(path: Path, m: Any) -> dict[str, list[float]]:
    from ..frames import frames_to_tensor
    from ..motion import extract_clips
    from ..motion.extract import resample
    from ..motion_warp import end_point_error, motion_compensate, to_pixels
    from .scoring import score_frames

    source = (f.to_ndarray(format="rgb24") for f in resample(path))
    out: dict[str, list[float]] = {"epe": []}
    for clip in extract_clips(path):
        gt_frames = [next(source) for _ in range(clip.valid)]
        h, w = clip.key_frame.shape[:2]
        key = frames_to_tensor(clip.key_frame, device=m.device)[:, :, 0]
        enc = m.encode(clip.motion[None], key_frames=key)
        decoded_key = m.decode(enc.latents, only="key_frame", size=(h, w))[:, :, 0].float().cpu()
        flow = m.motion_pixels(enc.latents["motion_tokens"], h, w).float().cpu()[:, :, : clip.valid]
        ref = to_pixels(clip.motion[None, :, : clip.valid], h, w)
        if clip.valid > 1:
            out["epe"].extend([float(end_point_error(flow[:, :, 1:], ref[:, :, 1:]))] * (clip.valid - 1))
        preds = {
            "tokens": motion_compensate(decoded_key, flow),
            "extracted": motion_compensate(decoded_key, ref),
            "repeat": decoded_key.unsqueeze(2).expand(-1, -1, clip.valid, -1, -1),
        }
        gt = frames_to_tensor(np.stack(gt_frames))[0].transpose(0, 1).double().add(1).div(2)
        unit = {k: p[0].transpose(0, 1).clamp(-1, 1).double().add(1).div(2) for k, p in preds.items()}
        unit["key_frame"] = unit["repeat"][:1]
        scores = score_frames(gt, {k: v for k, v in unit.items() if k != "key_frame"}, ("psnr", "ssim"))
        scores["key_frame"] = score_frames(gt[:1], {"key_frame": unit["key_frame"]}, ("psnr", "ssim"))[
            "key_frame"
        ]
        for name, metric_values in scores.items():
            for metric, v in metric_values.items():
                out.setdefault(f"{metric}_{name}", []).extend(v.tolist())
    return out


def format_table(result: dict[str, Any]) -> str:
    """The bench as a plain-text table (one row per video and the overall means) with its note."""
    cols = ["epe"] + [f"{mt}_{p}" for mt in ("psnr", "ssim") for p in (*PREDICTIONS, "key_frame")]
    head = ["video", "EPE px"] + [
        f"{mt.upper()} {p}" for mt in ("psnr", "ssim") for p in (*PREDICTIONS, "key frame")
    ]
    lines = [" | ".join(head)]
    for row in [*result["videos"], {"video": "overall", **result["overall"]}]:
        cells = [row["video"]]
        for c in cols:
            v = row.get(c)
            cells.append("-" if v is None else (f"{v:.3f}" if c.startswith(("ssim", "epe")) else f"{v:.2f}"))
        lines.append(" | ".join(cells))
    lines.append(f"note: {result['note']}")
    return "\n".join(lines)
