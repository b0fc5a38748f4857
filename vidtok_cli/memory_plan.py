"""Chunk and tile sizes that fit a memory budget (``--max-memory``).

The peak memory of the model's calls is measured at a few small sizes and extrapolated with a linear
model: a streaming call on ``T`` frames of ``P`` pixels peaks at about ``fixed + (a*T + b)*P`` bytes
(activations grow with frames and pixels; causal caches with pixels only) and leaves a causal state of
about ``state_fixed + s*P`` bytes for the next chunk. Encoding and decoding are measured apart; a plan
must fit both. The weights (parameters and buffers) count toward the budget; on the CPU so do the uint8
frames queued beside the model, the rest of the process (interpreter, libraries, oneDNN's reordered
weights: measured after a first small run) and what the heap holds beyond the live tensors
(``CPU_HEAP_OVERHEAD``). On CUDA the budget is the allocator's: tensors,
not the CUDA context or the cache of freed blocks.

Measuring works on CPU and CUDA: on CUDA with the caching allocator's peak statistics, on the CPU by
following every tensor storage the calls allocate (a dispatch mode; allocations inside a kernel, such as
convolution workspaces, are not seen). Only the `Tokenizer` interface and the streaming code of
``stream`` are used, so any family is planned the same way.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .errors import UsageError
from .frames import frames_to_tensor, tensor_to_frames
from .runtime import autocast
from .stream import (
    ChunkDecoder,
    ChunkEncoder,
    Tiling,
    decode_chunks,
    encode_frames,
    has_clip_level_streams,
)
from .tokenizer import Tokenizer

DEFAULT_CHUNK = 16  # frames: `vidtok encode`'s default, and the largest chunk a plan picks
# Host memory the process holds per byte of live tensors at the peak of a CPU run: the heap kept for reuse
# (runtime.reuse_freed_memory) fragments, and kernels allocate workspaces the tensor count does not see.
# Measured (peak RSS above a warm baseline / the tensors' peak, whole frames): 1.3-1.7 for the default
# and the full-size model (docs/PERFORMANCE.md).
CPU_HEAP_OVERHEAD = 1.6
_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
}  # fmt: skip


def parse_memory(text: str | int) -> int:
    """Bytes of a memory size: ``4GiB``, ``4G`` (binary, like ``4GiB``), ``1.5GB`` (decimal), ``512MiB``,
    ``1000000`` (bytes). UsageError for anything else or a size that is not positive."""
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise UsageError(
                f"--max-memory {text!r}: expected a size such as 4GiB, 4G, 512MiB, 1.5GB or plain bytes"
            )
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise UsageError(f"--max-memory must be more than 0 bytes, got {text!r}")
    return n


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``3.5 KiB``, ``1.7 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# -- measuring ------------------------------------------------------------------------------------------


def _real(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type != "meta"


class _LiveStorages(TorchDispatchMode):
    """Counts the bytes of tensor storages created while active (each storage once) and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: dict[int, int] = {}

    def _freed(self, key: int, n: int) -> None:
        if self._seen.pop(key, None) is not None:
            self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # views and in-place results share an input's storage: nothing new (e.g. views of the weights)
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if _real(t)}
        for t in tree_flatten(out)[0]:
            if not _real(t):
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self._seen or key in inputs:
                continue
            self._seen[key] = n
            self.live += n
            weakref.finalize(st, self._freed, key, n)
        self.peak = max(self.peak, self.live)
        return out


class PeakMeter:
    """Bytes of tensors allocated on ``device`` since the meter started: ``live`` now, ``peak`` since the
    last ``reset()``. CUDA: the allocator's statistics (everything on the device, above what was allocated
    at the start); elsewhere: the storages created while the meter is active (use it as a context manager).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._mode: _LiveStorages | None = None
        self._base = 0

    def __enter__(self) -> PeakMeter:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self._base = int(torch.cuda.memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._mode = _LiveStorages()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)

    @property
    def live(self) -> int:
        if self.cuda:
            return int(torch.cuda.memory_allocated(self.device)) - self._base
        assert self._mode is not None
        return self._mode.live

    @property
    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device)) - self._base
        assert self._mode is not None
        return self._mode.peak

    def reset(self) -> None:
        """Starts a new peak from what is live now."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            assert self._mode is not None
            self._mode.peak = self._mode.live


def measure_peak(fn: Callable[[], Any], device: torch.device | str) -> int:
    """Peak bytes of the tensors ``fn()`` allocates on ``device`` (see `PeakMeter`), its result dropped."""
    with PeakMeter(torch.device(device)) as meter:
        fn()
    return meter.peak


def weights_bytes(model: Tokenizer) -> int:
    """Bytes of the model's parameters and buffers."""
    module = model.module
    return sum(t.nbytes for t in module.parameters()) + sum(t.nbytes for t in module.buffers())


def runtime_bytes(model: Tokenizer) -> int:
    """On the CPU (Linux): the resident memory of the process now, less the model's parameters and
    buffers (the interpreter, torch and the video libraries; after a first run also oneDNN's reordered
    copies of the convolution weights and its kernels); elsewhere 0."""
    if model.device.type != "cpu":
        return 0
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0
    return max(0, resident - weights_bytes(model))


# -- the peak model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallPeak:
    """The fitted memory of one direction (encode or decode) of the model's streaming calls.

    ``peak(T, P)``: bytes at the peak of a call on ``T`` frames of ``P`` pixels, with the state of the
    previous chunk, the input and the output included (above the weights). ``state(P)``: bytes of the
    causal state carried to the next chunk.
    """

    fixed: float
    per_frame_pixel: float
    per_pixel: float
    state_fixed: float = 0.0
    state_per_pixel: float = 0.0

    def peak(self, frames: int, pixels: int) -> float:
        return max(0.0, self.fixed + (self.per_frame_pixel * frames + self.per_pixel) * pixels)

    def state(self, pixels: int) -> float:
        return max(0.0, self.state_fixed + self.state_per_pixel * pixels)


@dataclass(frozen=True)
class Probe:
    """One measurement: (frames, height, width) -> (peak bytes of the call, state bytes after it)."""

    frames: int
    height: int
    width: int
    peak: int
    state: int


def _input_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def probe_model(
    model: Tokenizer, frames: int, height: int, width: int, autocast_dtype: torch.dtype | None = None
) -> tuple[Probe, Probe]:
    """Encodes and decodes a stream of ``frames`` frames of ``height`` x ``width`` as the streaming code does,
    and measures (encode, decode). Causal models: a first chunk of one frame, then the measured chunk of
    ``frames`` frames, which carries the first chunk's state. Models of clips: one clip (``frames`` is
    ignored)."""
    device, dtype = model.device, model.dtype
    layout = model.frame_layout
    causal = layout.causal
    n = frames if causal else layout.clip_frames
    pieces = (
        [_input_frames(1, height, width, 1), _input_frames(n, height, width)]
        if causal
        else [_input_frames(n, height, width)]
    )
    encoder, decoder = ChunkEncoder(model), ChunkDecoder(model)
    latents = []
    with torch.no_grad(), autocast(device, autocast_dtype):
        with PeakMeter(device) as meter:
            for i, piece in enumerate(pieces):
                if i == len(pieces) - 1:
                    meter.reset()
                x = frames_to_tensor(piece, device, dtype)
                out = encoder(x)
                latents.append(out.latents)
                del x, out
            enc = Probe(n, height, width, meter.peak, meter.live - _nbytes(latents, device))
        with PeakMeter(device) as meter:
            for i, z in enumerate(latents):
                if i == len(latents) - 1:
                    meter.reset()
                y = decoder(z)
                y = tensor_to_frames(y.float())
                del y
            dec = Probe(n, height, width, meter.peak, meter.live)
    return enc, dec


def _nbytes(latents: list[dict[str, torch.Tensor]], device: torch.device) -> int:
    """Bytes of the storages of ``latents`` on ``device``."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for d in latents
        for t in d.values()
        if t.device == device
    }
    return sum(storages.values())


def fit(probes: list[Probe]) -> CallPeak:
    """The linear peak model through three probes (T1, P1), (T2, P1), (T1, P2), or for models of clips
    (the frame count fixed) through two, (P1), (P2), or one (a fixed frame size: the model is that probe)."""
    p = probes
    px = [q.height * q.width for q in p]
    if len(p) == 1:
        return CallPeak(p[0].peak, 0.0, 0.0, p[0].state, 0.0)
    if len(p) == 2:
        b = max(0.0, (p[1].peak - p[0].peak) / (px[1] - px[0]))
        s = max(0.0, (p[1].state - p[0].state) / (px[1] - px[0]))
        return CallPeak(max(0.0, p[0].peak - b * px[0]), 0.0, b, max(0.0, p[0].state - s * px[0]), s)
    a = max(0.0, (p[1].peak - p[0].peak) / ((p[1].frames - p[0].frames) * px[0]))
    per_px = max(0.0, (p[2].peak - p[0].peak) / (px[2] - px[0]))  # a*T1 + b
    b = max(0.0, per_px - a * p[0].frames)
    c = max(0.0, p[0].peak - (a * p[0].frames + b) * px[0])
    s = max(0.0, (p[2].state - p[0].state) / (px[2] - px[0]))
    return CallPeak(c, a, b, max(0.0, p[0].state - s * px[0]), s)


# -- the model's memory and the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryModel:
    """The memory a model needs on its device: ``weights`` and the fitted ``encode`` / ``decode`` calls.

    ``clip_frames``: the fixed frames of a call for models of clips (None: causal, any chunk).
    ``host_frames``: count the uint8 frames queued in host memory beside the model (CPU devices).
    ``overhead``: what the allocator holds per byte of live tensors at the peak (see ``CPU_HEAP_OVERHEAD``).
    ``runtime``: what the process holds besides (CPU: `runtime_bytes`; CUDA: 0, the context is not counted).
    """

    weights: int
    encode: CallPeak
    decode: CallPeak
    spatial_factor: int
    clip_frames: int | None = None
    host_frames: bool = False
    input_bytes: int = 4
    overhead: float = 1.0
    runtime: int = 0

    def estimate(
        self,
        frames: int,
        height: int,
        width: int,
        tile: int | None = None,
        tile_overlap: int | None = None,
        directions: tuple[str, ...] = ("encode", "decode"),
        batch: int = 1,
    ) -> int:
        """Estimated peak bytes of streaming ``frames``-frame chunks of ``height`` x ``width`` (with tiles of
        ``tile`` pixels), the largest of ``directions``; weights included."""
        frames = self.clip_frames or frames
        px = height * width
        tiling = Tiling(height, width, tile, tile_overlap, self.spatial_factor) if tile else None
        full_in = 3 * frames * px * self.input_bytes * batch  # the chunk's frames as the model's input
        full_out = 3 * frames * px * 4 * batch  # decoded frames, float32
        worst = 0.0
        for d in directions:
            call = self.encode if d == "encode" else self.decode
            if tiling is None or not tiling.active:
                need = call.peak(frames, px * batch)
            else:
                n = len(tiling)
                tpx = (tiling.ys[0][1] - tiling.ys[0][0]) * (tiling.xs[0][1] - tiling.xs[0][0]) * batch
                states = (n - 1) * call.state(tpx)
                if d == "encode":  # the whole input beside the tile's call; converting it
                    need = max(
                        call.peak(frames, tpx) + states + full_in, states + call.state(tpx) + 2 * full_in
                    )
                else:  # the blended output beside the tile's call; converting it to uint8
                    need = max(
                        call.peak(frames, tpx) + states + full_out, states + call.state(tpx) + 4 * full_out
                    )
            if self.host_frames:  # queued uint8 frames: read ahead (encode), written behind (decode)
                need += (3 if d == "encode" else 4) * frames * px * 3 * batch
            worst = max(worst, need)
        return int(self.weights + self.runtime + self.overhead * worst)


_MEASURED: weakref.WeakKeyDictionary[Any, dict[Any, MemoryModel]] = weakref.WeakKeyDictionary()


def measure_model(model: Tokenizer, autocast_dtype: torch.dtype | None = None) -> MemoryModel:
    """Probes the model at small sizes (seconds; remembered per model and precision) and fits its
    `MemoryModel`. Causal models: chunks of ``tdf`` and ``2*tdf`` frames of ``4f`` x ``4f`` pixels and one
    of ``tdf`` frames of ``6f`` x ``6f`` (``f`` the spatial factor); models of clips: one clip at each size,
    or at the one frame size they take."""
    cache = _MEASURED.setdefault(model.module, {})
    key = (str(model.device), model.dtype, autocast_dtype)
    if key in cache:
        return cache[key]
    with torch.compiler.set_stance("force_eager"):  # a compiled model: no graphs for the probe sizes
        mm = _measure(model, autocast_dtype)
    cache[key] = mm
    return mm


def _measure(model: Tokenizer, autocast_dtype: torch.dtype | None) -> MemoryModel:
    layout = model.frame_layout
    f, tdf = layout.spatial_factor, layout.temporal_factor
    if layout.input_size is not None:
        sizes = [(tdf, *layout.input_size)]
    elif layout.causal:
        sizes = [(tdf, 4 * f, 4 * f), (2 * tdf, 4 * f, 4 * f), (tdf, 6 * f, 6 * f)]
    else:
        sizes = [(tdf, 4 * f, 4 * f), (tdf, 6 * f, 6 * f)]
    if model.device.type == "cpu":  # a first small run, as a run makes it: oneDNN's weights and kernels
        n = 1 + tdf if layout.causal else layout.clip_frames
        h, w = layout.input_size or (4 * f, 4 * f)
        with torch.no_grad():
            chunks = encode_frames(model, iter(_input_frames(n, h, w)), tdf, autocast_dtype=autocast_dtype)
            for _ in decode_chunks(model, chunks, autocast_dtype):
                pass
    runtime = runtime_bytes(model)  # before the probes, whose freed memory the run reuses
    probes = [probe_model(model, t, h, w, autocast_dtype) for t, h, w in sizes]
    return MemoryModel(
        weights=weights_bytes(model),
        encode=fit([p[0] for p in probes]),
        decode=fit([p[1] for p in probes]),
        spatial_factor=f,
        clip_frames=None if layout.causal else layout.clip_frames,
        host_frames=model.device.type == "cpu",
        input_bytes=torch.empty((), dtype=model.dtype).element_size(),
        overhead=CPU_HEAP_OVERHEAD if model.device.type == "cpu" else 1.0,
        runtime=runtime,
    )


@dataclass(frozen=True)
class Plan:
    """Chunk and tile sizes for a memory budget, and the estimated peak (bytes) they reach.

    ``tile`` None: whole frames. ``warning``: one line when options the user set keep the estimate above
    the budget (the plan then honours them anyway).
    """

    chunk_frames: int
    tile: int | None
    tile_overlap: int | None
    estimated_peak_bytes: int
    budget_bytes: int
    warning: str | None = None

    def describe(self) -> str:
        """One line: ``max-memory 2.0 GiB: chunk 8 frames, tile 256 px (estimated peak 1.7 GiB)``."""
        tile = f"tile {self.tile} px" if self.tile else "whole frames"
        return (
            f"max-memory {format_bytes(self.budget_bytes)}: chunk {self.chunk_frames} frames, {tile} "
            f"(estimated peak {format_bytes(self.estimated_peak_bytes)})"
        )


def _tile_choices(height: int, width: int, factor: int, overlap: int | None) -> list[int]:
    """Tile sizes (multiples of ``factor``) that split frames of ``height`` x ``width``: for each number of
    tiles the smallest size giving it (the least memory and repeated work), fewest tiles first."""
    by_count: dict[int, int] = {}
    for t in range((max(height, width) - 1) // factor * factor, 4 * factor - 1, -factor):
        if overlap is not None and overlap // factor * factor > t // 2:
            continue
        tiling = Tiling(height, width, t, overlap, factor)
        if tiling.active:
            by_count[len(tiling)] = t
    return [by_count[n] for n in sorted(by_count)]


def plan_memory(
    model: Tokenizer,
    frame_size: tuple[int, int],
    budget: int | str,
    *,
    chunk_frames: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    decode_only: bool = False,
    max_chunk: int = DEFAULT_CHUNK,
    batch: int = 1,
) -> Plan:
    """The chunk and tile sizes to stream frames of ``frame_size`` (H, W) within ``budget`` bytes.

    Whole frames with the largest chunk that fits (causal models: a multiple of the temporal factor, at
    most ``max_chunk``; models of clips: their clip); else the smallest chunk with the fewest tiles that
    fit (the smallest tile size giving that many, with the default overlap of a quarter tile). So a smaller
    budget never gives a larger chunk or tile. Tiles shrink the activations of a call, not the causal
    state, which every tile keeps: a causal model needs its state for whole frames whatever the tiles. Encoding and
    decoding must both fit (``decode_only``: decoding). ``chunk_frames`` / ``tile`` / ``tile_overlap`` set
    by the user are kept; when they keep the estimate above the budget the plan says so in ``warning``.
    UsageError when nothing fits.
    """
    budget = parse_memory(budget)
    h, w = frame_size
    layout = model.frame_layout
    f, tdf = layout.spatial_factor, layout.temporal_factor
    floor = weights_bytes(model) + runtime_bytes(model)
    if floor >= budget:  # before any probe: nothing can fit
        raise UsageError(
            f"--max-memory {format_bytes(budget)} is too little: the model's weights"
            f"{' and the rest of the process' if model.device.type == 'cpu' else ''} take {format_bytes(floor)}"
        )
    mm = measure_model(model, autocast_dtype)
    directions = ("decode",) if decode_only else ("encode", "decode")
    if not layout.causal:
        chunks = [layout.clip_frames]
    elif chunk_frames is not None:
        chunks = [chunk_frames]
    else:
        chunks = [k * tdf for k in range(max(1, max_chunk // tdf), 0, -1)]
    tileable = layout.input_size is None and not has_clip_level_streams(model)
    if tile is not None:
        tiles: list[int | None] = [tile]
    else:
        tiles = [None] + (_tile_choices(h, w, f, tile_overlap) if tileable else [])

    def est(t: int, tl: int | None) -> int:
        frames = -(-t // tdf) * tdf if layout.causal else t
        return mm.estimate(frames, h, w, tl, tile_overlap, directions, batch)

    def result(t: int, tl: int | None, warning: str | None = None) -> Plan:
        return Plan(t, tl, tile_overlap if tl else None, est(t, tl), budget, warning)

    for t in chunks:  # whole frames (or the one tile asked for): the largest chunk that fits
        if est(t, tiles[0]) <= budget:
            return result(t, tiles[0])
    smallest = chunks[-1]
    for tl in tiles[1:]:  # the fewest tiles that fit with the smallest chunk
        if est(smallest, tl) <= budget:
            return result(smallest, tl)
    best = min(((t, tl) for t in chunks[-1:] for tl in tiles), key=lambda p: est(*p))
    if chunk_frames is not None and layout.causal or tile is not None:
        given = " and ".join(
            s
            for s, v in ((f"--chunk-frames {chunk_frames}", chunk_frames), (f"--tile {tile}", tile))
            if v is not None
        )
        return result(
            *best,
            f"{given}: the estimated peak {format_bytes(est(*best))} exceeds --max-memory "
            f"{format_bytes(budget)}",
        )
    tiled = f", tile {best[1]} px" if best[1] else ""
    raise UsageError(
        f"--max-memory {format_bytes(budget)} is too little for this model at {w}x{h}: the smallest plan "
        f"(chunk {best[0]} frames{tiled}) needs about {format_bytes(est(*best))} "
        f"(weights {format_bytes(mm.weights)}"
        f"{f', the rest of the process {format_bytes(mm.runtime)}' if mm.runtime else ''})"
    )
