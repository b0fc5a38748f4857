"""The rate: latents or tokens written into real .vtok files, whose size is the rate (codecs: ``bench.rd``)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .subject import _Subject


class _Rate:
    """Writes latents/tokens into real .vtok files in a scratch folder and reports their sizes."""

    def __init__(self, subject: _Subject, tmpdir: Path, fps: float) -> None:
        self.s = subject
        self.dir = tmpdir
        self.fps = Fraction(fps).limit_denominator(1001)
        self._n = 0

    @property
    def active(self) -> bool:
        return self.s.mode is not None

    def open(
        self, width: int, height: int, lat_h: int, lat_w: int, frames_per_record: int, bits: int = 0
    ) -> Any:
        """A writer for one clip's file; ``bits``: continuous latents quantized at this many bits."""
        from .. import vtok

        if self.s.mode == "streams":
            from ..file_meta import header_streams

            streams = header_streams(self.s.specs, height, width, "float16", bits)
            return self._writer(streams, self.s.tdf, width, height, frames_per_record)
        if self.s.mode == "tokens":
            stream = vtok.stream_entry("tokens", "fsq", (lat_h, lat_w), time_axis=0, levels=self.s.levels)
        else:
            shape = (self.s.latent_channels, lat_h, lat_w)
            stream = vtok.stream_entry(
                "latent", "continuous", shape, time_axis=1, dtype="float16", bits=bits or None,
                channel_axis=0 if bits else None,
            )  # fmt: skip
        return self._writer([stream], self.s.tdf if self.s.causal else 4, width, height, frames_per_record)

    def _writer(self, streams: list[Any], tdf: int, width: int, height: int, frames_per_record: int) -> Any:
        from .. import vtok

        header = vtok.make_header(
            model_card=self.s.name, weights_sha256=self.s.weights_sha256 or "0" * 64, streams=streams,
            temporal_factor=tdf, spatial_factor=self.s.sf, width=width, height=height, fps=self.fps,
            frames_per_record=frames_per_record, causal=self.s.causal, source_file="bench",
        )  # fmt: skip
        self._n += 1
        path = self.dir / f"r{self._n}.vtok"
        return vtok.VtokWriter(path, header, force=True)

    def write(
        self, writer: Any, latent: torch.Tensor, indices: torch.Tensor | None, f0: int, f1: int, l0: int
    ) -> int:
        """Write one chunk; returns the ideal bits n_tokens*log2(K) for tokens (0 for latents)."""
        if self.s.mode == "streams":
            raise AssertionError("a model of several streams is written with write_streams")
        if self.s.mode == "tokens":
            assert indices is not None
            idx = indices[0].cpu().numpy()
            writer.write_chunk({"tokens": idx}, f0, f1, l0)
            return int(idx.size)
        writer.write_chunk({"latent": latent[0].float().cpu().numpy()}, f0, f1, l0)
        return 0

    def write_streams(
        self, writer: Any, latents: Mapping[str, torch.Tensor], f0: int, f1: int, l0: int, batched: bool
    ) -> None:
        """Write one chunk of every stream of a model of several streams (``latents`` as the model gives
        them, with or without the batch axis)."""
        from ..stream import per_sample

        arrays = per_sample(self.s.specs, latents) if batched else latents
        writer.write_chunk({name: arrays[name].numpy() for name in self.s.specs}, f0, f1, l0)

    @staticmethod
    def finish(writer: Any, frames: int, read_back: bool = False) -> Any:
        """The file's size (and with ``read_back`` its latents as stored, (size, array)); deletes it."""
        from .. import vtok

        writer.close(header_updates={"source": {"frame_count": frames}})
        size = writer.path.stat().st_size
        stored = None
        if read_back:
            (chunk,) = vtok.VtokReader(writer.path).iter_chunks()
            stored = chunk.latents["latent"]
        writer.path.unlink(missing_ok=True)
        return (int(size), stored) if read_back else int(size)
