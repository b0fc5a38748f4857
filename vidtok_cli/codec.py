"""File-level encode and decode: video file -> .vtok -> MP4 (or PNG frames), streaming end to end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import hub, video, vtok
from .atomic import refuse_existing
from .cross import StreamsFrom, open_streams_from, swap_streams
from .dtypes import parse_latent_dtype
from .errors import UsageError, VidtokError
from .file_meta import (
    check_latent_bits,
    encoded_sizes,
    header_model_fields,
    header_streams,
    stream_mismatch,
)
from .runtime import check_compile_mode, compute_dtype, precision_name

Progress = Callable[[int], None]

FIXED_SIZE_FPS = 30  # the frame rate fixed-size families sample at by default (the official scripts')


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
    chunk_frames: int | None = None,
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
    precision: str = "auto",
    clips: str | None = None,
    keyframe_model: Any = None,
    latent_bits: int | None = None,
    batch: int = 1,
    max_memory: int | str | None = None,
    on_plan: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Encodes a video file into a .vtok file; returns a summary (frames, sizes, bits per pixel, time).

    ``latent_bits``: continuous streams quantized at this many bits per value per channel and rANS-coded
    (2..16; ``vtok.quant``); 0 stores them raw in ``latent_dtype``; None: the default
    (``DEFAULT_LATENT_BITS``, or raw when ``latent_dtype`` is not float16).

    ``psnr``: also decode the written file and add ``psnr`` (dB, mean over frames, 8-bit RGB, against
    the resized / cropped input frames) and ``psnr_min`` to the summary, like ffmpeg's ``-psnr``.

    ``model``: a loaded model, a zoo name, a weights path, or None for the default model.
    ``tile``/``tile_overlap``: encode overlapping spatial tiles of this many pixels (large frames).
    ``clip_overlap``: non-causal models only; consecutive 16-frame clips share this many frames, which
    decoding cross-fades. ``precision``: ``auto`` (bf16 autocast on CUDA, float32 on the CPU), ``fp32``,
    ``bf16`` or ``fp16`` (see ``runtime``). ``clips`` / ``keyframe_model``: motion-token models only
    (``input_kind == "motion"``, see ``motion_codec``): the clip plan and the key frames' model.
    ``batch``: models of independent clips run this many clips at a time (same file as one at a time).
    ``chunk_frames``: frames per encoder step (default 16). ``max_memory`` (bytes or ``"4GiB"``): choose the
    chunk and tile sizes not given so that encoding and decoding fit (``memory_plan``); ``on_plan`` is
    called with the `memory_plan.Plan` before encoding starts.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    given_chunk, chunk_frames = chunk_frames, 16 if chunk_frames is None else chunk_frames
    budget = _parse_memory(max_memory)
    refuse_existing(dst, force, VidtokError)
    if crop and not size:
        raise UsageError("--crop needs --size")
    latent_dtype = parse_latent_dtype(latent_dtype)
    latent_bits = check_latent_bits(latent_bits, latent_dtype)
    m = _resolve_model(model, device)
    if getattr(m, "input_kind", "frames") == "motion":
        from .motion_codec import encode_motion_file, refuse_options

        refuse_options(
            {"--fps": fps is not None, "--size": bool(size), "--crop": crop,
             "--segment-frames": bool(segment_frames), "--tile": tile is not None,
             "--tile-overlap": tile_overlap is not None, "--clip-overlap": bool(clip_overlap),
             "--psnr": psnr, "--chunk-frames": chunk_frames != 16,
             "--precision": precision not in ("auto", "fp32"), "--batch": batch != 1,
             "--max-memory": budget is not None},
            "a motion-token model",
        )  # fmt: skip
        return encode_motion_file(
            src, dst, m, clips=clips or "default", keyframe_model=keyframe_model, latent_dtype=latent_dtype,
            latent_bits=latent_bits,
            force=force, device=device, progress=progress, start=start, duration=duration,
            max_frames=max_frames,
        )  # fmt: skip
    if clips is not None or keyframe_model is not None:
        given = ", ".join(
            k for k, v in (("--clips", clips), ("--keyframe-model", keyframe_model)) if v is not None
        )
        raise UsageError(
            f"{given}: only for motion-token models (e.g. lavit-motion); this model takes frames"
        )
    _check_stream_options(m, chunk_frames, segment_frames, clip_overlap, tile, tile_overlap)
    from .stream import check_batch

    check_batch(batch, m)
    input_size = m.frame_layout.input_size
    if input_size is not None and (size or crop):
        raise UsageError(
            f"--size/--crop: this model takes {input_size[0]}x{input_size[1]} frames (the short side resized "
            "and centre-cropped to it); leave them out"
        )
    amp = compute_dtype(precision, m.device)
    from .frames import fit_frame, resize_frame

    info = video.probe(src)
    window: dict[str, Any] = {"start": start, "duration": duration, "max_frames": max_frames}
    preprocess = None
    if input_size is not None:  # fixed-size families: the official sampling, stride round(src_fps / fps)
        stride = video.official_interval(info.fps, fps or FIXED_SIZE_FPS)
        out_fps, window["interval"] = info.fps / stride, stride
        fit: Callable[[np.ndarray], np.ndarray] = partial(fit_frame, size_hw=input_size)
        preprocess = {
            "source_size": [info.width, info.height],
            "source_fps": [info.fps.numerator, info.fps.denominator],
            "frame_stride": stride,
            "resize": "short side, bilinear, antialias; centre crop",
        }
    else:
        out_fps = Fraction(fps).limit_denominator(1001) if fps else info.fps
        window["fps"] = fps
        fit = partial(resize_frame, size=size, crop=crop)
    source = _Source(src, window, fit, m.frame_layout.spatial_factor, progress)
    plan = None
    if budget is not None:
        from .memory_plan import plan_memory

        size_hw = (source.height + source.pad_h, source.width + source.pad_w)
        plan = plan_memory(
            m, size_hw, budget, chunk_frames=given_chunk, tile=tile, tile_overlap=tile_overlap,
            autocast_dtype=amp, batch=batch,
        )  # fmt: skip
        tile, tile_overlap = plan.tile, plan.tile_overlap
        chunk_frames = plan.chunk_frames if m.frame_layout.causal else chunk_frames
        if on_plan is not None:
            on_plan(plan)
    audio_info, audio_packets = (None, iter(()))
    if audio and info.has_audio:
        audio_info, audio_packets = video.iter_audio_packets(src, start=start, duration=duration)
    audio_header = None if audio_info is None else _audio_header(audio_info)
    header = _encode_header(
        m, source, out_fps, (latent_dtype, latent_bits), chunk_frames, segment_frames, clip_overlap,
        audio_header, preprocess,
    )  # fmt: skip
    if m.weights_path is not None:
        hub.record_weights(m.weights_path, m.weights_sha256)
    with vtok.VtokWriter(dst, header, force=force) as writer:
        from .frames import pinned_frames
        from .prefetch import prefetch
        from .stream import encode_frames

        ahead = 2 * max(chunk_frames, batch * m.frame_layout.clip_frames)
        # decoded ahead of the model (and, for CUDA, pinned) in the reader thread
        frames = prefetch(pinned_frames(source.frames(), m.device), depth=ahead)
        chunks = encode_frames(
            m, frames, chunk_frames=chunk_frames, segment_frames=segment_frames, tile=tile,
            tile_overlap=tile_overlap, clip_overlap=clip_overlap, autocast_dtype=amp, batch=batch,
        )  # fmt: skip
        n_tokens = _write_chunks(writer, m.latent_specs, chunks, bool(segment_frames))
        n = source.count
        if audio_info is not None:  # the audio of the encoded frames only (--max-frames)
            for packet in video.audio_span(audio_packets, audio_info.time_base, 0, Fraction(n) / out_fps):
                writer.write_audio(packet.data, packet.pts, packet.dts, packet.duration)
        padded_count = n if segment_frames else m.frame_layout.native_frames(n)
        writer.close(
            header_updates={"source": {"frame_count": n}, "padding": {"frames_padded": padded_count - n}}
        )
    sizes = encoded_sizes(dst, n, source.width, source.height, out_fps, n_tokens)
    elapsed = time.perf_counter() - t0
    quality: dict[str, Any] = {}
    if psnr:
        try:
            quality = _file_psnr(dst, m, source.fresh(), n, tile, tile_overlap, amp)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
    return {
        "input": str(src),
        "output": str(dst),
        "model": header["model"]["card"],
        "mode": "tokens" if all(spec.discrete for spec in m.latent_specs.values()) else "latent",
        "streams": list(m.latent_specs),
        **sizes,
        "compression_ratio_vs_source": src.stat().st_size / sizes["file_bytes"],
        "precision": precision_name(amp),
        "seconds": elapsed,
        "frames_per_second": n / elapsed,
        **quality,
        **_plan_summary(plan),
    }


def _parse_memory(max_memory: int | str | None) -> int | None:
    if max_memory is None:
        return None
    from .memory_plan import parse_memory

    return parse_memory(max_memory)


def _plan_summary(plan: Any) -> dict[str, Any]:
    """The summary's entries for a `memory_plan.Plan` (none without one)."""
    if plan is None:
        return {}
    return {"memory_plan": plan.describe(), **({"memory_warning": plan.warning} if plan.warning else {})}


def _check_stream_options(
    m: Any, chunk_frames: int, segment_frames: int | None, clip_overlap: int, tile: int | None,
    tile_overlap: int | None,
) -> None:  # fmt: skip
    """Usage errors for streaming options this model cannot honour (before any output exists)."""
    from .stream import check_clip_overlap, check_fixed_size_tile, check_segment_frames, check_tile

    if chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be >= 1, got {chunk_frames}")
    check_segment_frames(segment_frames, m)
    check_clip_overlap(clip_overlap, m)
    if clip_overlap and segment_frames:
        raise UsageError("--clip-overlap and --segment-frames cannot be combined")
    check_tile(tile, tile_overlap, m.frame_layout.spatial_factor)
    check_fixed_size_tile(tile, m)


class _Source:
    """The input's frames as the model takes them: ``fit`` (resize/crop) applied, edge-padded to the spatial
    factor.

    The first frame is read at once (its size decides the header); ``frames()`` streams all of them and
    counts them in ``count``; ``fresh()`` reads the resized frames again (for ``--psnr``).
    """

    def __init__(
        self, src: Path, window: dict[str, Any], fit: Callable[[np.ndarray], np.ndarray], factor: int,
        progress: Progress | None,
    ) -> None:  # fmt: skip
        self.src, self.window, self.fit, self.progress = src, window, fit, progress
        self._iter = video.iter_frames(src, **window)
        first = next(self._iter, None)
        if first is None:
            raise video.VideoError(f"{src}: no frames to encode")
        self._first = fit(first)
        self.height, self.width = self._first.shape[:2]
        self.pad_h, self.pad_w = (-self.height) % factor, (-self.width) % factor
        self.count = 0

    def fresh(self) -> Iterator[np.ndarray]:
        return (self.fit(f) for f in video.iter_frames(self.src, **self.window))

    def frames(self) -> Iterator[np.ndarray]:
        for i, f in enumerate(_chain(self._first, self._iter)):
            f = self.fit(f) if i else f
            if self.pad_h or self.pad_w:
                f = np.pad(f, ((0, self.pad_h), (0, self.pad_w), (0, 0)), mode="edge")
            self.count = i + 1
            if self.progress is not None:
                self.progress(self.count)
            yield f


def _encode_header(
    m: Any, source: _Source, fps: Fraction, coding: tuple[str, int], chunk_frames: int,
    segment_frames: int | None, clip_overlap: int, audio: dict[str, Any] | None,
    preprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The .vtok header of an encoding (the frame count is filled in when the last frame was read);
    ``coding``: (latent dtype, latent bits) of continuous streams; ``preprocess``: how a fixed-size family's
    frames were sampled and resized from the source."""
    layout = m.frame_layout
    h, w = source.height + source.pad_h, source.width + source.pad_w
    return vtok.make_header(
        **header_model_fields(m),
        streams=header_streams(m.latent_specs, h, w, *coding),
        temporal_factor=layout.temporal_factor,
        spatial_factor=layout.spatial_factor,
        width=source.width,
        height=source.height,
        fps=fps,
        pad=(0, source.pad_h, 0, source.pad_w),
        frames_per_record=chunk_frames,
        segment_frames=segment_frames,
        clip_overlap=clip_overlap,
        audio=audio,
        causal=layout.causal,
        source_file=source.src.name,
        **({"preprocess": preprocess} if preprocess is not None else {}),
    )


def _write_chunks(writer: vtok.VtokWriter, specs: Any, chunks: Iterable[Any], segments: bool) -> int:
    """Writes every encoded chunk (all its streams); returns the number of tokens of discrete streams.

    Quantizing, entropy coding and writing run in a writer thread, in order, while the model encodes
    the next chunk (`prefetch.write_behind`)."""
    from .prefetch import write_behind

    n_tokens = 0
    with write_behind(lambda job: job(), name="vidtok-vtok-writer") as submit:
        for chunk in chunks:
            if chunk.segment_start and segments:
                submit(partial(writer.mark_segment, chunk.first_frame, chunk.first_latent))
            arrays = {name: chunk.latents[name].numpy() for name in specs}
            submit(
                partial(writer.write_chunk, arrays, chunk.first_frame, chunk.end_frame, chunk.first_latent)
            )
            n_tokens += sum(arrays[name].size for name, spec in specs.items() if spec.discrete)
    return n_tokens


def _file_psnr(
    dst: Path, m: Any, source: Iterator[np.ndarray], n: int, tile: int | None, tile_overlap: int | None,
    amp: Any,
) -> dict[str, float]:  # fmt: skip
    """``psnr`` and ``psnr_min`` (8-bit, dB) of a written file's decoded frames against the input frames."""
    values = [
        frame_psnr(a, b)
        for block in _decoded_blocks(vtok.VtokReader(dst), m, 0, n, tile, tile_overlap, amp)
        for a, b in zip(block, source, strict=False)
    ]
    return {"psnr": float(np.mean(values)), "psnr_min": float(np.min(values))}


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
    from .loading import load_for_file

    m = load_for_file(
        header["model"]["card"],
        header["model"].get("sha256") or "",
        weights_file=header.get("weights_file") or None,
        weights_reference=header.get("weights_reference") or None,
        weights=weights,
        device=device,
        where=str(path),
        config=header.get("model_config"),
    )
    sf, file_sf = m.frame_layout.spatial_factor, header["frame_layout"]["spatial_factor"]
    family = header["model"].get("family", "vidtok")
    problem = None if m.family == family else f"it holds {family} latents, the model is a {m.family} model"
    if problem is None and getattr(m, "input_kind", "frames") == "motion":  # key frames: their own model
        from .motion_codec import attach_keyframe_model

        attach_keyframe_model(m, header, device, str(path))
    problem = problem or stream_mismatch(m.latent_specs, vtok.parse_streams(header["streams"]))
    if problem is None and sf != file_sf:
        problem = f"the model's spatial factor /{sf} differs from the file's /{file_sf}"
    if problem:
        raise VidtokError(f"{path}: {problem}")
    return m


def _decoded_blocks(
    reader: vtok.VtokReader,
    m: Any,
    start_frame: int,
    end: int,
    tile: int | None = None,
    tile_overlap: int | None = None,
    autocast_dtype: Any = None,
    only: str | None = None,
    swap: StreamsFrom | None = None,
    max_steps: int | None = None,
) -> Iterator[np.ndarray]:
    """Decoded uint8 frames ``[start_frame, end)`` of an open .vtok file, in blocks, padding removed.

    ``only``: decode this stream group alone. ``swap``: streams taken from another file's chunk of the same
    place, chunk by chunk (`cross.swap_streams`). ``max_steps``: decode at most this many latent steps at
    a time (`stream.split_chunks`).
    """
    import torch

    from .stream import EncodedChunk, decode_chunks, split_chunks

    h = reader.header
    width, height = int(h["source"]["width"]), int(h["source"]["height"])

    def chunks() -> Iterator[EncodedChunk]:
        for c, latents in swap_streams(reader.iter_chunks(start_frame), swap, start_frame, reader.path):
            yield EncodedChunk(
                latents={name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in latents.items()},
                first_latent=c.first_latent,
                first_frame=c.first_frame,
                end_frame=c.end_frame,
                segment_start=c.segment_start,
            )

    from .prefetch import prefetch

    read = prefetch(chunks(), depth=2, name="vidtok-vtok-reader")  # entropy decoding beside the model
    pieces = read if max_steps is None else split_chunks(m, read, max_steps)
    for first, block in decode_chunks(m, pieces, autocast_dtype, tile, tile_overlap, only=only):
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
    precision: str = "auto",
    only: str | None = None,
    streams_from: tuple[str | os.PathLike[str], str] | None = None,
    size: str | None = None,
    view: str | None = None,
    compile: bool = False,
    compile_mode: str = "auto",
    max_memory: int | str | None = None,
    on_plan: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Decodes a .vtok file into an MP4 (or a folder of PNG frames); returns a summary.

    ``tile``/``tile_overlap``: decode overlapping spatial tiles of this many output pixels.
    ``precision``: as for ``encode_file``. ``only``: decode one stream group of the model alone
    (``model.stream_groups``, e.g. VidTwin's ``structure`` or ``dynamics``). ``streams_from``: (another
    .vtok file of the same model, a stream group): that group's streams are taken from the other file,
    chunk by chunk (cross-reenactment); when the files hold different numbers of clips the shorter decides
    and the summary's ``warning`` says so. ``size``: ``"source"`` scales the frames of a fixed-size model
    back to the source video's width x height (recorded at encode time). ``view``: motion-token files
    only (``motion_codec``): ``"motion"`` writes the colour-coded motion field.
    ``compile``: ``torch.compile`` the model first (``runtime.compile_model``) in ``compile_mode``.
    ``max_memory``: choose the decoding chunk (at most the file's records) and the tile size not given so
    that decoding fits (``memory_plan``); ``on_plan`` is called with the `memory_plan.Plan` before
    decoding starts.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    check_compile_mode(compile_mode, compile)
    if fmt not in ("mp4", "png"):
        raise UsageError(f"unknown output format {fmt!r} (mp4 or png)")
    if size is not None and size != "source":
        raise UsageError(f"--size takes 'source' (the source video's size), not {size!r}")
    budget = _parse_memory(max_memory)
    if fmt == "mp4":
        refuse_existing(dst, force, VidtokError)
    reader = vtok.VtokReader(src)
    h = reader.header
    out_wh = _output_size(h, size, src)
    m = _load_for_file(h, weights, device, src)
    if getattr(m, "input_kind", "frames") == "motion":
        from .motion_codec import decode_motion_file, refuse_options

        refuse_options(
            {"--size": size is not None, "--tile": tile is not None,
             "--tile-overlap": tile_overlap is not None, "--start-frame": bool(start_frame), "--frames": frames is not None,
             "--dynamics-from": streams_from is not None, "--compile": compile,
             "--max-memory": budget is not None},
            "a motion-token file",
        )  # fmt: skip
        return decode_motion_file(
            src, dst, reader, m, view=view or "frames", only=only, fmt=fmt, crf=crf, preset=preset,
            force=force, progress=progress,
        )  # fmt: skip
    if view is not None and view != "frames":
        raise UsageError(f"--view {view}: only for motion-token files (e.g. lavit-motion)")
    if compile:
        from .runtime import compile_model

        compile_model(m, mode=compile_mode)
    amp = compute_dtype(precision, m.device)
    from .stream import check_fixed_size_tile, check_only, check_tile

    check_tile(tile, tile_overlap, m.frame_layout.spatial_factor)
    check_fixed_size_tile(tile, m)
    check_only(only, m)
    total = int(h["source"]["frame_count"])
    width, height = int(h["source"]["width"]), int(h["source"]["height"])
    swap, warning = None, None
    if streams_from is not None:
        swap, total, warning = open_streams_from(streams_from, m, h, src, only, total)
    if start_frame < 0 or start_frame >= total:
        raise UsageError(f"--start-frame {start_frame} is outside the file's {total} frames")
    end = total if frames is None else min(total, start_frame + frames)
    fps = Fraction(*h["source"]["fps"])
    plan, max_steps = (
        _decode_plan(h, m, budget, tile, tile_overlap, amp) if budget is not None else (None, None)
    )
    if plan is not None:
        tile, tile_overlap = plan.tile, plan.tile_overlap
        if on_plan is not None:
            on_plan(plan)

    def wanted() -> Iterator[np.ndarray]:
        from .frames import resize_frames

        done = 0
        blocks = _decoded_blocks(reader, m, start_frame, end, tile, tile_overlap, amp, only, swap, max_steps)
        for out in blocks:
            done += out.shape[0]
            if progress is not None:
                progress(done)
            yield out if out_wh is None else resize_frames(out, out_wh[1], out_wh[0])

    if out_wh is not None:
        width, height = out_wh

    written = 0
    if fmt == "png":
        paths = video.write_png_frames(
            dst, (f for block in wanted() for f in block), start_index=start_frame, force=force
        )
        written = len(paths)
    else:
        audio_info = video.AudioInfo.from_dict(h["audio"]["info"]) if audio and h.get("audio") else None
        with video.VideoWriter(
            dst, width, height, fps, crf=crf, preset=preset, audio=audio_info, force=force
        ) as w:
            from .prefetch import write_behind

            with write_behind(w.write) as write:  # the writer thread encodes while the model decodes
                for block in wanted():
                    write(block)
                    written += block.shape[0]
            if audio_info is not None:  # the audio of the decoded frames only
                stored = (
                    video.AudioPacket(
                        data=p.data, pts=p.pts, dts=p.dts, duration=p.duration, is_keyframe=True
                    )
                    for p in reader.audio_packets()
                )
                for packet in video.audio_span(stored, audio_info.time_base, start_frame / fps, end / fps):
                    w.write_audio(packet)
    elapsed = time.perf_counter() - t0
    return {
        "input": str(src),
        "output": str(dst),
        "model": h["model"]["card"],
        "frames": written,
        "width": width,
        "height": height,
        "fps": float(fps),
        **({"only": only} if only is not None else {}),
        **({f"{streams_from[1]}_from": str(streams_from[0])} if streams_from is not None else {}),
        "precision": precision_name(amp),
        "seconds": elapsed,
        "frames_per_second": written / elapsed if elapsed else None,
        **({"warning": warning} if warning else {}),
        **_plan_summary(plan),
    }


def _decode_plan(
    h: dict[str, Any], m: Any, budget: int, tile: int | None, tile_overlap: int | None, amp: Any
) -> tuple[Any, int | None]:
    """The `memory_plan.Plan` of decoding a file within ``budget`` bytes, and the latent steps to decode at
    a time (None: whole records)."""
    from .memory_plan import DEFAULT_CHUNK, plan_memory

    layout = m.frame_layout
    pad = h["padding"]["pad"]
    size_hw = (int(h["source"]["height"]) + pad[0] + pad[1], int(h["source"]["width"]) + pad[2] + pad[3])
    record = (h.get("chunking") or {}).get("frames_per_record") or DEFAULT_CHUNK
    plan = plan_memory(
        m, size_hw, budget, tile=tile, tile_overlap=tile_overlap, autocast_dtype=amp, decode_only=True,
        max_chunk=record,
    )  # fmt: skip
    return plan, plan.chunk_frames // layout.temporal_factor if layout.causal else None


def _output_size(header: dict[str, Any], size: str | None, src: Path) -> tuple[int, int] | None:
    """(width, height) to scale decoded frames to for ``size`` (``"source"``), or None to keep them."""
    if size is None:
        return None
    wh = (header.get("preprocess") or {}).get("source_size")
    if not (isinstance(wh, list) and len(wh) == 2 and all(type(v) is int and v > 0 for v in wh)):
        raise UsageError(f"--size source: {src} records no source size (only fixed-size models resize)")
    return int(wh[0]), int(wh[1])
