"""Where and how models run: the device, the precision (fp32 / bf16 / fp16 autocast), the TF32 policy,
``torch.compile`` modes and the copies between host and device (pinned and asynchronous on CUDA).

``--device auto`` picks CUDA when present. ``--precision auto`` is bf16 autocast on CUDA and float32 on the
CPU; ``fp32`` runs in float32 with TF32 off (results comparable with the official float32 code);
``bf16``/``fp16`` run the model under autocast (weights stay float32). Nothing here changes global torch
state except inside the context managers it returns; :func:`reuse_freed_memory` tunes the C library's
allocator for the whole process (called when a model is loaded).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .dtypes import SHORT, canonical_dtype
from .errors import UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
T = TypeVar("T")


class PrecisionWarning(UserWarning):
    """A chunk computed in reduced precision was not finite and was recomputed in float32."""


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters
_allocator_tuned: bool | None = None


def reuse_freed_memory() -> bool:
    """Makes the C library keep freed host memory for reuse instead of unmapping it (glibc only).

    By default every large tensor is a fresh ``mmap`` whose pages fault in one by one when first
    written; on a loaded CPU that costs more than the arithmetic of the element-wise layers. With
    ``mmap`` off for the heap and a high trim threshold, activations reuse pages already mapped. The
    process keeps its peak heap. Process-wide and idempotent; returns whether it took effect.
    ``VIDTOK_SYSTEM_MALLOC=1`` keeps the system default.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        if sys.platform.startswith("linux") and os.environ.get("VIDTOK_SYSTEM_MALLOC", "") in ("", "0"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                _allocator_tuned = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                )
            except (OSError, AttributeError):
                pass
    return _allocator_tuned


def resolve_device(device: Any = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch understands it."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UsageError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for but CUDA is not available")
    return dev


def torch_dtype(name: Any) -> torch.dtype:
    """The torch dtype of ``fp32``/``bf16``/``fp16`` (or long names, or a torch dtype)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    return getattr(torch, canonical_dtype(name))


def compute_dtype(precision: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision`` on ``device``; None means plain float32."""
    import torch

    if precision is None or str(precision) == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if isinstance(precision, str) and precision not in PRECISIONS and precision not in SHORT:
        canonical_dtype(precision, "precision")  # raises with the accepted names
    dt = torch_dtype(precision)
    return None if dt == torch.float32 else dt


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a compute dtype (None: fp32)."""
    return "fp32" if dtype is None else SHORT[str(dtype).removeprefix("torch.")]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device`` (CUDA or CPU); nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    import torch

    with torch.autocast(device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions on CUDA on or off inside the block; the previous setting after it."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _tensors(obj: Any, depth: int = 0) -> Iterator[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v, depth + 1)
    elif depth < 3 and isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v, depth + 1)
    elif depth < 3 and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name), depth + 1)


def all_finite(obj: Any) -> bool:
    """Whether every floating-point tensor in ``obj`` (a tensor, mapping, sequence or dataclass) is finite."""
    import torch

    return all(bool(torch.isfinite(t).all()) for t in _tensors(obj) if t.is_floating_point())


def state_in_float32(state: T) -> T:
    """``state`` (a model's opaque causal state: tensors in dataclasses, mappings, tuples or lists) with
    every reduced-precision floating-point tensor cast to float32; everything else shared as it is.

    Applied between chunks under autocast, so that the frames a causal stream carries into the next chunk
    are held in float32 (the policy that keeps reduced precision from compounding along a stream).
    """
    import torch

    def cast(obj: Any, depth: int) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.float() if obj.is_floating_point() and obj.dtype != torch.float64 else obj
        if depth >= 4:
            return obj
        if isinstance(obj, Mapping):
            return type(obj)((k, cast(v, depth + 1)) for k, v in obj.items())
        if isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
            return type(obj)(cast(v, depth + 1) for v in obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.replace(
                obj,
                **{f.name: cast(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj) if f.init},
            )
        return obj

    return cast(state, 0)


def recompute_if_not_finite(run: Callable[[], T], device: torch.device, what: str = "a chunk") -> T:
    """``run()``; when autocast is on and the result holds NaN or infinity, ``run()`` again in float32.

    ``run`` must be repeatable (start from the same causal state each time). The recomputation is
    reported with a :class:`PrecisionWarning`.
    """
    import torch

    out = run()
    if device.type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device.type) or all_finite(out):
        return out
    dtype = torch.get_autocast_dtype(device.type)
    warnings.warn(
        f"{what}: {precision_name(dtype)} output was not finite; recomputed in float32",
        PrecisionWarning,
        stacklevel=2,
    )
    with torch.autocast(device.type, enabled=False):
        return run()


COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_MODE_HELP = (
    "torch.compile mode with --compile: auto (reduce-overhead, i.e. CUDA graphs, on CUDA; default on CPU), "
    "default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs."
)


def check_compile_mode(mode: str, compile: bool = True) -> None:
    """UsageError for a ``--compile-mode`` that is not one of ``COMPILE_MODES``, or given without ``--compile``."""
    if mode not in COMPILE_MODES:
        raise UsageError(f"unknown --compile-mode {mode!r} (one of {', '.join(COMPILE_MODES)})")
    if mode != "auto" and not compile:
        raise UsageError(f"--compile-mode {mode} needs --compile")


def resolve_compile_mode(mode: str, device: Any) -> str:
    """The ``torch.compile`` mode of ``--compile-mode`` on ``device``: ``auto`` is ``reduce-overhead`` on
    CUDA (CUDA graphs replay the repeating chunk shapes) and ``default`` elsewhere; ``reduce-overhead``
    off CUDA is a UsageError (CUDA graphs need a CUDA device)."""
    import torch

    check_compile_mode(mode)
    dev = torch.device(device)
    if mode == "auto":
        return "reduce-overhead" if dev.type == "cuda" else "default"
    if mode == "reduce-overhead" and dev.type != "cuda":
        raise UsageError(f"--compile-mode reduce-overhead: CUDA graphs need a CUDA device, not {dev.type}")
    return mode


def uses_cuda_graphs(mode: str, device: Any) -> bool:
    """Whether inductor records CUDA graphs for this (resolved) compile mode on ``device``."""
    import torch

    if torch.device(device).type != "cuda":
        return False
    return bool(torch._inductor.list_mode_options(mode).get("triton.cudagraphs", False))


def _copy_tensors(obj: Any, copy: Callable[[Any], Any], depth: int = 0) -> Any:
    """``obj`` with ``copy(t)`` in place of each tensor ``t``: dicts, lists and dataclass instances are
    updated in place (a caller's state object sees the copies), tuples rebuilt; other objects kept."""
    import torch

    if isinstance(obj, torch.Tensor):
        return copy(obj)
    if depth >= 4:
        return obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _copy_tensors(obj[k], copy, depth + 1)
    elif isinstance(obj, list):
        obj[:] = [_copy_tensors(v, copy, depth + 1) for v in obj]
    elif isinstance(obj, tuple):
        items = [_copy_tensors(v, copy, depth + 1) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = {
            f.name: _copy_tensors(getattr(obj, f.name), copy, depth + 1) for f in dataclasses.fields(obj)
        }
        if obj.__dataclass_params__.frozen:
            return dataclasses.replace(
                obj, **{f.name: values[f.name] for f in dataclasses.fields(obj) if f.init}
            )
        for name, value in values.items():
            setattr(obj, name, value)
    return obj


def _cuda_clone(t: Any) -> Any:
    return t.clone() if t.is_cuda else t


def outside_graph_pool(fn: Callable[..., T], copy: Callable[[Any], Any] | None = None) -> Callable[..., T]:
    """``fn`` whose results leave the CUDA-graph memory pool: every tensor it returns, and every tensor in
    the containers it was given (a causal ``StreamState`` it updated), is replaced by ``copy(t)`` (default:
    a clone of each CUDA tensor).

    CUDA graph trees (``reduce-overhead``) reuse a graph's output memory on the next call of a compiled
    module and free the previous call's outputs; the causal caches of chunk k are outputs of chunk k and
    inputs of chunk k+1 (and the encoder's output is the regularizer's input), so without this copy
    they would be overwritten (torch raises "accessing tensor output of CUDAGraphs that has been
    overwritten by a subsequent run").
    """

    def call(*args: Any, **kwargs: Any) -> T:
        out = fn(*args, **kwargs)
        move = copy or _cuda_clone
        for a in (*args, *kwargs.values()):
            if isinstance(a, (dict, list)) or (dataclasses.is_dataclass(a) and not isinstance(a, type)):
                _copy_tensors(a, move)
        return _copy_tensors(out, move)

    return call


def _module_device(tokenizer: Any) -> Any:
    device = getattr(tokenizer, "device", None)
    if device is not None:
        return device
    first = next(iter(tokenizer.module.parameters()), None)
    return first.device if first is not None else "cpu"


def compile_model(tokenizer: Any, backend: str = "inductor", mode: str = "auto") -> Any:
    """Compiles the tokenizer's network with ``torch.compile`` in place (``--compile``); returns it.

    Each top-level part (encoder, decoder, regularizer) is compiled on its own, so that the streaming
    calls keep their Python control flow; shapes repeat from chunk to chunk, so after the first chunks
    no more compilation happens. Compilation takes minutes on a CPU, hence off by default. ``backend``: the
    ``torch.compile`` backend (``aot_eager`` traces the same graphs without generating kernels).
    ``mode`` (``--compile-mode``, see `resolve_compile_mode`): ``auto`` is ``reduce-overhead`` on CUDA
    (inductor's CUDA graph trees: one graph recorded per distinct chunk shape, then replayed) and the
    default mode elsewhere; the mode is given to inductor only. With CUDA graphs each part's results
    are copied out of the graphs' memory pool (`outside_graph_pool`).
    """
    import torch

    if not hasattr(torch, "compile"):
        raise UsageError("--compile needs torch.compile (PyTorch 2)")
    device = _module_device(tokenizer)
    mode = resolve_compile_mode(mode, device)
    options: dict[str, Any] = {"dynamic": False, "backend": backend}
    if backend == "inductor" and mode != "default":
        options["mode"] = mode
    graphs = uses_cuda_graphs(mode, device)
    for part in tokenizer.module.children():
        part.compile(**options)
        if graphs and getattr(part, "_compiled_call_impl", None) is not None:
            part._compiled_call_impl = outside_graph_pool(part._compiled_call_impl)
    return tokenizer


# -- host <-> device copies --------------------------------------------------------------------------


def pin_if_cuda(t: torch.Tensor, device: Any) -> torch.Tensor:
    """``t`` (on the CPU) in page-locked memory when ``device`` is CUDA, so that a copy to the device
    can run asynchronously; ``t`` itself otherwise (nothing is pinned on a CPU-only run)."""
    import torch

    if torch.device(device).type != "cuda" or t.device.type != "cpu" or t.is_pinned():
        return t
    return t.pin_memory()


def to_device(t: torch.Tensor, device: Any) -> torch.Tensor:
    """``t`` on ``device``. From the CPU to CUDA through pinned memory with ``non_blocking=True`` (the
    host does not wait for the copy; the caching host allocator keeps the pinned block until it is done);
    otherwise ``t.to(device)`` (the same tensor when it is there already)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and t.device.type == "cpu":
        return pin_if_cuda(t, dev).to(dev, non_blocking=True)
    return t.to(dev)


def to_host_async(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU. From CUDA the copy goes into pinned memory with ``non_blocking=True``: its values
    are there only once the device's current stream has passed this point (`ready_one_behind`); a
    CPU tensor is returned as ``t.cpu()`` (itself)."""
    import torch

    if t.device.type != "cuda":
        return t.cpu()
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out


def _copies_done_marker(device: torch.device) -> Any:
    """An event recorded on the device's current stream: synchronizing on it waits for the copies queued so far."""
    import torch

    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def ready_one_behind(items: Iterable[T], device: Any) -> Iterator[T]:
    """The items of ``items`` in order, each once the asynchronous host copies (`to_host_async`) queued
    before it was produced have completed.

    On CUDA an item is handed out after the next one has been produced (its kernels and copies queued),
    so the device works on the next chunk while the caller uses this one; elsewhere each item at once.
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        yield from items
        return
    held: tuple[T, Any] | None = None
    for item in items:
        marker = _copies_done_marker(dev)
        if held is not None:
            held[1].synchronize()
            yield held[0]
        held = (item, marker)
    if held is not None:
        held[1].synchronize()
        yield held[0]
