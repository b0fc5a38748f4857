"""Export a .vtok file's latent streams as plain arrays (safetensors or npz) for other training code.

Every stream becomes one array named after it, its chunks concatenated along the stream's time axis
(continuous streams float32, token streams int64), plus per-chunk arrays ``<stream>.first_frame``,
``<stream>.end_frame`` and ``<stream>.first_step`` (where each chunk starts along that axis). The file's
header goes along as JSON: safetensors metadata ``header`` (with ``format``, the .vtok version), or a 0-d
string array ``header`` in an npz. Motion-token files (Video-LaVIT) add their clips from the header:
``key_frame_indices`` (each clip's first frame in the 6 fps stream) and ``clip_valid_frames`` (int64).
Quantized streams give their dequantized values; with ``integers`` also
``<stream>.q`` (the stored integers, int32, same layout) and ``<stream>.offset`` / ``<stream>.step``
(float32, one row per chunk, one column per channel: value = offset + step * q). numpy and safetensors
only: no torch. ``read_latents`` is the one-call read of a file's latents as float32 arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path, refuse_existing
from .errors import UsageError, VidtokError
from .vtok import VtokReader
from .vtok.format import RecordType
from .vtok.quant import decode_quantized, from_channels

FORMATS = {".safetensors": "safetensors", ".npz": "npz"}
# per-clip header lists exported as arrays: name -> (header section, key)
CLIP_ARRAYS = {
    "key_frame_indices": ("motion", "key_frame_indices"),
    "clip_valid_frames": ("motion", "valid_frames"),
}


def clip_arrays(header: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-clip lists a header records (``CLIP_ARRAYS``) as int64 arrays; {} for other files."""
    out: dict[str, np.ndarray] = {}
    for name, (section, key) in CLIP_ARRAYS.items():
        sec = header.get(section)
        values = sec.get(key) if isinstance(sec, dict) else None
        if isinstance(values, list):
            out[name] = np.asarray(values, dtype=np.int64)
    return out


def stream_arrays(reader: VtokReader) -> dict[str, np.ndarray]:
    """The arrays an export holds, by name: each stream concatenated over its time axis, and per-chunk
    ``<stream>.first_frame``, ``<stream>.end_frame``, ``<stream>.first_step`` (int64)."""
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in reader.streams}
    first_frames: list[int] = []
    end_frames: list[int] = []
    for chunk in reader.iter_chunks():
        for name, a in chunk.latents.items():
            parts[name].append(a)
        first_frames.append(chunk.first_frame)
        end_frames.append(chunk.end_frame)
    out: dict[str, np.ndarray] = {}
    for s in reader.streams:
        dtype = np.int64 if s.discrete else np.float32
        if parts[s.name]:
            out[s.name] = np.ascontiguousarray(np.concatenate(parts[s.name], axis=s.step_axis), dtype=dtype)
        else:
            out[s.name] = np.zeros(s.chunk_shape(0), dtype=dtype)
        steps = [a.shape[s.step_axis] for a in parts[s.name]]
        out[f"{s.name}.first_frame"] = np.asarray(first_frames, dtype=np.int64)
        out[f"{s.name}.end_frame"] = np.asarray(end_frames, dtype=np.int64)
        out[f"{s.name}.first_step"] = np.asarray(np.cumsum([0, *steps])[:-1], dtype=np.int64)
    return out


def quantized_arrays(reader: VtokReader) -> dict[str, np.ndarray]:
    """For each quantized stream: ``<stream>.q`` (int32, concatenated over the time axis like the stream's
    array), ``<stream>.offset`` and ``<stream>.step`` (float32, chunks x channels)."""
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {
        s.name: ([], [], []) for s in reader.streams if s.coding == "quant"
    }
    for rec in reader.records():
        if rec.type != RecordType.CHUNK or rec.stream not in parts:
            continue
        stream = reader.streams[rec.stream_index or 0]
        shape = tuple(rec.meta["shape"])
        _ = rec.payload  # decoded (and damage reported, naming the record) by the reader first
        qz = decode_quantized(rec.raw, stream, shape)
        q, off, step = parts[stream.name]
        q.append(from_channels(qz.q.astype(np.int32), stream, shape))
        off.append(qz.offset)
        step.append(qz.step)
    out: dict[str, np.ndarray] = {}
    for s in reader.streams:
        if s.name in parts and parts[s.name][0]:
            q, off, step = parts[s.name]
            out[f"{s.name}.q"] = np.ascontiguousarray(np.concatenate(q, axis=s.time_axis))
            out[f"{s.name}.offset"] = np.stack(off).astype(np.float32)
            out[f"{s.name}.step"] = np.stack(step).astype(np.float32)
    return out


def read_latents(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every latent stream of a .vtok file as one array, by stream name: continuous streams float32
    (quantized ones dequantized), token streams int64, chunks concatenated along the time axis."""
    reader = VtokReader(path)
    arrays = stream_arrays(reader)
    return {s.name: arrays[s.name] for s in reader.streams}


def export_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    force: bool = False,
    integers: bool = False,
) -> dict[str, Any]:
    """Writes every stream of the .vtok file ``src`` into ``dst`` (.safetensors or .npz); returns a summary.

    ``integers``: quantized streams also as their stored integers with per-chunk offsets and steps.

    An existing ``dst`` is refused unless ``force``; the output appears only when it is complete.
    """
    src, dst = Path(src), Path(dst)
    fmt = FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise UsageError(f"{dst}: the output must end in .safetensors or .npz")
    if dst.is_dir():
        raise VidtokError(f"{dst} is a directory")
    refuse_existing(dst, force, VidtokError)
    reader = VtokReader(src)
    arrays = stream_arrays(reader) | clip_arrays(reader.header)
    if integers:
        arrays.update(quantized_arrays(reader))
    header = json.dumps(reader.header, sort_keys=True)
    version = ".".join(map(str, reader.version))
    try:
        with atomic_path(dst, force=force, error=VidtokError) as tmp:
            if fmt == "safetensors":
                from safetensors.numpy import save_file

                save_file(arrays, str(tmp), metadata={"header": header, "format": f"vtok {version}"})
            else:
                with open(tmp, "wb") as f:
                    np.savez(f, header=np.array(header), **arrays)
    except OSError as e:
        raise VidtokError(f"cannot write {dst}: {e.strerror or e}") from None
    return {
        "input": str(src),
        "output": str(dst),
        "format": fmt,
        "streams": {s.name: list(arrays[s.name].shape) for s in reader.streams},
        "chunks": int(arrays[f"{reader.streams[0].name}.first_frame"].size),
        "file_bytes": dst.stat().st_size,
    }
