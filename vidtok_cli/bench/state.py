"""The run state: per-video and overall accumulators, scoring a clip, and the loop over independent clips."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .clips import _iter_clips, _VideoPlan
from .config import BenchConfig
from .rate import _Rate
from .result import BenchResult
from .samples import _Samples
from .scoring import _finite, _Mean, _Metrics, score_frames
from .speed import _Speed, _timed
from .subject import _Subject

if TYPE_CHECKING:  # pragma: no cover
    import torch

T = TypeVar("T")


class _VideoState:
    """Per-video running sums."""

    def __init__(self, plan: _VideoPlan) -> None:
        self.plan = plan
        self.mean = _Mean()
        self.clips = 0
        self.frames = 0
        self.padded = 0
        self.sampled = 0
        self.bytes = 0
        self.tokens = 0
        self.bits = 0.0
        self.pixels = 0
        self.height = self.width = 0

    def record(self) -> dict[str, Any]:
        p = self.plan
        d: dict[str, Any] = {
            "video": str(p.path), "name": p.name, "source_width": p.width, "source_height": p.height,
            "source_fps": f"{p.src_fps.numerator}/{p.src_fps.denominator}", "interval": p.interval,
            "sample_fps": p.sample_fps, "frames_sampled": self.sampled, "clips": self.clips,
            "frames_scored": self.frames, "frames_padded": self.padded, "width": self.width, "height": self.height,
        }  # fmt: skip
        d.update({k: _finite(v) for k, v in self.mean.means().items()})
        d.update(_rate_values(self.bytes, self.tokens, self.bits, self.pixels))
        return d


class _RunState:
    """The loop over independent clips and the accumulators it (and the long-video loop) feeds."""

    def __init__(self, cfg: BenchConfig, subject: _Subject, mets: _Metrics, result: BenchResult, speed: _Speed,
                 overall: _Mean, fvd: Any, fvd_u8: Any, rd: Any, clip_frames: int) -> None:  # fmt: skip
        self.cfg, self.s, self.m, self.result, self.speed = cfg, subject, mets, result, speed
        self.overall, self.fvd, self.fvd_u8, self.rd = overall, fvd, fvd_u8, rd
        self.latent_rd: Any = None  # RD points of quantized latents (cfg.rd_latent_bits), set by the runner
        self.clip_frames = clip_frames
        self.totals: dict[str, Any] = {"bytes": 0, "tokens": 0, "bits": 0.0, "pixels": 0, "clips": 0, "frames": 0,
                                       "padded": 0}  # fmt: skip

    # -- shared ------------------------------------------------------------------------------
    def _score(self, vstate: _VideoState, gt: torch.Tensor, rec: torch.Tensor, n_real: int, clip_index: int,
               first: int, extra: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:  # fmt: skip
        """Score one clip (float and 8-bit), feed every accumulator, append the clip record."""
        from ..frames import quantize_unit

        plan = vstate.plan
        t = gt.shape[0]
        cands = {"": rec}
        rec_u8 = quantize_unit(rec) if self.cfg.u8 else rec
        if self.cfg.u8:
            cands["_u8"] = rec_u8
        values = score_frames(gt, cands, self.m.frame_metrics, self.m.lpips)
        rec_d: dict[str, Any] = {
            "video": plan.name, "clip": clip_index,
            "first_frame": first * plan.interval, "last_frame": (first + n_real - 1) * plan.interval,
            "frames": t, "padded": t - n_real,
        }  # fmt: skip
        per_frame: dict[str, list[float | None]] = {}
        for suffix, vals in values.items():
            for metric, arr in vals.items():
                key = metric + suffix
                rec_d[key] = _finite(float(arr.mean())) if arr.size else None
                per_frame[key] = [_finite(float(x)) for x in arr]
                vstate.mean.add(key, arr)
                self.overall.add(key, arr)
        rec_d.update(extra)
        rec_d["per_frame"] = per_frame
        if self.fvd is not None and t >= 10:
            self._add_fvd(gt, rec, rec_u8)
        vstate.clips += 1
        vstate.frames += t
        vstate.padded += t - n_real
        vstate.height, vstate.width = gt.shape[-2:]
        self.totals["clips"] += 1
        self.totals["frames"] += t
        self.totals["padded"] += t - n_real
        self.result.clips.append(rec_d)
        return rec_u8, rec_d

    def _add_fvd(self, gt: torch.Tensor, rec: torch.Tensor, rec_u8: torch.Tensor) -> None:
        """I3D features of the ground truth and the reconstruction (float and 8-bit) into the FVD sums."""
        from ..metrics import i3d_features

        real = gt.permute(1, 0, 2, 3).unsqueeze(0)
        fr = i3d_features(self.m.i3d, real)
        self.fvd.add_features(real=fr, fake=i3d_features(self.m.i3d, rec.permute(1, 0, 2, 3).unsqueeze(0)))
        if self.cfg.u8:
            self.fvd_u8.add_features(
                real=fr, fake=i3d_features(self.m.i3d, rec_u8.permute(1, 0, 2, 3).unsqueeze(0))
            )

    def _add_rate(self, vstate: _VideoState, size: int, tokens: int, bits: float, pixels: int) -> None:
        """Count a .vtok file's bytes (0: no file), the tokens, their ideal bits and the pixels they cover."""
        vstate.bytes += size
        vstate.tokens += tokens
        vstate.bits += bits
        vstate.pixels += pixels
        self.totals["bytes"] += size
        self.totals["tokens"] += tokens
        self.totals["bits"] += bits
        self.totals["pixels"] += pixels

    @property
    def measures_rate(self) -> bool:
        """Whether this run measures a rate: a .vtok file per clip/video, or at least the token count."""
        return self.cfg.rate and (self.s.mode is not None or self.s.discrete)

    # -- independent clips (the paper's protocol) -----------------------------------------------
    def clips(
        self, plan: _VideoPlan, vstate: _VideoState, rate: _Rate, samples: _Samples | None
    ) -> Iterator[int]:
        import torch

        from ..frames import frames_to_unit, model_to_unit, unit_to_model

        clips = enumerate(_iter_clips(plan, self.clip_frames, self.cfg.max_clips))
        for group in _groups(clips, self.cfg.batch):
            gts = []
            for _, (frames, n_real, _first) in group:
                vstate.sampled += n_real
                gts.append(frames_to_unit(frames, self.s.device, self.cfg.size, self.cfg.crop))
            del frames
            padded = [unit_to_model(gt, self.s.sf) for gt in gts]
            x, (h, w) = torch.cat([p[0] for p in padded]), padded[0][1]
            del padded
            t, n = gts[0].shape[0], len(group)
            with torch.no_grad():
                self.speed.begin()
                enc, enc_s = _timed(self.s.device, lambda x=x: self.s.encode(x))
                y, dec_s = _timed(self.s.device, lambda enc=enc, t=t: self.s.decode(enc.latents, t))
                self.speed.end()
            self.speed.add(enc_s, dec_s, t * n)
            del x
            for i, (gt, (ci, (_, n_real, first))) in enumerate(zip(gts, group, strict=True)):
                latents = {k: v[i : i + 1] for k, v in enc.latents.items()}
                rec = model_to_unit(y[i : i + 1])[..., :h, :w]
                extra: dict[str, Any] = {"encode_s": enc_s / n, "decode_s": dec_s / n}
                if n > 1:
                    extra["batch"] = n
                if self.measures_rate:
                    extra.update(self._clip_rate(vstate, rate, latents, h, w, t))
                lat = latents if self.latent_rd is not None else None
                del latents
                rec_u8, _ = self._score(vstate, gt, rec, n_real, ci, first, extra)
                if self.rd is not None:
                    self._rd_clip(gt, plan, ci)
                if self.latent_rd is not None and rate.active and self.s.mode == "latent":
                    self._latent_bits_clip(gt, rate, lat, plan, ci)
                if samples is not None:
                    samples.add(gt[:n_real], rec_u8[:n_real], first)
                yield ci
            del y, enc, gts

    def _clip_rate(self, vstate: _VideoState, rate: _Rate, latents: dict[str, torch.Tensor], h: int, w: int,
                   t: int) -> dict[str, Any]:  # fmt: skip
        """Write one clip into its own .vtok file (when the model can be stored); its size, bpp and (tokens)
        ideal bpp for the clip record."""
        size = 0
        if rate.active and self.s.mode == "streams":
            sf = self.s.sf
            writer = rate.open(w + (-w) % sf, h + (-h) % sf, 0, 0, t)
            rate.write_streams(writer, latents, 0, t, 0, batched=True)
            size = rate.finish(writer, t)
        elif rate.active:
            latent, indices = self.s.file_stream(latents, batched=True)
            sf = self.s.sf
            writer = rate.open(w + (-w) % sf, h + (-h) % sf, latent.shape[-2], latent.shape[-1], t)
            rate.write(writer, latent, indices, 0, t, 0)
            size = rate.finish(writer, t)
        n_tok, bits = self.s.tokens(latents)
        pixels = t * h * w
        self._add_rate(vstate, size, n_tok, bits, pixels)
        return _rate_values(size, n_tok, bits, pixels)

    def _latent_bits_clip(
        self, gt: torch.Tensor, rate: _Rate, latents: Any, plan: _VideoPlan, ci: int
    ) -> None:
        """One clip's RD points of quantized latents: each ``cfg.rd_latent_bits`` written into a .vtok file
        (its size is the rate), read back, decoded and scored."""
        import torch

        from ..frames import model_to_unit
        from .rd import CodecClip

        latent, _ = self.s.file_stream(latents, batched=True)
        t, (h, w), sf = gt.shape[0], gt.shape[-2:], self.s.sf
        for bits in self.latent_rd.crfs:
            writer = rate.open(w + (-w) % sf, h + (-h) % sf, latent.shape[-2], latent.shape[-1], t, bits=bits)
            rate.write(writer, latent, None, 0, t, 0)
            size, stored = rate.finish(writer, t, read_back=True)
            back = torch.from_numpy(stored).unsqueeze(0).to(latent.device, latent.dtype)
            with torch.no_grad():
                rec = model_to_unit(self.s.decode({self.s.stream.name: back}, t))[..., :h, :w]
            values = score_frames(gt, {"q": rec}, self.m.frame_metrics, self.m.lpips)["q"]
            u8 = (rec * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            coded = CodecClip(frames=u8, bytes_total=size, bytes_sei=0, pix_fmt="latent")
            self.latent_rd.add(self.latent_rd.codecs[0], bits, coded, values, video=plan.name, clip=ci)

    def _rd_clip(self, gt: torch.Tensor, plan: _VideoPlan, ci: int) -> None:
        import torch

        from .rd import codec_round_trip

        u8 = (gt * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        runs = {}
        for codec in self.rd.codecs:
            for crf in self.rd.crfs:
                runs[(codec, crf)] = codec_round_trip(u8, codec, crf, preset=self.rd.preset, pix_fmt=self.rd.pix_fmt,
                                                      fps=plan.sample_fps)  # fmt: skip
        cands = {
            f"{c}@{q}": torch.from_numpy(r.frames).to(gt.device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
            for (c, q), r in runs.items()
        }
        values = score_frames(gt, cands, self.m.frame_metrics, self.m.lpips)
        for (c, q), r in runs.items():
            self.rd.add(c, q, r, values[f"{c}@{q}"], video=plan.name, clip=ci)


def _groups(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of ``size`` (the last one shorter)."""
    group: list[T] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _rate_values(size: int, tokens: int, bits: float, pixels: int) -> dict[str, Any]:
    """``vtok_bytes`` and ``bpp`` of the .vtok files, ``tokens`` and ``bpp_ideal`` (n * log2(K) / pixels)."""
    out: dict[str, Any] = {}
    if size and pixels:
        out["vtok_bytes"] = size
        out["bpp"] = 8 * size / pixels
    if tokens and pixels:
        out["tokens"] = tokens
        out["bpp_ideal"] = bits / pixels
    return out
