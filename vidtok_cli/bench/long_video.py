"""Whole videos streamed through the causal encoder and decoder (the v1.1 tables' protocol).

The video is truncated to 1 + 16k frames (a last shorter chunk is dropped, as the official long-video
evaluation) and streamed by ``vidtok_cli.stream`` (``encode_frames`` in chunks of 16 frames, causal state
carried between chunks, then ``decode_chunks``); output frames are scored in windows of ``clip_frames``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VidtokError
from .clips import _VideoPlan
from .config import LONG_VIDEO_CHUNK
from .rate import _Rate
from .samples import _Samples
from .speed import _StageClock
from .state import _RunState, _VideoState

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..stream import EncodedChunk


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
    """One video's stream: frames awaiting their reconstruction, the scoring windows, its .vtok writer."""

    def __init__(
        self, st: _RunState, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
    ) -> None:
        self.st, self.plan, self.vstate, self.rate, self.samples = st, plan, vstate, rate, samples
        self.clock = _StageClock(st.s.device, st.speed)
        self.pending_gt: deque[torch.Tensor] = deque()  # ground truth frames waiting for their reconstruction
        self.win_gt: list[torch.Tensor] = []
        self.win_rec: list[torch.Tensor] = []
        self.win_first = 0
        self.window = 0
        self.writer: Any = None
        self.n_tok = self.n_in = 0
        self.bits = 0.0
        self.size_hw = (0, 0)  # the scored frame size
        self.input_wh = (0, 0)  # the model input's size (padded to the spatial factor)
        self.max_windows = st.cfg.max_clips
        self.limit = self.max_windows * st.clip_frames if self.max_windows else None

    def run(self) -> Iterator[int]:
        """Encode, decode and score the whole video; yields the number of windows scored so far."""
        import torch

        from ..frames import model_to_unit
        from ..stream import decode_chunks, encode_frames

        s, clock = self.st.s, self.clock
        frames = clock.wrap(self._inputs(), "input")
        encoded = clock.wrap(
            encode_frames(s.model, frames, LONG_VIDEO_CHUNK, autocast_dtype=s.compute_dtype), "encode"
        )
        decoded = decode_chunks(
            s.model, self._steps(encoded), autocast_dtype=s.compute_dtype, as_tensors=True
        )
        try:
            for _, y in clock.wrap(decoded, "decode"):
                h, w = self.size_hw
                yield from self._flush_windows(model_to_unit(y)[..., :h, :w], False)
            if self.st.speed.timed:  # the decoder's flush of its last frames
                self.st.speed.dec_s += clock.take().get("decode", 0.0)
            if self.n_in:
                yield from self._flush_windows(torch.empty(0), True)
            if self.pending_gt:
                raise VidtokError(
                    f"{self.plan.path}: the streaming decoder returned {self.n_in - len(self.pending_gt)} "
                    f"frames for {self.n_in}"
                )
        finally:
            self._close_rate()

    def _inputs(self) -> Iterator[np.ndarray]:
        """The model's input frames, (H, W, 3) float32 in [0, 255] (``frames_to_tensor`` maps them to
        [-1, 1]); their ground truth goes to ``pending_gt``."""
        from .. import video
        from ..frames import frames_to_unit, unit_to_model

        st, s = self.st, self.st.s
        for chunk in _chunks(video.iter_frames(self.plan.path, interval=self.plan.interval)):
            if self.limit is not None and self.n_in >= self.limit:
                break
            gt = frames_to_unit(chunk, s.device, st.cfg.size, st.cfg.crop)
            self.vstate.sampled += gt.shape[0]
            x, self.size_hw = unit_to_model(gt, s.sf)
            self.input_wh = (x.shape[-1], x.shape[-2])
            self.pending_gt.extend(gt.unbind(0))
            self.n_in += gt.shape[0]
            yield from ((x[0] + 1.0) * 127.5).permute(1, 2, 3, 0).cpu().numpy()

    def _steps(self, encoded: Iterable[EncodedChunk]) -> Iterator[EncodedChunk]:
        """The encoded chunks on their way to the decoder: each one's rate, and its speed once decoded."""
        for chunk in encoded:
            if self.st.measures_rate:
                with self.clock.stage("rate"):
                    self._write_rate(chunk)
            yield chunk
            # the decoder asks for the next chunk: this one is decoded
            t = self.clock.take()
            self.st.speed.add(t.get("encode", 0.0), t.get("decode", 0.0), chunk.end_frame - chunk.first_frame)

    def _write_rate(self, chunk: EncodedChunk) -> None:
        """Count one chunk's tokens and append its latents or tokens to the video's .vtok file (opened on
        the first chunk), when the model can be stored."""
        s = self.st.s
        n_tok, bits = s.tokens(chunk.latents)
        self.n_tok += n_tok
        self.bits += bits
        if not self.rate.active:
            return
        if s.mode == "streams":
            if self.writer is None:
                self.writer = self.rate.open(*self.input_wh, 0, 0, LONG_VIDEO_CHUNK)
            self.rate.write_streams(
                self.writer,
                chunk.latents,
                chunk.first_frame,
                chunk.end_frame,
                chunk.first_latent,
                batched=False,
            )
            return
        latent, indices = s.file_stream(chunk.latents, batched=False)
        if self.writer is None:
            self.writer = self.rate.open(*self.input_wh, latent.shape[-2], latent.shape[-1], LONG_VIDEO_CHUNK)
        self.rate.write(self.writer, latent, indices, chunk.first_frame, chunk.end_frame, chunk.first_latent)

    def _flush_windows(self, rec: torch.Tensor, final: bool) -> Iterator[int]:
        """Pair decoded frames with their ground truth and score every full window (every window if final)."""
        import torch

        if rec.shape[0] > len(self.pending_gt):
            raise VidtokError(
                f"{self.plan.path}: the streaming decoder returned more frames than were encoded"
            )
        for i in range(rec.shape[0]):
            self.win_gt.append(self.pending_gt.popleft())
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
        """Count the finished .vtok file and tokens, or drop the file when the stream did not end cleanly."""
        clean = bool(self.n_in) and not self.pending_gt
        size = 0
        if self.writer is not None:
            if clean:
                size = self.rate.finish(self.writer, self.n_in)
            else:
                self.writer.abort()
        if clean and self.st.measures_rate:
            h, w = self.size_hw
            self.st._add_rate(self.vstate, size, self.n_tok, self.bits, self.n_in * h * w)
