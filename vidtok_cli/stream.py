"""Streaming encode/decode of frame sequences of any length in bounded memory.

Causal models: frames are fed to ``encode_chunk`` ``chunk_frames`` at a time with the causal caches
carried between chunks, so the latents equal those of encoding the whole video at once. The sequence
is padded at the end with copies of its last frame to a native length ``1 + k * tdf``. With
``segment_frames`` the video is cut into independent streams (each starting with a frame encoded alone),
so decoding can start at any segment boundary.

Non-causal models: independent clips of ``clip_frames`` frames (the last one padded with its last frame).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .arch.vidtok import VidTokModel
from .errors import UsageError


@dataclass
class LatentChunk:
    """Latents produced for a span of frames.

    ``latent`` (C, t, h, w) float32 on the CPU; ``indices`` (t, h, w) int64 for FSQ models. Frame ranges
    count frames of the padded sequence (``end_frame`` may exceed the source length by the padding).
    ``segment_start`` marks the first chunk of an independent stream.
    """

    latent: torch.Tensor
    indices: torch.Tensor | None
    first_latent: int
    first_frame: int
    end_frame: int
    segment_start: bool


def frames_to_tensor(frames: list[np.ndarray], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> (1, 3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).to(device)
    return (x.permute(3, 0, 1, 2).unsqueeze(0).to(dtype) / 127.5 - 1.0).contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), rounded to nearest."""
    y = ((x[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(1, 2, 3, 0).cpu().numpy()


def native_frame_count(n: int, model: VidTokModel, clip_frames: int = 16) -> int:
    """The padded frame count the model needs for ``n`` frames."""
    if n <= 0:
        return 0
    if model.cfg.causal:
        tdf = model.cfg.time_downsample_factor
        return 1 + -(-(n - 1) // tdf) * tdf
    return -(-n // clip_frames) * clip_frames


def check_segment_frames(segment_frames: int | None, model: VidTokModel, clip_frames: int = 16) -> None:
    if segment_frames is None:
        return
    tdf = model.cfg.time_downsample_factor
    if model.cfg.causal and (segment_frames < 1 or (segment_frames - 1) % tdf):
        raise UsageError(
            f"--segment-frames must be 1 + k*{tdf} for this model (e.g. {1 + 8 * tdf}), got {segment_frames}"
        )
    if not model.cfg.causal and segment_frames % clip_frames:
        raise UsageError(f"--segment-frames must be a multiple of {clip_frames} for a non-causal model")


class _Autocast:
    """bf16/fp16 autocast on CUDA when the model runs in float32 but a lower compute dtype was asked for."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.ctx = (
            torch.autocast(device.type, dtype=dtype) if dtype is not None and device.type == "cuda" else None
        )

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


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


class ChunkEncoder:
    """Runs one stream of chunks through the encoder, keeping the causal state(s) between calls.

    ``tile`` (pixels) splits frames into overlapping tiles, each with its own state; the encoder
    outputs (moments) are blended before the regularizer, so FSQ tokens stay valid codes.
    """

    def __init__(self, model: VidTokModel, tile: int | None = None, tile_overlap: int | None = None) -> None:
        self.model, self.tile, self.tile_overlap = model, tile, tile_overlap
        self.states: dict[int, object] = {}

    def reset(self) -> None:
        """Starts a new independent stream (segment)."""
        self.states = {}

    def _run(self, x: torch.Tensor, k: int):  # noqa: ANN202 - EncodeOutput
        if self.model.cfg.causal:
            out, self.states[k] = self.model.encode_chunk(x, self.states.get(k))
            return out
        return self.model.encode(x)

    def __call__(self, x: torch.Tensor):  # noqa: ANN204 - EncodeOutput
        h, w = x.shape[-2:]
        f = self.model.cfg.spatial_factor
        tiling = Tiling(h, w, self.tile, self.tile_overlap, f) if self.tile else None
        if tiling is None or not tiling.active:
            return self._run(x, 0)
        px = dict((k, (ys, xs)) for k, ys, xs, _ in tiling.regions(1))
        blend = _Blend()
        for k, ys, xs, wt in tiling.regions(f):
            out = self._run(x[..., px[k][0], px[k][1]], k)
            blend.add(out.moments, ys, xs, wt, h // f, w // f)
        if blend.acc is None or blend.acc.shape[2] == 0:
            return out
        return self.model.regularize(blend.result(out.moments.dtype))


class ChunkDecoder:
    """Runs one stream of latent chunks through the decoder, keeping the causal state(s) between calls.

    ``tile`` (pixels of output) splits latents into overlapping tiles, each decoded with its own state
    and blended in pixel space.
    """

    def __init__(self, model: VidTokModel, tile: int | None = None, tile_overlap: int | None = None) -> None:
        self.model, self.tile, self.tile_overlap = model, tile, tile_overlap
        self.states: dict[int, object] = {}

    def reset(self) -> None:
        self.states = {}

    @property
    def started(self) -> bool:
        return bool(self.states)

    def _run(self, z: torch.Tensor, k: int, final: bool) -> torch.Tensor:
        if self.model.cfg.causal:
            out, self.states[k] = self.model.decode_chunk(z, self.states.get(k), final=final)
            return out
        return self.model.decode(z)

    def __call__(self, z: torch.Tensor, final: bool = False) -> torch.Tensor:
        f = self.model.cfg.spatial_factor
        h, w = z.shape[-2] * f, z.shape[-1] * f
        tiling = Tiling(h, w, self.tile, self.tile_overlap, f) if self.tile else None
        if tiling is None or not tiling.active:
            return self._run(z, 0, final)
        lat = dict((k, (ys, xs)) for k, ys, xs, _ in tiling.regions(f))
        blend = _Blend()
        for k, ys, xs, wt in tiling.regions(1):
            out = self._run(z[..., lat[k][0], lat[k][1]], k, final)
            blend.add(out, ys, xs, wt, h, w)
        if out.shape[2] == 0:
            return out.new_zeros((*out.shape[:3], h, w))
        return blend.result(out.dtype)


def _model_device_dtype(model: VidTokModel) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def encode_frames(
    model: VidTokModel,
    frames: Iterable[np.ndarray],
    chunk_frames: int = 16,
    segment_frames: int | None = None,
    clip_frames: int = 16,
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    clip_overlap: int = 0,
) -> Iterator[LatentChunk]:
    """Encodes uint8 (H, W, 3) frames (already at a size the model accepts) into latent chunks.

    ``tile``/``tile_overlap`` (pixels): encode overlapping spatial tiles separately (bounded memory for
    large frames) and blend them. ``clip_overlap`` (non-causal models): consecutive clips share this
    many frames, which ``decode_chunks`` cross-fades to hide clip seams.
    """
    if chunk_frames < 1:
        raise UsageError("--chunk-frames must be >= 1")
    check_segment_frames(segment_frames, model, clip_frames)
    if clip_overlap:
        yield from _overlapping_clips(
            model, frames, clip_frames, clip_overlap, autocast_dtype, tile, tile_overlap
        )
        return
    device, dtype = _model_device_dtype(model)
    amp = _Autocast(device, autocast_dtype)
    causal = model.cfg.causal
    tdf = model.cfg.time_downsample_factor
    if not causal:
        chunk_frames = clip_frames
    seg_len = segment_frames or (0 if causal else clip_frames)

    latent_count = 0
    frame_pos = 0  # frames of the padded sequence consumed so far
    seg_first_frame = 0
    seg_latents = 0
    encoder = ChunkEncoder(model, tile, tile_overlap)
    new_segment = True
    buffer: list[np.ndarray] = []
    last: np.ndarray | None = None

    def run(chunk: list[np.ndarray]) -> Iterator[LatentChunk]:
        nonlocal latent_count, frame_pos, new_segment, seg_latents
        x = frames_to_tensor(chunk, device, dtype)
        with torch.no_grad(), amp:
            out = encoder(x)
        frame_pos += len(chunk)
        t = out.latent.shape[2]
        if t == 0:
            return
        first = seg_latents
        seg_latents += t
        # latent j of a causal segment covers frames {0} for j = 0, else (1 + (j-1)*tdf, 1 + j*tdf)
        if causal:
            f0 = seg_first_frame + (0 if first == 0 else 1 + (first - 1) * tdf)
            f1 = seg_first_frame + 1 + (seg_latents - 1) * tdf
        else:
            f0, f1 = frame_pos - len(chunk), frame_pos
        yield LatentChunk(
            latent=out.latent[0].float().cpu(),
            indices=None if out.indices is None else out.indices[0].cpu(),
            first_latent=latent_count,
            first_frame=f0,
            end_frame=f1,
            segment_start=new_segment,
        )
        latent_count += t
        new_segment = False

    def end_segment() -> Iterator[LatentChunk]:
        nonlocal buffer, new_segment, seg_first_frame, seg_latents
        n = frame_pos + len(buffer) - seg_first_frame
        pad = native_frame_count(n, model, clip_frames) - n
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
    if last is None:
        return
    if frame_pos + len(buffer) > seg_first_frame:
        yield from end_segment()


def check_clip_overlap(clip_overlap: int, model: VidTokModel, clip_frames: int = 16) -> None:
    """Validates ``--clip-overlap`` for this model."""
    if not clip_overlap:
        return
    if model.cfg.causal:
        raise UsageError("--clip-overlap is for non-causal models; causal models stream exactly without it")
    tdf = model.cfg.time_downsample_factor
    if not 0 < clip_overlap < clip_frames or clip_overlap % tdf:
        raise UsageError(
            f"--clip-overlap must be a multiple of {tdf} between 1 and {clip_frames - 1} frames, got {clip_overlap}"
        )


def _overlapping_clips(
    model: VidTokModel,
    frames: Iterable[np.ndarray],
    clip_frames: int,
    overlap: int,
    autocast_dtype: torch.dtype | None,
    tile: int | None,
    tile_overlap: int | None,
) -> Iterator[LatentChunk]:
    """Non-causal clips of ``clip_frames`` starting every ``clip_frames - overlap`` frames."""
    check_clip_overlap(overlap, model, clip_frames)
    device, dtype = _model_device_dtype(model)
    amp = _Autocast(device, autocast_dtype)
    encoder = ChunkEncoder(model, tile, tile_overlap)
    stride = clip_frames - overlap
    window: list[np.ndarray] = []
    start = 0  # frame index of window[0]
    latent_count = 0
    ran = False

    def run(clip: list[np.ndarray], first: int) -> LatentChunk:
        nonlocal latent_count, ran
        ran = True
        with torch.no_grad(), amp:
            out = encoder(frames_to_tensor(clip, device, dtype))
        c = LatentChunk(
            latent=out.latent[0].float().cpu(),
            indices=None if out.indices is None else out.indices[0].cpu(),
            first_latent=latent_count,
            first_frame=first,
            end_frame=first + clip_frames,
            segment_start=True,
        )
        latent_count += out.latent.shape[2]
        return c

    for frame in frames:
        window.append(frame)
        if len(window) == clip_frames:
            yield run(window, start)
            window, start = window[stride:], start + stride
    # the frames not yet covered by a full clip: one last clip, padded with the last frame
    if window and (not ran or len(window) > overlap):
        yield run(window + [window[-1]] * (clip_frames - len(window)), start)


def decode_chunks(
    model: VidTokModel,
    chunks: Iterable[LatentChunk],
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes latent chunks back into (first_frame_index, uint8 frames (T, H, W, 3)) pieces, in order.

    Frames are those of the padded sequence; the caller trims padding. ``tile``: see ``encode_frames``.
    """
    device, dtype = _model_device_dtype(model)
    amp = _Autocast(device, autocast_dtype)
    decoder = ChunkDecoder(model, tile, tile_overlap)
    held: torch.Tensor | None = None  # non-causal overlap: the previous clip's frames not yet emitted
    held_first = 0
    next_frame = 0
    last_z = torch.zeros(0)

    def emit(x: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
        nonlocal next_frame
        if x.shape[2]:
            frames = tensor_to_frames(x)
            yield next_frame, frames
            next_frame += frames.shape[0]

    for chunk in chunks:
        z = chunk.latent.unsqueeze(0).to(device=device, dtype=dtype)
        if chunk.indices is not None:
            z = model.indices_to_latent(chunk.indices.unsqueeze(0).to(device)).to(dtype)
        with torch.no_grad(), amp:
            if not model.cfg.causal:
                out = decoder(z).float()
                if held is not None and chunk.first_frame < held_first + held.shape[2]:
                    # cross-fade the frames both clips cover, linearly from the old clip to the new one
                    n = held_first + held.shape[2] - chunk.first_frame
                    next_frame = held_first
                    yield from emit(held[:, :, :-n])
                    w = (torch.arange(1, n + 1, dtype=out.dtype) / (n + 1)).view(1, 1, n, 1, 1)
                    out = torch.cat([held[:, :, -n:] * (1 - w) + out[:, :, :n] * w, out[:, :, n:]], dim=2)
                    held_first = chunk.first_frame
                elif held is not None:
                    next_frame = held_first
                    yield from emit(held)
                    held_first = chunk.first_frame
                else:
                    held_first = chunk.first_frame
                held = out
                continue
            if chunk.segment_start:
                if decoder.started:
                    yield from emit(decoder(last_z[:, :, :0], final=True))
                decoder.reset()
                next_frame = chunk.first_frame
            last_z = z
            yield from emit(decoder(z))
    if held is not None:
        next_frame = held_first
        yield from emit(held)
    if decoder.started:
        with torch.no_grad(), amp:
            yield from emit(decoder(last_z[:, :, :0], final=True))
