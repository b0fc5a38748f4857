"""File-level encode and decode: video file -> .vtok -> MP4 (or PNG frames), streaming end to end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import video, vtok
from .errors import UsageError, VidtokError

Progress = Callable[[int], None]


def _resolve_model(model: Any, device: Any) -> Any:
    from .loading import load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        return load_model(model, device=device)
    return model


def encode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: Any = None,
    *,
    chunk_frames: int = 16,
    fps: float | Fraction | None = None,
    size: int | None = None,
    crop: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    max_frames: int | None = None,
    latent_dtype: str = "float16",
    segment_frames: int | None = None,
    audio: bool = True,
    force: bool = False,
    device: Any = "auto",
    progress: Progress | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    clip_overlap: int = 0,
    psnr: bool = False,
) -> dict[str, Any]:
    """Encodes a video file into a .vtok file; returns a summary (frames, sizes, bits per pixel, time).

    ``psnr``: also decode the written file and add ``psnr`` (dB, mean over frames, 8-bit RGB, against
    the resized / cropped input frames) and ``psnr_min`` to the summary, like ffmpeg's ``-psnr``.

    ``model``: a loaded model, a zoo name, a weights path, or None for the default model.
    ``tile``/``tile_overlap``: encode overlapping spatial tiles of this many pixels (large frames).
    ``clip_overlap``: non-causal models only; consecutive 16-frame clips share this many frames, which
    decoding cross-fades.
    """
    from .frames import resize_frame
    from .stream import encode_frames

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists() and not force:
        raise VidtokError(f"{dst} exists; pass --force to overwrite it")
    if crop and not size:
        raise UsageError("--crop needs --size")
    if latent_dtype not in ("float16", "bfloat16", "float32"):
        raise UsageError(f"unknown latent dtype {latent_dtype!r}")
    if chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be >= 1, got {chunk_frames}")
    m = _resolve_model(model, device)
    layout = m.frame_layout
    from .stream import check_clip_overlap, check_segment_frames, check_tile

    check_segment_frames(segment_frames, m)
    check_clip_overlap(clip_overlap, m)
    if clip_overlap and segment_frames:
        raise UsageError("--clip-overlap and --segment-frames cannot be combined")
    check_tile(tile, tile_overlap, layout.spatial_factor)
    info = video.probe(src)
    out_fps = Fraction(fps).limit_denominator(1001) if fps else info.fps
    frames = video.iter_frames(src, fps=fps, start=start, duration=duration, max_frames=max_frames)
    first = next(frames, None)
    if first is None:
        raise video.VideoError(f"{src}: no frames to encode")
    first = resize_frame(first, size, crop)
    height, width = first.shape[:2]
    sf = layout.spatial_factor
    pad_h, pad_w = (-height) % sf, (-width) % sf

    def padded() -> Iterator[np.ndarray]:
        count = 0
        for f in _chain(first, frames):
            f = resize_frame(f, size, crop) if count else f
            if pad_h or pad_w:
                f = np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            count += 1
            if progress is not None:
                progress(count)
            yield f
        stats["frames"] = count

    stats: dict[str, Any] = {}
    audio_info, audio_packets = (None, iter(()))
    if audio and info.has_audio:
        audio_info, audio_packets = video.iter_audio_packets(src, start=start, duration=duration)
    (spec,) = m.latent_specs.values()
    lat_h, lat_w = spec.step_shape(height + pad_h, width + pad_w)[-2:]
    mode = "tokens" if spec.kind == "fsq" else "latent"
    card = m.card or {}
    header = vtok.make_header(
        model_card=str(card.get("name", "unknown")),
        weights_sha256=m.weights_sha256,
        family=m.family,
        mode=mode,
        latent_channels=spec.channels,
        latent_height=lat_h,
        latent_width=lat_w,
        temporal_factor=layout.temporal_factor,
        spatial_factor=sf,
        width=width,
        height=height,
        fps=out_fps,
        latent_dtype=latent_dtype,
        fsq_levels=list(spec.levels) if mode == "tokens" else None,
        pad=(0, pad_h, 0, pad_w),
        frames_per_record=chunk_frames,
        segment_frames=segment_frames,
        clip_overlap=clip_overlap,
        audio=None if audio_info is None else _audio_header(audio_info),
        weights_reference=str(card.get("weights_reference", "")),
        causal=layout.causal,
        source_file=src.name,
    )
    with vtok.VtokWriter(dst, header, force=force) as writer:
        n_tokens = 0
        chunks = encode_frames(
            m, padded(), chunk_frames=chunk_frames, segment_frames=segment_frames, tile=tile,
            tile_overlap=tile_overlap, clip_overlap=clip_overlap,
        )  # fmt: skip
        for chunk in chunks:
            if chunk.segment_start and segment_frames:
                writer.mark_segment(chunk.first_frame, chunk.first_latent)
            if mode == "tokens":
                assert chunk.indices is not None
                writer.write_tokens(
                    chunk.indices.numpy(), chunk.first_frame, chunk.end_frame, chunk.first_latent
                )
                n_tokens += chunk.indices.numel()
            else:
                writer.write_latents(
                    chunk.latent.numpy(), chunk.first_frame, chunk.end_frame, chunk.first_latent
                )
        for packet in audio_packets:
            writer.write_audio(packet.data, packet.pts, packet.dts, packet.duration)
        n = stats["frames"]
        from .stream import native_frame_count

        padded_count = n if segment_frames else native_frame_count(n, m)
        writer.close(
            header_updates={"source": {"frame_count": n}, "padding": {"frames_padded": padded_count - n}}
        )
    size_bytes = dst.stat().st_size
    elapsed = time.perf_counter() - t0
    pixels = n * width * height
    quality: dict[str, Any] = {}
    if psnr:
        try:
            source = (
                resize_frame(f, size, crop)
                for f in video.iter_frames(
                    src, fps=fps, start=start, duration=duration, max_frames=max_frames
                )
            )
            values = [
                frame_psnr(a, b)
                for block in _decoded_blocks(vtok.VtokReader(dst), m, 0, n, tile, tile_overlap)
                for a, b in zip(block, source, strict=False)
            ]
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        quality = {"psnr": float(np.mean(values)), "psnr_min": float(np.min(values))}
    return {
        "input": str(src),
        "output": str(dst),
        "model": header["model"]["card"],
        "mode": mode,
        "frames": n,
        "width": width,
        "height": height,
        "fps": float(out_fps),
        "duration_s": n / float(out_fps),
        "file_bytes": size_bytes,
        "bits_per_pixel": 8 * size_bytes / pixels,
        "bits_per_token": (8 * size_bytes / n_tokens) if n_tokens else None,
        "compression_ratio_vs_source": src.stat().st_size / size_bytes,
        "seconds": elapsed,
        "frames_per_second": n / elapsed,
        **quality,
    }


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _audio_header(info: video.AudioInfo) -> dict[str, Any]:
    d = info.to_dict()
    return {
        "codec": d["codec"],
        "sample_rate": d["sample_rate"],
        "channels": d["channels"],
        "layout": d.get("layout"),
        "time_base": list(d["time_base"]),
        "extradata": info.extradata or b"",
        "info": d,
    }


def _load_for_file(header: dict[str, Any], weights: Any, device: Any, path: Path) -> Any:
    from .errors import ModelNotFoundError
    from .loading import load_model

    named = header["model"]["card"]
    if weights is not None:
        m = load_model(weights, device=device)
    else:
        ref = header.get("weights_reference") or ""
        candidates = [named] + ([ref] if ref and ref != named else [])
        m = None
        for cand in candidates:
            try:
                m = load_model(cand, device=device)
                break
            except ModelNotFoundError:
                continue
        if m is None:
            raise ModelNotFoundError(
                f"{path} was made with model {named!r}, which is not available here; pass --weights"
            )
        want = header["model"].get("sha256") or ""
        have = m.weights_sha256
        if want and have and want != have:
            raise VidtokError(
                f"{path} was made with other weights for {named!r} (sha256 {want[:12]}..., found {have[:12]}...); "
                "pass --weights to decode with these anyway"
            )
    lat = header["latent"]
    (spec,) = m.latent_specs.values()
    sf = m.frame_layout.spatial_factor
    if spec.channels != lat["channels"] or sf != lat["spatial_factor"]:
        raise VidtokError(
            f"{path}: the model's latent ({spec.channels} channels, /{sf}) does not match the file's "
            f"({lat['channels']} channels, /{lat['spatial_factor']})"
        )
    if header["mode"] == "tokens" and list(spec.levels) != list(lat.get("fsq_levels") or []):
        raise VidtokError(f"{path}: the model's FSQ levels differ from the file's {lat.get('fsq_levels')}")
    return m


def _decoded_blocks(
    reader: vtok.VtokReader,
    m: Any,
    start_frame: int,
    end: int,
    tile: int | None = None,
    tile_overlap: int | None = None,
) -> Iterator[np.ndarray]:
    """Decoded uint8 frames ``[start_frame, end)`` of an open .vtok file, in blocks, padding removed."""
    import torch

    from .stream import EncodedChunk, decode_chunks

    h = reader.header
    width, height = int(h["source"]["width"]), int(h["source"]["height"])
    tokens = h["mode"] == "tokens"
    it = reader.iter_token_chunks(start_frame) if tokens else reader.iter_latent_chunks(start_frame)

    def chunks() -> Iterator[EncodedChunk]:
        for c in it:
            data = torch.from_numpy(np.ascontiguousarray(c[1]))
            yield EncodedChunk(
                latents={"tokens": data.long()} if tokens else {"latent": data},
                first_latent=c.first_latent,
                first_frame=c.first_frame,
                end_frame=c.end_frame,
                segment_start=c.segment_start,
            )

    for first, block in decode_chunks(m, chunks(), tile=tile, tile_overlap=tile_overlap):
        lo, hi = max(start_frame, first), min(end, first + block.shape[0])
        if hi <= lo:
            if first >= end:
                break
            continue
        yield block[lo - first : hi - first, :height, :width]


def frame_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 (H, W, 3) frames, as ``metrics.psnr`` scores them (80 dB when identical)."""
    import torch

    from .metrics.psnr import psnr

    x, y = (torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).double() / 255.0 for f in (a, b))
    return float(psnr(x, y))


def decode_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    weights: Any = None,
    crf: int = 18,
    preset: str = "medium",
    start_frame: int = 0,
    frames: int | None = None,
    fmt: str = "mp4",
    audio: bool = True,
    force: bool = False,
    device: Any = "auto",
    progress: Progress | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
) -> dict[str, Any]:
    """Decodes a .vtok file into an MP4 (or a folder of PNG frames); returns a summary.

    ``tile``/``tile_overlap``: decode overlapping spatial tiles of this many output pixels.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if fmt not in ("mp4", "png"):
        raise UsageError(f"unknown output format {fmt!r} (mp4 or png)")
    if fmt == "mp4" and dst.exists() and not force:
        raise VidtokError(f"{dst} exists; pass --force to overwrite it")
    reader = vtok.VtokReader(src)
    h = reader.header
    m = _load_for_file(h, weights, device, src)
    from .stream import check_tile

    check_tile(tile, tile_overlap, m.frame_layout.spatial_factor)
    total = int(h["source"]["frame_count"])
    width, height = int(h["source"]["width"]), int(h["source"]["height"])
    if start_frame < 0 or start_frame >= total:
        raise UsageError(f"--start-frame {start_frame} is outside the file's {total} frames")
    end = total if frames is None else min(total, start_frame + frames)
    fps = Fraction(*h["source"]["fps"])

    def wanted() -> Iterator[np.ndarray]:
        done = 0
        for out in _decoded_blocks(reader, m, start_frame, end, tile, tile_overlap):
            done += out.shape[0]
            if progress is not None:
                progress(done)
            yield out

    written = 0
    if fmt == "png":
        paths = video.write_png_frames(
            dst, (f for block in wanted() for f in block), start_index=start_frame, force=force
        )
        written = len(paths)
    else:
        audio_info = None
        use_audio = audio and h.get("audio") and start_frame == 0 and end == total
        if use_audio:
            audio_info = video.AudioInfo.from_dict(h["audio"]["info"])
        with video.VideoWriter(
            dst, width, height, fps, crf=crf, preset=preset, audio=audio_info, force=force
        ) as w:
            for block in wanted():
                w.write(block)
                written += block.shape[0]
            if use_audio:
                for p in reader.audio_packets():
                    w.write_audio(
                        video.AudioPacket(
                            data=p.data, pts=p.pts, dts=p.dts, duration=p.duration, is_keyframe=True
                        )
                    )
    elapsed = time.perf_counter() - t0
    return {
        "input": str(src),
        "output": str(dst),
        "model": h["model"]["card"],
        "frames": written,
        "width": width,
        "height": height,
        "fps": float(fps),
        "seconds": elapsed,
        "frames_per_second": written / elapsed if elapsed else None,
    }
