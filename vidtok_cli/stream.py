"""Streaming encode/decode of frame sequences of any length in bounded memory.

Causal models: frames are fed to ``encode_chunk`` ``chunk_frames`` at a time with the causal caches
carried between chunks, so the latents equal those of encoding the whole video at once. The sequence
is padded at the end with copies of its last frame to a native length ``1 + k * tdf``. With
``segment_frames`` the video is cut into independent streams (each starting with a frame encoded alone),
so decoding can start at any segment boundary.

Non-causal models: independent clips of ``clip_frames`` frames (the last one padded with its last frame).

Only the `Tokenizer` interface is used: any family streams through this code.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UsageError
from .frames import frames_to_tensor, tensor_to_frames
from .runtime import (
    autocast,
    ready_one_behind,
    recompute_if_not_finite,
    state_in_float32,
    to_device,
    to_host_async,
)
from .tokenizer import Encoded, LatentSpec, Tokenizer


@dataclass
class EncodedChunk:
    """The latents of every stream produced for a span of frames.

    ``latents``: stream name -> tensor without the batch axis, on the CPU (continuous streams float32,
    token streams int64). Frame ranges count frames of the padded sequence (``end_frame`` may exceed the
    source length by the padding). ``first_latent`` counts latent steps before this chunk;
    ``segment_start`` marks the first chunk of an independent stream.
    """

    latents: dict[str, torch.Tensor]
    first_latent: int
    first_frame: int
    end_frame: int
    segment_start: bool

    @property
    def latent(self) -> torch.Tensor:
        """The ``latent`` stream (single-stream continuous tokenizers)."""
        return self.latents["latent"]

    @property
    def indices(self) -> torch.Tensor | None:
        """The ``tokens`` stream (single-stream token tokenizers), else None."""
        return self.latents.get("tokens")


def per_sample(
    specs: Mapping[str, LatentSpec], latents: Mapping[str, torch.Tensor], non_blocking: bool = False
) -> dict[str, torch.Tensor]:
    """A batch of one as per-sample tensors on the CPU (continuous float32, tokens int64); a clip-level
    stream keeps its leading axis, which counts its steps (clips). ``non_blocking`` (CUDA): copied into
    pinned memory without waiting (`runtime.to_host_async`; the caller waits, `ready_one_behind`)."""
    host = to_host_async if non_blocking else torch.Tensor.cpu
    out = {}
    for k, v in latents.items():
        v = v if k in specs and specs[k].clip_level else v[0]
        out[k] = host(v if v.dtype == torch.int64 else v.float())
    return out


def _steps(model: Tokenizer, latents: Mapping[str, torch.Tensor], batched: bool) -> int:
    """Latent steps held by ``latents`` (each stream's time axis, batch axis included or not)."""
    for name, spec in model.latent_specs.items():
        if name in latents:
            return int(latents[name].shape[spec.step_axis(batched)])
    return 0


def has_clip_level_streams(model: Tokenizer) -> bool:
    """Whether any latent stream of the model has no time axis (one step per clip)."""
    return any(spec.clip_level for spec in model.latent_specs.values())


def check_fixed_size_tile(tile: int | None, model: Tokenizer) -> None:
    """UsageError when ``--tile`` is asked of a model that takes frames of one size or has clip-level
    streams (a tile would not be a frame the model accepts)."""
    size = model.frame_layout.input_size
    if tile is not None and (size is not None or has_clip_level_streams(model)):
        what = f"frames of {size[0]}x{size[1]}" if size else "whole clips"
        raise UsageError(f"--tile: this model takes {what}; spatial tiling does not apply")


def check_segment_frames(segment_frames: int | None, model: Tokenizer) -> None:
    if segment_frames is None:
        return
    layout = model.frame_layout
    tdf, clip_frames = layout.temporal_factor, layout.clip_frames
    if layout.causal and (segment_frames < 1 or (segment_frames - 1) % tdf):
        raise UsageError(
            f"--segment-frames must be 1 + k*{tdf} for this model (e.g. {1 + 8 * tdf}), got {segment_frames}"
        )
    if not layout.causal and segment_frames % clip_frames:
        raise UsageError(f"--segment-frames must be a multiple of {clip_frames} for a non-causal model")


# -- spatial tiling ------------------------------------------------------------------------------------


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Spans ``[a, b)`` of length ``tile`` covering ``[0, size)`` with at least ``overlap`` shared; the
    last span ends at ``size``. One span when the tile covers everything."""
    if tile >= size:
        return [(0, size)]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return [(a, a + tile) for a in starts]


def _ramp(spans: list[tuple[int, int]], i: int) -> torch.Tensor:
    """Blending weights of span ``i``: linear ramps over the parts shared with its neighbours."""
    a, b = spans[i]
    w = torch.ones(b - a, dtype=torch.float64)
    if i > 0 and spans[i - 1][1] > a:
        n = spans[i - 1][1] - a
        w[:n] = torch.minimum(w[:n], (torch.arange(n, dtype=torch.float64) + 0.5) / n)
    if i + 1 < len(spans) and spans[i + 1][0] < b:
        n = b - spans[i + 1][0]
        w[-n:] = torch.minimum(w[-n:], (torch.arange(n, 0, -1, dtype=torch.float64) - 0.5) / n)
    return w


class Tiling:
    """A grid of overlapping spatial tiles for frames of ``height`` x ``width`` pixels.

    ``tile`` and ``overlap`` are in pixels and rounded down to multiples of the model's spatial factor
    ``factor`` so that tiles map onto whole latent cells. Each tile is run through the model on its own
    (with its own causal state); outputs are blended with linear ramps where tiles overlap.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int | None, factor: int) -> None:
        tile = tile // factor * factor
        if overlap is None:
            overlap = tile // 4
        overlap = overlap // factor * factor
        if tile < 4 * factor:
            raise UsageError(f"--tile must be at least {4 * factor} pixels for this model")
        if not 0 <= overlap <= tile // 2:
            raise UsageError(f"--tile-overlap must be between 0 and half the tile ({tile // 2} pixels)")
        self.factor, self.tile, self.overlap = factor, tile, overlap
        self.height, self.width = height, width
        self.ys = tile_spans(height, tile, overlap)
        self.xs = tile_spans(width, tile, overlap)

    @property
    def active(self) -> bool:
        return len(self.ys) * len(self.xs) > 1

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def regions(self, scale: int) -> Iterator[tuple[int, slice, slice, torch.Tensor]]:
        """(tile number, row slice, column slice, weights (h, w)) at 1/``scale`` of the pixel grid."""
        ys = [(a // scale, b // scale) for a, b in self.ys]
        xs = [(a // scale, b // scale) for a, b in self.xs]
        k = 0
        for i, (y0, y1) in enumerate(ys):
            wy = _ramp(ys, i)
            for j, (x0, x1) in enumerate(xs):
                yield k, slice(y0, y1), slice(x0, x1), wy[:, None] * _ramp(xs, j)[None, :]
                k += 1


def check_tile(tile: int | None, tile_overlap: int | None, factor: int) -> None:
    """Validates ``--tile`` / ``--tile-overlap`` for a model of this spatial factor."""
    if tile is not None:
        Tiling(tile, tile, tile, tile_overlap, factor)


class _Blend:
    """Accumulates weighted tiles into one tensor (..., H, W) and normalises at the end."""

    def __init__(self) -> None:
        self.acc: torch.Tensor | None = None
        self.wsum: torch.Tensor | None = None

    def add(self, out: torch.Tensor, ys: slice, xs: slice, w: torch.Tensor, h: int, width: int) -> None:
        if self.acc is None:
            self.acc = out.new_zeros((*out.shape[:-2], h, width), dtype=torch.float32)
            self.wsum = torch.zeros(h, width, dtype=torch.float32, device=out.device)
        wt = w.to(device=out.device, dtype=torch.float32)
        self.acc[..., ys, xs] += out.float() * wt
        self.wsum[ys, xs] += wt

    def result(self, dtype: torch.dtype) -> torch.Tensor:
        assert self.acc is not None and self.wsum is not None
        return (self.acc / self.wsum).to(dtype)


def _carried(state: object, device: torch.device, float32_state: bool) -> object:
    """The causal state as carried to the next chunk: in float32 under autocast when ``float32_state``."""
    if float32_state and device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return state_in_float32(state)
    return state


class ChunkEncoder:
    """Runs one stream of chunks through the encoder, keeping the causal state(s) between calls.

    ``tile`` (pixels) splits frames into overlapping tiles, each with its own state; the encoder
    outputs (moments) are blended before the regularizer, so FSQ tokens stay valid codes.
    ``float32_state``: under autocast, carry the causal state between chunks in float32. Off by default:
    for VidTok the state is the cached input frames of temporal convolutions, which autocast rounds to
    the compute dtype again, so it changes nothing (bit-identical; ``benchmarks/precision_drift.py``).
    """

    def __init__(
        self,
        model: Tokenizer,
        tile: int | None = None,
        tile_overlap: int | None = None,
        float32_state: bool = False,
    ) -> None:
        self.model, self.tile, self.tile_overlap = model, tile, tile_overlap
        self.float32_state = float32_state
        self.states: dict[int, object] = {}

    def reset(self) -> None:
        """Starts a new independent stream (segment)."""
        self.states = {}

    def _run(self, x: torch.Tensor, k: int) -> Encoded:
        if self.model.frame_layout.causal:
            before = self.states.get(k)  # a retry in float32 starts again from here
            out, self.states[k] = recompute_if_not_finite(
                lambda: self.model.encode_chunk(x, copy.copy(before)), x.device, "encoder chunk"
            )
            self.states[k] = _carried(self.states[k], x.device, self.float32_state)
            return out
        return recompute_if_not_finite(lambda: self.model.encode(x), x.device, "encoder clip")

    def __call__(self, x: torch.Tensor) -> Encoded:
        h, w = x.shape[-2:]
        f = self.model.frame_layout.spatial_factor
        tiling = Tiling(h, w, self.tile, self.tile_overlap, f) if self.tile else None
        if tiling is None or not tiling.active:
            return self._run(x, 0)
        px = dict((k, (ys, xs)) for k, ys, xs, _ in tiling.regions(1))
        blend = _Blend()
        for k, ys, xs, wt in tiling.regions(f):
            out = self._run(x[..., px[k][0], px[k][1]], k)
            if out.moments is None:
                raise UsageError(f"--tile: a {self.model.family} model cannot blend tiles")
            blend.add(out.moments, ys, xs, wt, h // f, w // f)
        if blend.acc is None or blend.acc.shape[2] == 0:
            return out
        return self.model.blend_encoded(blend.result(out.moments.dtype))


class ChunkDecoder:
    """Runs one stream of latent chunks through the decoder, keeping the causal state(s) between calls.

    ``tile`` (pixels of output) splits latents into overlapping tiles, each decoded with its own state
    and blended in pixel space. ``float32_state``: see `ChunkEncoder`.
    """

    def __init__(
        self,
        model: Tokenizer,
        tile: int | None = None,
        tile_overlap: int | None = None,
        only: str | None = None,
        float32_state: bool = False,
    ) -> None:
        self.model, self.tile, self.tile_overlap, self.only = model, tile, tile_overlap, only
        self.float32_state = float32_state
        self.states: dict[int, object] = {}

    def reset(self) -> None:
        self.states = {}

    @property
    def started(self) -> bool:
        return bool(self.states)

    def _run(self, z: dict[str, torch.Tensor], k: int, final: bool) -> torch.Tensor:
        device = next(iter(z.values())).device
        if self.model.frame_layout.causal:
            before = self.states.get(k)
            out, self.states[k] = recompute_if_not_finite(
                lambda: self.model.decode_chunk(z, copy.copy(before), final=final), device, "decoder chunk"
            )
            self.states[k] = _carried(self.states[k], device, self.float32_state)
            return out
        out = recompute_if_not_finite(lambda: self.model.decode(z, only=self.only), device, "decoder clip")
        return _clips_in_time(out)

    def __call__(self, z: dict[str, torch.Tensor], final: bool = False) -> torch.Tensor:
        f = self.model.frame_layout.spatial_factor
        some = next(iter(z.values()))
        h, w = some.shape[-2] * f, some.shape[-1] * f
        tiling = Tiling(h, w, self.tile, self.tile_overlap, f) if self.tile else None
        if tiling is None or not tiling.active:
            return self._run(z, 0, final)
        lat = dict((k, (ys, xs)) for k, ys, xs, _ in tiling.regions(f))
        blend = _Blend()
        for k, ys, xs, wt in tiling.regions(1):
            part = {name: t[..., lat[k][0], lat[k][1]] for name, t in z.items()}
            out = self._run(part, k, final)
            blend.add(out, ys, xs, wt, h, w)
        if out.shape[2] == 0:
            return out.new_zeros((*out.shape[:3], h, w))
        return blend.result(out.dtype)


def encode_frames(
    model: Tokenizer,
    frames: Iterable[np.ndarray] | Iterable[torch.Tensor],
    chunk_frames: int = 16,
    segment_frames: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    clip_overlap: int = 0,
    batch: int = 1,
) -> Iterator[EncodedChunk]:
    """Encodes uint8 (H, W, 3) frames (already at a size the model accepts) into latent chunks.

    ``frames``: arrays, or tensors (on CUDA pinned ones, `frames.pinned_frames`, copy asynchronously).
    ``autocast_dtype``: run the model under autocast to this dtype (see ``runtime``). ``tile``/
    ``tile_overlap`` (pixels): encode overlapping spatial tiles separately (bounded memory for large
    frames) and blend them. ``clip_overlap`` (non-causal models): consecutive clips share this many
    frames, which ``decode_chunks`` cross-fades to hide clip seams. ``batch`` (non-causal models): clips
    run through the model this many at a time; the chunks are the same as one at a time. On CUDA a
    chunk is handed out once the next one is queued on the device (`runtime.ready_one_behind`).
    """
    chunks = _encode_frames(
        model, frames, chunk_frames, segment_frames, autocast_dtype, tile, tile_overlap, clip_overlap, batch
    )
    yield from ready_one_behind(chunks, model.device)


def _encode_frames(
    model: Tokenizer,
    frames: Iterable[np.ndarray] | Iterable[torch.Tensor],
    chunk_frames: int,
    segment_frames: int | None,
    autocast_dtype: torch.dtype | None,
    tile: int | None,
    tile_overlap: int | None,
    clip_overlap: int,
    batch: int,
) -> Iterator[EncodedChunk]:
    """`encode_frames` with the chunks' latents possibly still on their way to the host (CUDA)."""
    if chunk_frames < 1:
        raise UsageError("--chunk-frames must be >= 1")
    check_segment_frames(segment_frames, model)
    check_batch(batch, model)
    if clip_overlap:
        yield from _overlapping_clips(model, frames, clip_overlap, autocast_dtype, tile, tile_overlap, batch)
        return
    device, dtype = model.device, model.dtype
    layout = model.frame_layout
    causal = layout.causal
    if not causal:
        chunk_frames = layout.clip_frames
        clips = _ClipBatch(model, ChunkEncoder(model, tile, tile_overlap), batch, autocast_dtype)
    seg_len = segment_frames or (0 if causal else layout.clip_frames)

    latent_count = 0
    frame_pos = 0  # frames of the padded sequence consumed so far
    seg_first_frame = 0
    seg_latents = 0
    encoder = ChunkEncoder(model, tile, tile_overlap)
    new_segment = True
    buffer: list[np.ndarray] = []
    last: np.ndarray | None = None

    def run(chunk: list[np.ndarray]) -> Iterator[EncodedChunk]:
        nonlocal latent_count, frame_pos, new_segment, seg_latents
        if not causal:  # independent clips: batched, their chunks come out in order
            yield from clips.add(chunk, frame_pos, new_segment)
            frame_pos += len(chunk)
            new_segment = False
            return
        x = frames_to_tensor(chunk, device, dtype)
        with torch.no_grad(), autocast(device, autocast_dtype):
            out = encoder(x)
        frame_pos += len(chunk)
        t = _steps(model, out.latents, batched=True)
        if t == 0:
            return
        first = seg_latents
        seg_latents += t
        if causal:
            f0, f1 = (seg_first_frame + f for f in layout.latent_frames(first, seg_latents))
        else:
            f0, f1 = frame_pos - len(chunk), frame_pos
        latents = per_sample(model.latent_specs, out.latents, non_blocking=True)
        yield EncodedChunk(latents, latent_count, f0, f1, new_segment)
        latent_count += t
        new_segment = False

    def end_segment() -> Iterator[EncodedChunk]:
        nonlocal buffer, new_segment, seg_first_frame, seg_latents
        n = frame_pos + len(buffer) - seg_first_frame
        pad = layout.native_frames(n) - n
        if buffer or pad:
            assert last is not None
            buffer.extend([last] * pad)
            while buffer:
                yield from run(buffer[:chunk_frames])
                buffer = buffer[chunk_frames:]
        encoder.reset()
        new_segment = True
        seg_first_frame, seg_latents = frame_pos, 0

    for frame in frames:
        buffer.append(frame)
        last = frame
        if seg_len and frame_pos + len(buffer) - seg_first_frame == seg_len:
            yield from end_segment()
            continue
        if len(buffer) >= chunk_frames:
            yield from run(buffer)
            buffer = []
    if last is not None and frame_pos + len(buffer) > seg_first_frame:
        yield from end_segment()
    if not causal:
        yield from clips.flush()


def check_batch(batch: int, model: Tokenizer) -> None:
    """UsageError when ``--batch`` is not 1 for a causal model (its chunks run one after the other)."""
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if batch > 1 and model.frame_layout.causal:
        raise UsageError(
            "--batch: this model is causal (one stream, chunk after chunk); batching is for models of clips"
        )


class _ClipBatch:
    """Independent clips run through the model ``size`` at a time; yields their chunks in order."""

    def __init__(
        self, model: Tokenizer, encoder: ChunkEncoder, size: int, autocast_dtype: torch.dtype | None
    ):
        self.model, self.encoder, self.size, self.autocast_dtype = model, encoder, size, autocast_dtype
        self.pending: list[tuple[list[np.ndarray], int, bool]] = []
        self.latent_count = 0

    def add(self, clip: list[np.ndarray], first_frame: int, segment_start: bool) -> Iterator[EncodedChunk]:
        """Queues a clip starting at ``first_frame`` (of the padded sequence); runs the batch when full."""
        self.pending.append((clip, first_frame, segment_start))
        if len(self.pending) >= self.size:
            yield from self.flush()

    def flush(self) -> Iterator[EncodedChunk]:
        """Runs the queued clips."""
        if not self.pending:
            return
        model, pending = self.model, self.pending
        self.pending = []
        x = torch.cat([frames_to_tensor(clip, model.device, model.dtype) for clip, _, _ in pending])
        with torch.no_grad(), autocast(model.device, self.autocast_dtype):
            out = self.encoder(x)
        for i, (clip, first, segment_start) in enumerate(pending):
            latents = {k: v[i : i + 1] for k, v in out.latents.items()}
            t = _steps(model, latents, batched=True)
            if t == 0:
                continue
            yield EncodedChunk(
                per_sample(model.latent_specs, latents, non_blocking=True),
                self.latent_count,
                first,
                first + len(clip),
                segment_start,
            )
            self.latent_count += t


def check_clip_overlap(clip_overlap: int, model: Tokenizer) -> None:
    """Validates ``--clip-overlap`` for this model."""
    if not clip_overlap:
        return
    layout = model.frame_layout
    if layout.causal:
        raise UsageError("--clip-overlap is for non-causal models; causal models stream exactly without it")
    tdf, clip_frames = layout.temporal_factor, layout.clip_frames
    if tdf >= clip_frames:
        raise UsageError(
            f"--clip-overlap: this model encodes each {clip_frames}-frame clip as one step; clips cannot overlap"
        )
    if not 0 < clip_overlap < clip_frames or clip_overlap % tdf:
        raise UsageError(
            f"--clip-overlap must be a multiple of {tdf} between 1 and {clip_frames - 1} frames, got {clip_overlap}"
        )


def _overlapping_clips(
    model: Tokenizer,
    frames: Iterable[np.ndarray],
    overlap: int,
    autocast_dtype: torch.dtype | None,
    tile: int | None,
    tile_overlap: int | None,
    batch: int = 1,
) -> Iterator[EncodedChunk]:
    """Non-causal clips of ``clip_frames`` starting every ``clip_frames - overlap`` frames."""
    check_clip_overlap(overlap, model)
    clip_frames = model.frame_layout.clip_frames
    clips = _ClipBatch(model, ChunkEncoder(model, tile, tile_overlap), batch, autocast_dtype)
    stride = clip_frames - overlap
    window: list[np.ndarray] = []
    start = 0  # frame index of window[0]
    ran = False
    for frame in frames:
        window.append(frame)
        if len(window) == clip_frames:
            ran = True
            yield from clips.add(window, start, True)
            window, start = window[stride:], start + stride
    # the frames not yet covered by a full clip: one last clip, padded with the last frame
    if window and (not ran or len(window) > overlap):
        yield from clips.add(window + [window[-1]] * (clip_frames - len(window)), start, True)
    yield from clips.flush()


def check_only(only: str | None, model: Tokenizer, option: str = "--only") -> None:
    """UsageError (naming the available groups) when ``only`` is not a stream group of this model;
    ``option`` names the option in the message."""
    if only is None:
        return
    groups = model.stream_groups
    what = f"{option} {only}" if option == "--only" else option
    if not groups:
        raise UsageError(f"{what}: a {model.family} model has no stream groups to decode apart")
    if only not in groups:
        raise UsageError(f"{what}: no stream group {only!r} in this model (it has {', '.join(groups)})")
    if model.frame_layout.causal:
        raise UsageError(f"{what}: partial decoding needs a non-causal model")


def _to_model(
    model: Tokenizer, latents: Mapping[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """A chunk's per-sample latents as a batch on the model's device (floats in its dtype): a batch of one,
    or for clip-level streams a batch of the chunk's clips."""
    specs = model.latent_specs
    return {
        k: to_device(v if k in specs and specs[k].clip_level else v.unsqueeze(0), device).to(
            dtype=None if v.dtype == torch.int64 else dtype
        )
        for k, v in latents.items()
    }


def _clips_in_time(x: torch.Tensor) -> torch.Tensor:
    """Decoded clips (N, C, T, H, W) as one sequence (1, C, N*T, H, W)."""
    if x.shape[0] == 1:
        return x
    n, c, t, h, w = x.shape
    return x.permute(1, 0, 2, 3, 4).reshape(1, c, n * t, h, w)


class _ClipFader:
    """Non-causal clips in order: emits each clip's frames, cross-fading the frames two clips share."""

    def __init__(self) -> None:
        self.held: torch.Tensor | None = None  # the previous clip's frames not yet emitted
        self.held_first = 0

    def push(self, out: torch.Tensor, first_frame: int) -> Iterator[tuple[int, torch.Tensor]]:
        held = self.held
        if held is not None and first_frame < self.held_first + held.shape[2]:
            # cross-fade the frames both clips cover, linearly from the old clip to the new one
            n = self.held_first + held.shape[2] - first_frame
            yield self.held_first, held[:, :, :-n]
            w = (torch.arange(1, n + 1, dtype=out.dtype, device=out.device) / (n + 1)).view(1, 1, n, 1, 1)
            out = torch.cat([held[:, :, -n:] * (1 - w) + out[:, :, :n] * w, out[:, :, n:]], dim=2)
        elif held is not None:
            yield self.held_first, held
        self.held, self.held_first = out, first_frame

    def flush(self) -> Iterator[tuple[int, torch.Tensor]]:
        if self.held is not None:
            yield self.held_first, self.held
            self.held = None


def split_chunks(model: Tokenizer, chunks: Iterable[EncodedChunk], max_steps: int) -> Iterator[EncodedChunk]:
    """The chunks of a causal stream, each cut into pieces of at most ``max_steps`` latent steps (decoding
    them gives the same frames in less memory); chunks of independent clips unchanged."""
    layout, specs = model.frame_layout, model.latent_specs
    if not layout.causal:
        yield from chunks
        return
    for chunk in chunks:
        steps = _steps(model, chunk.latents, batched=False)
        if steps <= max_steps:
            yield chunk
            continue
        frame = chunk.first_frame
        for a in range(0, steps, max_steps):
            n = min(max_steps, steps - a)
            first = chunk.segment_start and a == 0  # a stream's first step decodes to one frame
            frames = n * layout.temporal_factor - (layout.temporal_factor - 1 if first else 0)
            latents = {k: v.narrow(specs[k].step_axis(False), a, n) for k, v in chunk.latents.items()}
            yield EncodedChunk(latents, chunk.first_latent + a, frame, frame + frames, first)
            frame += frames


def decode_chunks(
    model: Tokenizer,
    chunks: Iterable[EncodedChunk],
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    as_tensors: bool = False,
    only: str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes latent chunks back into (first_frame_index, uint8 frames (T, H, W, 3)) pieces, in order.

    Frames are those of the padded sequence; the caller trims padding. ``tile``: see ``encode_frames``.
    ``as_tensors``: yield the decoder's output (1, 3, T, H, W) in [-1, 1] instead (the bench scores it).
    ``only``: decode only this group of streams (one of ``model.stream_groups``; non-causal models).
    On CUDA (frames, not ``as_tensors``) a piece is handed out once the next one is queued on the device
    and its own copy to pinned host memory is complete (`runtime.ready_one_behind`).
    """
    pieces = _decode_chunks(model, chunks, autocast_dtype, tile, tile_overlap, as_tensors, only)
    yield from pieces if as_tensors else ready_one_behind(pieces, model.device)


def _decode_chunks(
    model: Tokenizer,
    chunks: Iterable[EncodedChunk],
    autocast_dtype: torch.dtype | None,
    tile: int | None,
    tile_overlap: int | None,
    as_tensors: bool,
    only: str | None,
) -> Iterator[tuple[int, np.ndarray]]:
    """`decode_chunks` with the frames possibly still on their way to the host (CUDA)."""
    check_only(only, model)
    device, dtype = model.device, model.dtype
    decoder = ChunkDecoder(model, tile, tile_overlap, only)
    fader = _ClipFader()
    next_frame = 0
    last_z: dict[str, torch.Tensor] = {}

    def emit(first: int, x: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
        if x.shape[2]:
            yield first, x if as_tensors else tensor_to_frames(x, non_blocking=True)

    def flush_stream() -> Iterator[tuple[int, np.ndarray]]:
        empty = {k: v[:, :, :0] if v.dtype != torch.int64 else v[:, :0] for k, v in last_z.items()}
        with torch.no_grad(), autocast(device, autocast_dtype):
            x = decoder(empty, final=True)
        yield from emit(next_frame, x)

    for chunk in chunks:
        z = _to_model(model, chunk.latents, device, dtype)
        if not model.frame_layout.causal:
            with torch.no_grad(), autocast(device, autocast_dtype):
                out = decoder(z).float()
            for first, x in fader.push(out, chunk.first_frame):
                yield from emit(first, x)
            continue
        if chunk.segment_start:
            if decoder.started:
                yield from flush_stream()
            decoder.reset()
            next_frame = chunk.first_frame
        last_z = z
        with torch.no_grad(), autocast(device, autocast_dtype):
            x = decoder(z)
        yield from emit(next_frame, x)
        next_frame += x.shape[2]
    for first, x in fader.flush():
        yield from emit(first, x)
    if decoder.started:
        yield from flush_stream()
