"""Whole videos streamed through the causal encoder and decoder (the v1.1 tables' protocol).

A first chunk of one frame, then chunks of 16 (a last shorter chunk is dropped: 1 + 16k frames, as the
official long-video evaluation); output frames are scored in windows of ``clip_frames``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VidtokError
from .clips import _VideoPlan
from .config import LONG_VIDEO_CHUNK
from .rate import _Rate
from .samples import _Samples
from .speed import _timed
from .state import _RunState, _VideoState

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _stream_video(
    st: _RunState, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
) -> Iterator[int]:
    """Stream the video through the causal encoder and decoder, yielding after every scored window."""
    return _LongVideo(st, plan, vstate, rate, samples).run()


def _chunks(frames: Iterable[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """One frame, then chunks of LONG_VIDEO_CHUNK frames; a last shorter chunk is dropped."""
    buf: list[np.ndarray] = []
    want = 1
    for f in frames:
        buf.append(f)
        if len(buf) == want:
            yield buf
            buf, want = [], LONG_VIDEO_CHUNK


class _LongVideo:
    """One video's streaming state: encoder/decoder states, frames awaiting scoring, its .vtok writer."""

    def __init__(
        self, st: _RunState, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
    ) -> None:
        self.st, self.plan, self.vstate, self.rate, self.samples = st, plan, vstate, rate, samples
        self.enc_state: Any = None
        self.dec_state: Any = None
        self.latent: torch.Tensor | None = None  # the last chunk's latent (its shape ends the stream)
        self.pending_gt: list[torch.Tensor] = []  # ground truth frames waiting for their reconstruction
        self.win_gt: list[torch.Tensor] = []
        self.win_rec: list[torch.Tensor] = []
        self.win_first = 0
        self.window = 0
        self.writer: Any = None
        self.n_lat = self.n_tok = self.n_in = 0
        self.size_hw = (0, 0)
        self.max_windows = st.cfg.max_clips
        self.limit = self.max_windows * st.clip_frames if self.max_windows else None

    def run(self) -> Iterator[int]:
        """Encode, decode and score the whole video; yields the number of windows scored so far."""
        from .. import video

        frames = video.iter_frames(self.plan.path, interval=self.plan.interval)
        try:
            for chunk in _chunks(frames):
                if self.limit is not None and self.n_in >= self.limit:
                    break
                yield from self._step(chunk)
            if self.n_in:
                yield from self._end_stream()
        finally:
            self._close_rate()

    def _step(self, chunk: list[np.ndarray]) -> Iterator[int]:
        """Encode and decode one chunk, write its latents, score the windows it completes."""
        import torch

        from ..frames import frames_to_unit, model_to_unit, unit_to_model

        st, s = self.st, self.st.s
        gt = frames_to_unit(chunk, s.device, st.cfg.size, st.cfg.crop)
        self.vstate.sampled += gt.shape[0]
        x, (h, w) = unit_to_model(gt, s.sf)
        self.size_hw = (h, w)
        self.pending_gt.extend(gt.unbind(0))
        with torch.no_grad():
            st.speed.begin()
            (latent, indices, self.enc_state), enc_s = _timed(
                s.device, lambda x=x, state=self.enc_state: s.encode_chunk(x, state)
            )
            (y, self.dec_state), dec_s = _timed(
                s.device, lambda z=latent, state=self.dec_state: s.decode_chunk(z, state, False)
            )
            st.speed.end()
        st.speed.add(enc_s, dec_s, gt.shape[0])
        self.latent = latent
        if st.cfg.rate and self.rate.active and latent.shape[2]:
            self._write_rate(x, latent, indices)
        self.n_in += gt.shape[0]
        yield from self._flush_windows(model_to_unit(y)[..., :h, :w], False)

    def _write_rate(self, x: torch.Tensor, latent: torch.Tensor, indices: torch.Tensor | None) -> None:
        """Append one chunk's latents or tokens to the video's .vtok file (opened on the first chunk)."""
        if self.writer is None:
            self.writer = self.rate.open(
                x.shape[-1], x.shape[-2], latent.shape[-2], latent.shape[-1], LONG_VIDEO_CHUNK
            )
        tdf = self.st.s.tdf
        t_lat = latent.shape[2]
        f0 = 0 if self.n_lat == 0 else 1 + (self.n_lat - 1) * tdf
        f1 = 1 + (self.n_lat + t_lat - 1) * tdf
        self.n_tok += self.rate.write(self.writer, latent, indices, f0, f1, self.n_lat)
        self.n_lat += t_lat

    def _end_stream(self) -> Iterator[int]:
        """Flush the decoder's last frames and score the last (shorter) window."""
        import torch

        from ..frames import model_to_unit

        st, s = self.st, self.st.s
        assert self.latent is not None
        with torch.no_grad():
            (y, self.dec_state), dec_s = _timed(
                s.device, lambda: s.decode_chunk(self.latent[:, :, :0], self.dec_state, True)
            )
        st.speed.dec_s += dec_s if st.speed.timed else 0.0
        yield from self._flush_windows(model_to_unit(y)[..., : self.size_hw[0], : self.size_hw[1]], True)
        if self.pending_gt:
            raise VidtokError(
                f"{self.plan.path}: the streaming decoder returned {self.n_in - len(self.pending_gt)} frames "
                f"for {self.n_in}"
            )

    def _flush_windows(self, rec: torch.Tensor, final: bool) -> Iterator[int]:
        """Pair decoded frames with their ground truth and score every full window (every window if final)."""
        import torch

        if rec.shape[0] > len(self.pending_gt):
            raise VidtokError(
                f"{self.plan.path}: the streaming decoder returned more frames than were encoded"
            )
        for i in range(rec.shape[0]):
            self.win_gt.append(self.pending_gt.pop(0))
            self.win_rec.append(rec[i])
        clip_frames = self.st.clip_frames
        while len(self.win_gt) >= clip_frames or (final and self.win_gt):
            if self.max_windows is not None and self.window >= self.max_windows:
                self.win_gt.clear()  # streamed past the last window asked for: not scored
                self.win_rec.clear()
                break
            k = min(len(self.win_gt), clip_frames)
            g, r = torch.stack(self.win_gt[:k]), torch.stack(self.win_rec[:k])
            del self.win_gt[:k], self.win_rec[:k]
            rec_u8, _ = self.st._score(self.vstate, g, r, k, self.window, self.win_first, {})
            if self.samples is not None:
                self.samples.add(g, rec_u8, self.win_first)
            self.win_first += k
            self.window += 1
            yield self.window

    def _close_rate(self) -> None:
        """Count the finished .vtok file, or remove it when the stream did not end cleanly."""
        if self.writer is None:
            return
        if self.n_in and not self.pending_gt:
            size = self.rate.finish(self.writer, self.n_in)
            h, w = self.size_hw
            self.st._add_rate(self.vstate, size, self.n_tok, self.n_in * h * w)
        else:
            self.writer.abort()
