"""Speed and memory: timed model steps, frames per second, peak memory."""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .subject import _Subject

T = TypeVar("T")


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the seconds it took, with CUDA synchronised before and after."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


class _Speed:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.enc_s = self.dec_s = 0.0
        self.frames = 0
        self.timed = 0
        self.seen = 0
        self.peak = 0
        self.peak_above_baseline = 0
        self._base = 0
        self.cuda = device.type == "cuda"

    def begin(self) -> None:
        """Before a model step: reset CUDA's peak counter and note what is already allocated."""
        import torch

        if self.cuda:
            self._base = int(torch.cuda.memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)

    def end(self) -> None:
        """After a model step: fold its CUDA peak into the run's maximum."""
        import torch

        if self.cuda:
            p = int(torch.cuda.max_memory_allocated(self.device))
            self.peak = max(self.peak, p)
            self.peak_above_baseline = max(self.peak_above_baseline, p - self._base)

    def add(self, enc_s: float, dec_s: float, frames: int) -> None:
        self.seen += 1
        if self.seen == 1:
            self._first = (enc_s, dec_s, frames)
            return
        self.enc_s += enc_s
        self.dec_s += dec_s
        self.frames += frames
        self.timed += 1

    def summary(self, subject: _Subject) -> dict[str, Any]:
        import torch

        enc_s, dec_s, frames, timed, warm = self.enc_s, self.dec_s, self.frames, self.timed, True
        if self.timed == 0 and self.seen == 1:  # a single clip: report it, flagged as including warm-up
            enc_s, dec_s, frames = self._first
            timed, warm = 1, False
        d: dict[str, Any] = {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device)
            if self.cuda
            else platform.processor() or platform.machine(),
            "precision": subject.precision,
            "dtype": subject.dtype_name,
            "threads": torch.get_num_threads(),
            "encode_fps": frames / enc_s if enc_s > 0 else None,
            "decode_fps": frames / dec_s if dec_s > 0 else None,
            "encode_seconds": enc_s,
            "decode_seconds": dec_s,
            "frames_timed": frames,
            "steps_timed": timed,
            "warmup_excluded": warm,
            "model_weights_bytes": subject.param_bytes,
        }
        if self.cuda:
            d["peak_memory_bytes"] = self.peak
            d["peak_memory_kind"] = (
                "CUDA max_memory_allocated during encode+decode (resident metric networks included)"
            )
            d["peak_model_activations_bytes"] = self.peak_above_baseline
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            d["peak_memory_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
            d["peak_memory_kind"] = (
                "peak RSS of the process (ru_maxrss; metric networks and video decoding included)"
            )
        return d


class _StageClock:
    """Wall time per stage of a pipeline of generators pulling from each other (input -> encode -> decode).

    Time is exclusive: the decoder's time excludes the encoder's it waits for, the encoder's excludes
    reading and preparing frames. CUDA is synchronised at every switch. The model stages (``encode``,
    ``decode``) are bracketed by ``speed.begin()``/``end()`` so peak memory covers the model steps only.
    """

    MODEL_STAGES = ("encode", "decode")

    def __init__(self, device: torch.device, speed: _Speed) -> None:
        self.device, self.speed = device, speed
        self.totals: dict[str, float] = {}
        self._stack: list[str] = []
        self._mark = 0.0

    def _in_model(self) -> bool:
        return bool(self._stack) and self._stack[-1] in self.MODEL_STAGES

    def _charge(self) -> None:
        _sync(self.device)
        now = time.perf_counter()
        if self._stack:
            top = self._stack[-1]
            self.totals[top] = self.totals.get(top, 0.0) + now - self._mark
        self._mark = now

    def _switch(self, stage: str | None) -> None:
        """Push ``stage`` (None: pop the current one)."""
        self._charge()
        was = self._in_model()
        if stage is None:
            self._stack.pop()
        else:
            self._stack.append(stage)
        now = self._in_model()
        if was and not now:
            self.speed.end()
        elif now and not was:
            self.speed.begin()
        self._mark = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as ``name``."""
        self._switch(name)
        try:
            yield
        finally:
            self._switch(None)

    def wrap(self, items: Iterable[T], name: str) -> Iterator[T]:
        """``items``, the time spent producing each charged to ``name``."""
        it = iter(items)
        while True:
            self._switch(name)
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self._switch(None)
            yield item

    def take(self) -> dict[str, float]:
        """The seconds per stage since the last ``take()``."""
        self._charge()
        out, self.totals = self.totals, {}
        return out
