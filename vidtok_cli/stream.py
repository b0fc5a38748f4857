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
) -> Iterator[LatentChunk]:
    """Encodes uint8 (H, W, 3) frames (already at a size the model accepts) into latent chunks."""
    if chunk_frames < 1:
        raise UsageError("--chunk-frames must be >= 1")
    check_segment_frames(segment_frames, model, clip_frames)
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
    state = None
    new_segment = True
    buffer: list[np.ndarray] = []
    last: np.ndarray | None = None

    def run(chunk: list[np.ndarray]) -> Iterator[LatentChunk]:
        nonlocal latent_count, frame_pos, state, new_segment, seg_latents
        x = frames_to_tensor(chunk, device, dtype)
        with torch.no_grad(), amp:
            if causal:
                out, state = model.encode_chunk(x, state)
            else:
                out = model.encode(x)
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
        nonlocal buffer, state, new_segment, seg_first_frame, seg_latents
        n = frame_pos + len(buffer) - seg_first_frame
        pad = native_frame_count(n, model, clip_frames) - n
        if buffer or pad:
            assert last is not None
            buffer.extend([last] * pad)
            while buffer:
                yield from run(buffer[:chunk_frames])
                buffer = buffer[chunk_frames:]
        state, new_segment = None, True
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


def decode_chunks(
    model: VidTokModel,
    chunks: Iterable[LatentChunk],
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes latent chunks back into (first_frame_index, uint8 frames (T, H, W, 3)) pieces, in order.

    Frames are those of the padded sequence; the caller trims padding.
    """
    device, dtype = _model_device_dtype(model)
    amp = _Autocast(device, autocast_dtype)
    state = None
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
                next_frame = chunk.first_frame
                yield from emit(model.decode(z))
                continue
            if chunk.segment_start:
                if state is not None:
                    out, _ = model.decode_chunk(z[:, :, :0], state, final=True)
                    yield from emit(out)
                state = None
                next_frame = chunk.first_frame
            out, state = model.decode_chunk(z, state)
            last_z = z
            yield from emit(out)
    if state is not None:
        with torch.no_grad(), amp:
            out, _ = model.decode_chunk(last_z[:, :, :0], state, final=True)
        yield from emit(out)
