"""Motion-token files: a video -> .vtok (key frame + motion tokens per clip) -> frames by motion compensation.

For models whose ``input_kind`` is ``"motion"`` (Video-LaVIT, ``families/lavit.py``); ``codec.encode_file``
and ``codec.decode_file`` hand such models to this module. Decisions:

- Encode: ``motion.extract_clips`` (the 6 fps MPEG-4 re-encode, its motion vectors, a clip plan) feeds the
  model one clip at a time: each clip is one chunk holding every stream of the model (``motion_tokens``
  and ``key_frame``). Chunks are contiguous in *decoded* frames: clip i covers the frames after the valid
  frames of clips 0..i-1; the header's ``motion`` section records where each clip lies in the 6 fps stream
  (``key_frame_indices``, ``valid_frames``), the plan, the resize variant, the source's size and frame
  rate, and the key-frame model (card, family, weights sha256). The file's frame rate is 6 fps and its
  frame count the sum of the clips' valid frames. No audio (the clips of the official plan have gaps).
  ``start`` / ``duration`` / ``max_frames`` encode a part: the source is trimmed before the 6 fps step
  (``motion.extract_clips``), so the part is extracted as a whole file would be; the header's
  ``motion.window`` records them.
- Decode: each clip's frames from ``model.decode`` (the key frame warped by the decoded motion), its valid
  frames only, at the source's size. ``view="motion"`` writes the motion field as colours instead, with
  one maximum magnitude for the whole video (a first pass over the motion tokens finds it);
  ``only="key_frame"`` repeats each clip's decoded key frame.
- The key-frame model is found like any other weights (``loading.load_for_file``: sha256, recorded file,
  card).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import hub, video, vtok
from .errors import UsageError, VidtokError

Progress = Callable[[int], None]

SECTION = "motion"  # the header section of motion-token files
VIEWS = ("frames", "motion")


def _is_motion_model(m: Any) -> bool:
    return getattr(m, "input_kind", "frames") == "motion"


def refuse_options(given: dict[str, bool], what: str) -> None:
    """UsageError naming the options (``{"--fps": True, ...}``: given) a motion-token model cannot honour."""
    bad = [k for k, v in given.items() if v]
    if bad:
        raise UsageError(f"{', '.join(bad)}: not for {what} (clips of 24 frames at 6 fps, the source's size)")


def encode_motion_file(
    src: Path,
    dst: Path,
    m: Any,
    *,
    clips: str = "default",
    resize: str = "tv016",
    keyframe_model: Any = None,
    latent_dtype: str = "float16",
    latent_bits: int = 0,
    force: bool = False,
    device: Any = "auto",
    progress: Progress | None = None,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Encodes ``src`` with the motion-token model ``m`` into ``dst`` (see the module doc); returns a summary.

    ``clips``: the clip plan (``default``: the whole video; ``official``: the official sampler).
    ``keyframe_model``: a loaded model or a name / path for key frames (default: the model's own default).
    ``start`` / ``duration`` / ``max_frames``: a part of the source (``motion.extract_clips``): seconds
    trimmed before the 6 fps step, at most ``max_frames`` 6 fps frames; recorded in the header.
    """
    import torch

    from .file_meta import encoded_sizes, header_model_fields, header_streams, model_entry
    from .frames import frames_to_tensor
    from .loading import load_model
    from .motion import extract_clips

    t0 = time.perf_counter()
    if keyframe_model is not None:
        km = keyframe_model
        if isinstance(km, (str, os.PathLike)):
            km = load_model(km, device=device)
        if _is_motion_model(km):
            raise UsageError(
                f"--keyframe-model: {km.card.get('name', km.family)} is a motion model, not a frame model"
            )
        m.set_keyframe_model(km)
    km = m.keyframe_model
    window = {"start": start, "duration": duration, "max_frames": max_frames}
    given = {k: v for k, v in window.items() if v}
    clip_iter = extract_clips(src, plan=clips, resize=resize, **window)
    first = next(clip_iter, None)  # reads the video now: a bad file fails before any output exists
    if first is None:
        raise video.VideoError(f"{src}: no frames to encode")
    height, width = first.key_frame.shape[:2]
    factor = km.frame_layout.spatial_factor
    pad_h, pad_w = (-height) % factor, (-width) % factor
    src_info = video.probe(src)
    section = {
        "fps": 6,
        "clip_plan": clips,
        "resize": resize,
        "key_frame_indices": [],
        "valid_frames": [],
        "source_size": [src_info.width, src_info.height],
        "source_fps": [src_info.fps.numerator, src_info.fps.denominator],
        "keyframe_model": model_entry(km, with_config=True),
        **({"window": given} if given else {}),
    }
    header = vtok.make_header(
        **header_model_fields(m),
        streams=header_streams(m.latent_specs, height + pad_h, width + pad_w, latent_dtype, latent_bits),
        temporal_factor=m.frame_layout.temporal_factor,
        spatial_factor=m.frame_layout.spatial_factor,
        width=width,
        height=height,
        fps=6,
        pad=(0, pad_h, 0, pad_w),
        frames_per_record=m.frame_layout.clip_frames,
        causal=False,
        source_file=src.name,
        **{SECTION: section},
        **({"model_config": m.card["config"]} if isinstance(m.card.get("config"), dict) else {}),
    )
    for model in (m, km):
        if model.weights_path is not None:
            hub.record_weights(model.weights_path, model.weights_sha256)
    starts: list[int] = []
    valid: list[int] = []
    n_tokens = 0
    with vtok.VtokWriter(dst, header, force=force) as writer, torch.inference_mode():
        for clip in itertools.chain((first,), clip_iter):
            key = frames_to_tensor(clip.key_frame, device=m.device)[:, :, 0]
            enc = m.encode(clip.motion[None], key_frames=key)
            arrays = {name: _chunk_array(enc.latents[name], spec) for name, spec in m.latent_specs.items()}
            done = sum(valid)
            writer.write_chunk(arrays, done, done + clip.valid, len(starts))
            starts.append(clip.start)
            valid.append(clip.valid)
            n_tokens += sum(a.size for n, a in arrays.items() if m.latent_specs[n].discrete)
            if progress is not None:
                progress(sum(valid))
        n = sum(valid)
        writer.close(
            header_updates={
                "source": {"frame_count": n},
                SECTION: {"key_frame_indices": starts, "valid_frames": valid},
            }
        )
    sizes = encoded_sizes(dst, n, width, height, 6, n_tokens)
    elapsed = time.perf_counter() - t0
    return {
        "input": str(src),
        "output": str(dst),
        "model": header["model"]["card"],
        "keyframe_model": section["keyframe_model"]["card"],
        "mode": "motion tokens + key frames",
        "streams": list(m.latent_specs),
        "clip_plan": clips,
        **given,
        "clips": len(starts),
        "key_frame_indices": starts,
        **sizes,
        "seconds": elapsed,
        "frames_per_second": n / elapsed,
    }


def _chunk_array(latent: Any, spec: Any) -> np.ndarray:
    """One clip's latent (batch 1) as a chunk array: a clip-level stream keeps the batch axis as its step
    axis; a stream with a time axis drops it (its one step is on that axis)."""
    a = latent if spec.time_axis is None else latent[0]
    return a.cpu().numpy().astype(np.int64) if spec.discrete else a.float().cpu().numpy()


def attach_keyframe_model(m: Any, header: dict[str, Any], device: Any, where: str) -> None:
    """Loads the key-frame model a motion-token file records (by sha256, recorded file, card) into ``m``."""
    from .loading import load_for_file

    entry = (header.get(SECTION) or {}).get("keyframe_model")
    if not isinstance(entry, dict) or not entry.get("card"):
        raise VidtokError(f"{where}: the header names no key-frame model (not a motion-token file?)")
    km = load_for_file(
        entry["card"],
        entry.get("sha256") or "",
        weights_file=entry.get("weights_file") or None,
        weights_reference=entry.get("weights_reference") or None,
        device=device,
        where=f"{where} (its key frames)",
        config=entry.get("config"),
    )
    if km.family != entry.get("family", km.family):
        raise VidtokError(
            f"{where}: its key frames are {entry['family']} latents, {entry['card']} is {km.family}"
        )
    m.set_keyframe_model(km)


def decoded_motion_blocks(
    reader: vtok.VtokReader, m: Any, view: str = "frames", only: str | None = None
) -> Iterator[np.ndarray]:
    """uint8 (T, H, W, 3) frames of each clip of an open motion-token file, its valid frames only.

    ``view="motion"``: the colour-coded motion field (one colour scale over the file); ``only``: a stream
    group of the model (``motion`` is the same as ``view="motion"``; ``key_frame`` repeats the key frame).
    """
    import torch

    from .frames import tensor_to_frames

    if view not in VIEWS:
        raise UsageError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
    if only is not None and only not in m.stream_groups:
        raise UsageError(f"--only {only}: a {m.family} model has the parts {', '.join(m.stream_groups)}")
    if only == "motion":
        view, only = "motion", None
    if view == "motion" and only is not None:
        raise UsageError("--view motion and --only cannot be combined")
    h = reader.header
    size = (int(h["source"]["height"]), int(h["source"]["width"]))
    specs = m.latent_specs

    def chunks() -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        for c in reader.iter_chunks():
            yield chunk_latents(c, specs), c.end_frame - c.first_frame

    with torch.inference_mode():
        if view == "motion":
            top = max_motion_magnitude(m, (lat["motion_tokens"] for lat, _ in chunks()), size)
            for lat, n in chunks():
                yield tensor_to_frames(m.motion_view(lat, size, top))[:n]
            return
        for lat, n in chunks():
            out = m.decode(lat, only=only, size=size)
            frames = tensor_to_frames(out)
            if only == "key_frame":
                frames = np.repeat(frames[:1], n, axis=0)
            yield frames[:n]


def chunk_latents(chunk: Any, specs: Any) -> dict[str, Any]:
    """One clip's stored chunk as the model's latents (batch 1): the inverse of ``_chunk_array``."""
    import torch

    def batched(a: np.ndarray, spec: Any) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t if spec.time_axis is None else t[None]

    return {k: batched(a, specs[k]) for k, a in chunk.latents.items()}


def max_motion_magnitude(m: Any, tokens: Iterator[Any], size: tuple[int, int]) -> float:
    """The largest decoded motion (pixels per frame at ``size``) over clips of motion tokens (1, 135)."""
    top = 0.0
    for t in tokens:
        flow = m.motion_pixels(t, *size)
        top = max(top, float(flow.pow(2).sum(dim=1).sqrt().max()))
    return top


def decode_motion_file(
    src: Path,
    dst: Path,
    reader: vtok.VtokReader,
    m: Any,
    *,
    view: str = "frames",
    only: str | None = None,
    fmt: str = "mp4",
    crf: int = 18,
    preset: str = "medium",
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Decodes a motion-token file (see the module doc) into an MP4 or PNG frames; returns a summary."""
    from fractions import Fraction

    t0 = time.perf_counter()
    h = reader.header
    width, height = int(h["source"]["width"]), int(h["source"]["height"])
    fps = Fraction(*h["source"]["fps"])
    blocks = decoded_motion_blocks(reader, m, view, only)
    written = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal written
        for b in blocks:
            written += b.shape[0]
            if progress is not None:
                progress(written)
            yield b

    if fmt == "png":
        video.write_png_frames(dst, (f for b in counted() for f in b), start_index=0, force=force)
    else:
        with video.VideoWriter(dst, width, height, fps, crf=crf, preset=preset, force=force) as w:
            for b in counted():
                w.write(b)
    elapsed = time.perf_counter() - t0
    return {
        "input": str(src),
        "output": str(dst),
        "model": h["model"]["card"],
        "view": "motion" if view == "motion" or only == "motion" else "frames",
        **({"only": only} if only is not None else {}),
        "clips": len((h.get(SECTION) or {}).get("key_frame_indices") or []),
        "frames": written,
        "width": width,
        "height": height,
        "fps": float(fps),
        "seconds": elapsed,
        "frames_per_second": written / elapsed if elapsed else None,
    }
