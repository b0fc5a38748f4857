"""Rate-distortion against classic codecs for ``vidtok bench --rd`` (METRICS.md §5).

Each benchmark clip (uint8 RGB after the protocol's resize and crop) is encoded with x264 / x265 through
PyAV at a sweep of CRF values, ``pix_fmt`` yuv420p and a fixed preset, as an independent stream, so a
codec point and the tokenizer see exactly the same frames. Bits come from the packet sizes (no
container overhead); x264 writes a ~0.6 KB encoder-settings SEI into its first packet, which is
reported separately (``bits`` without it, ``bits_with_sei`` with it); x265 is run with ``info=0`` so it
writes no such block. The decoded frames are scored with the same metrics as the tokenizer's output.

RGB <-> YUV conversions use BT.709 limited range in both directions (as ``vidtok decode`` writes).
Only numpy and PyAV are imported here; matplotlib is imported by :func:`plot_rd` only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import refuse_existing
from ..errors import UsageError, VidtokError

__all__ = [
    "CODECS",
    "DEFAULT_CRFS",
    "CodecClip",
    "RDAccumulator",
    "codec_round_trip",
    "interpolate_log_rate",
    "parse_codecs",
    "parse_crfs",
    "parse_latent_bits",
    "plot_rd",
    "rd_verdicts",
    "x264_sei_bytes",
]

DEFAULT_CRFS = (18, 23, 28, 33, 38, 43, 48)
DEFAULT_PRESET = "medium"
# name -> (PyAV encoder, decoder)
CODECS: dict[str, tuple[str, str]] = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}
# Which direction is better, per metric the RD table compares.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}
_444 = {"yuv420p": "yuv444p", "yuv422p": "yuv444p"}


class CodecError(VidtokError):
    """A codec that PyAV cannot open or that fails on a clip."""


def parse_codecs(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"x264,x265"`` -> ("x264", "x265"); UsageError for an unknown codec name."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower().removeprefix("lib")
        if not name:
            continue
        if name not in CODECS:
            raise UsageError(f"unknown codec {raw.strip()!r} for --rd (choose from {', '.join(CODECS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--rd needs at least one codec (x264, x265)")
    return tuple(out)


LATENT_BITS_CODEC = "latent-bits"
"""The ``codec`` of the RD points of quantized latents (their ``crf`` is the bits per value)."""


def _int_values(text: str | Sequence[int], option: str, lo: int, hi: int) -> tuple[int, ...]:
    """``"18,23,28"`` -> (18, 23, 28), sorted and unique; UsageError naming ``option`` outside lo..hi."""
    out: set[int] = set()
    for raw in text.split(",") if isinstance(text, str) else list(text):
        s = str(raw).strip()
        if not s:
            continue
        try:
            v = int(s)
        except ValueError:
            raise UsageError(f"{option} values must be integers, got {s!r}") from None
        if not lo <= v <= hi:
            raise UsageError(f"{option} values must be {lo}..{hi}, got {v}")
        out.add(v)
    return tuple(sorted(out))


def parse_latent_bits(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"4,6,8"`` -> (4, 6, 8), sorted and unique; UsageError outside the container's 2..16."""
    from ..vtok import QUANT_MAX_BITS, QUANT_MIN_BITS

    return _int_values(text, "--latent-bits", QUANT_MIN_BITS, QUANT_MAX_BITS)


def parse_crfs(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"18,23,28"`` -> (18, 23, 28), sorted and unique; UsageError outside 0..51."""
    out = _int_values(text, "--crf", 0, 51)
    if not out:
        raise UsageError("--crf needs at least one value")
    return out


# --------------------------------------------------------------------------------------------
# Encoding and decoding one clip
# --------------------------------------------------------------------------------------------


def _nal_units(data: bytes) -> list[tuple[int, int, int]]:
    """(start of the start code, start of the NAL header, end) of each Annex B NAL unit in ``data``."""
    starts: list[tuple[int, int]] = []
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        sc = j - 1 if j > 0 and data[j - 1] == 0 else j
        starts.append((sc, j + 3))
        i = j + 3
    units = []
    for k, (sc, hdr) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        units.append((sc, hdr, end))
    return units


def x264_sei_bytes(packet: bytes) -> int:
    """Bytes (start code included) of x264's encoder-settings SEI in an H.264 Annex B packet, else 0.

    x264 writes its version and every option as a user-data-unregistered SEI ("x264 - core ...") into
    the first packet; it carries no picture data.
    """
    total = 0
    for sc, hdr, end in _nal_units(packet):
        if hdr < end and packet[hdr] & 0x1F == 6 and b"x264 - core" in packet[hdr:end]:
            total += end - sc
    return total


@dataclass
class CodecClip:
    """A clip after a codec round trip: decoded uint8 frames (T, H, W, 3) and the bits it took."""

    frames: np.ndarray
    bytes_total: int
    bytes_sei: int
    pix_fmt: str

    @property
    def bits(self) -> int:
        """Bits of the coded pictures (packet sizes without x264's settings SEI)."""
        return 8 * (self.bytes_total - self.bytes_sei)

    @property
    def bits_with_sei(self) -> int:
        """Bits of every packet, as the encoder wrote them."""
        return 8 * self.bytes_total


def codec_round_trip(
    frames: np.ndarray,
    codec: str,
    crf: int,
    *,
    preset: str = DEFAULT_PRESET,
    pix_fmt: str = "yuv420p",
    fps: Fraction | float = 30,
) -> CodecClip:
    """Encode uint8 RGB frames (T, H, W, 3) with ``codec`` ("x264"/"x265") at ``crf``, decode them back.

    One independent stream per call (no container: bits are the packet sizes). Frame sizes that 4:2:0
    cannot code (odd width or height) are coded as 4:4:4 instead (``CodecClip.pix_fmt`` says which).
    """
    import av

    if codec not in CODECS:
        raise UsageError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {arr.dtype} {arr.shape}")
    t, h, w = arr.shape[:3]
    fmt = _444.get(pix_fmt, pix_fmt) if (h % 2 or w % 2) else pix_fmt
    enc_name, dec_name = CODECS[codec]
    rate = Fraction(fps).limit_denominator(1001)
    opts = {"crf": str(int(crf)), "preset": preset}
    if codec == "x265":
        opts["x265-params"] = "info=0:log-level=error"
    else:
        from ..video.writer import _x264_determinism_params

        opts = _x264_determinism_params(opts)  # the same bits in every process
    try:
        enc = av.CodecContext.create(enc_name, "w")
        enc.width, enc.height, enc.pix_fmt = w, h, fmt
        enc.time_base = 1 / rate
        enc.framerate = rate
        enc.options = opts
        packets: list[bytes] = []
        for i, img in enumerate(arr):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf = vf.reformat(format=fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
            vf.pts = i
            packets.extend(bytes(p) for p in enc.encode(vf))
        packets.extend(bytes(p) for p in enc.encode(None))
        extradata = bytes(enc.extradata or b"")
        dec = av.CodecContext.create(dec_name, "r")
        if extradata:
            dec.extradata = extradata
        out = []
        for data in packets:
            out.extend(dec.decode(av.Packet(data)))
        out.extend(dec.decode(None))
    except av.FFmpegError as e:
        raise CodecError(f"{codec} (crf {crf}, preset {preset}, {fmt}) failed: {e}") from e
    if len(out) != t:
        raise CodecError(f"{codec} (crf {crf}) returned {len(out)} frames for {t}")
    out.sort(key=lambda f: f.pts if f.pts is not None else 0)
    rgb = np.stack(
        [
            f.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray()
            for f in out
        ]
    )
    total = sum(len(p) for p in packets) + len(extradata)
    sei = x264_sei_bytes(packets[0]) if codec == "x264" and packets else 0
    return CodecClip(frames=rgb, bytes_total=total, bytes_sei=sei, pix_fmt=fmt)


# --------------------------------------------------------------------------------------------
# Accumulating over a benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class _Point:
    bits: int = 0
    bits_with_sei: int = 0
    pixels: int = 0
    frames: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    pix_fmts: set[str] = field(default_factory=set)


class RDAccumulator:
    """Totals of bits, pixels and per-frame metric values per (codec, CRF) over every clip.

    ``bpp`` of a point = total bits / total pixels over all clips (not a mean of per-clip rates);
    metric values = mean over every scored frame, as for the tokenizer.
    """

    def __init__(self, codecs: Sequence[str], crfs: Sequence[int], preset: str, pix_fmt: str) -> None:
        self.codecs, self.crfs = tuple(codecs), tuple(crfs)
        self.preset, self.pix_fmt = preset, pix_fmt
        self._points: dict[tuple[str, int], _Point] = {
            (c, q): _Point() for c in self.codecs for q in self.crfs
        }
        self.clips: list[dict[str, Any]] = []

    def add(
        self, codec: str, crf: int, coded: CodecClip, values: Mapping[str, np.ndarray], **where: Any
    ) -> None:
        """Add one clip's round trip and its per-frame metric values (arrays of length T); ``where`` (e.g.
        video and clip) is kept in the per-clip rows."""
        clip = coded
        p = self._points.setdefault((codec, crf), _Point())
        t, h, w = clip.frames.shape[:3]
        p.bits += clip.bits
        p.bits_with_sei += clip.bits_with_sei
        p.pixels += t * h * w
        p.frames += t
        p.pix_fmts.add(clip.pix_fmt)
        row: dict[str, Any] = {**where, "codec": codec, "crf": crf, "bits": clip.bits,
                               "bits_with_sei": clip.bits_with_sei, "bpp": clip.bits / (t * h * w)}  # fmt: skip
        for name, v in values.items():
            arr = np.asarray(v, dtype=np.float64)
            p.sums[name] = p.sums.get(name, 0.0) + float(arr.sum())
            p.counts[name] = p.counts.get(name, 0) + int(arr.size)
            row[name] = float(arr.mean()) if arr.size else None
        self.clips.append(row)

    def points(self) -> list[dict[str, Any]]:
        """One dict per (codec, CRF) with bpp, bpp_with_sei, bits, pixels, frames and the metric means."""
        out = []
        for (codec, crf), p in self._points.items():
            if not p.pixels:
                continue
            d: dict[str, Any] = {
                "codec": codec, "crf": crf, "preset": self.preset, "pix_fmt": ",".join(sorted(p.pix_fmts)),
                "bits": p.bits, "bits_with_sei": p.bits_with_sei, "pixels": p.pixels, "frames": p.frames,
                "bpp": p.bits / p.pixels, "bpp_with_sei": p.bits_with_sei / p.pixels,
            }  # fmt: skip
            for name, s in p.sums.items():
                d[name] = s / p.counts[name] if p.counts[name] else None
            out.append(d)
        return out


# --------------------------------------------------------------------------------------------
# Comparison with the tokenizer
# --------------------------------------------------------------------------------------------


def interpolate_log_rate(points: Sequence[tuple[float, float]], bpp: float) -> float | None:
    """The value at ``bpp`` on a curve of (bpp, value) points, linear in log(bpp); None outside the curve."""
    pts = sorted((b, v) for b, v in points if b > 0 and v is not None and math.isfinite(v))
    if not pts or bpp <= 0 or bpp < pts[0][0] or bpp > pts[-1][0]:
        return None
    x = math.log(bpp)
    for (b0, v0), (b1, v1) in zip(pts, pts[1:], strict=False):
        if b0 <= bpp <= b1:
            if b1 == b0:
                return max(v0, v1)
            a = (x - math.log(b0)) / (math.log(b1) - math.log(b0))
            return v0 + a * (v1 - v0)
    return pts[0][1]  # a single point at exactly this rate


def _rate_for_value(points: Sequence[tuple[float, float]], value: float, higher_better: bool) -> float | None:
    """The bpp at which a codec curve reaches ``value`` (log-rate interpolation); None if it never does
    within the sweep. Points are walked from low to high rate; the first crossing counts."""
    pts = sorted((b, v) for b, v in points if b > 0 and v is not None and math.isfinite(v))
    if not pts:
        return None

    def good(v: float) -> bool:
        return v >= value if higher_better else v <= value

    if good(pts[0][1]):
        return None  # already better at the lowest rate tried: no crossing inside the sweep
    for (b0, v0), (b1, v1) in zip(pts, pts[1:], strict=False):
        if not good(v0) and good(v1):
            a = 1.0 if v1 == v0 else (value - v0) / (v1 - v0)
            return math.exp(math.log(b0) + a * (math.log(b1) - math.log(b0)))
    return None


def _fmt(metric: str, v: float) -> str:
    return f"{v:.2f} dB" if metric == "psnr" else f"{v:.4f}"


def rd_verdicts(
    ours: Mapping[str, Any], points: Iterable[Mapping[str, Any]], metrics: Sequence[str]
) -> list[str]:
    """Plain-language comparison of the tokenizer with each codec at the tokenizer's own rate.

    ``ours`` has ``bpp`` and metric values; ``points`` are :meth:`RDAccumulator.points` rows. For each
    codec the codec's value at our bpp is interpolated (linear in log bpp) and compared; where the
    codec's sweep does not reach our rate that is said instead. Also says at which rate the codec
    matches our PSNR.
    """
    lines: list[str] = []
    bpp = ours.get("bpp")
    by_codec: dict[str, list[Mapping[str, Any]]] = {}
    for p in points:
        by_codec.setdefault(str(p["codec"]), []).append(p)
    if not bpp:
        return ["tokens: no rate (nothing written); no comparison"]
    for codec, rows in by_codec.items():
        rates = [float(r["bpp"]) for r in rows]
        lo, hi = min(rates), max(rates)
        parts: list[str] = []
        losses: list[str] = []
        for m in metrics:
            if m not in HIGHER_IS_BETTER or ours.get(m) is None:
                continue
            curve = [(float(r["bpp"]), r.get(m)) for r in rows]
            theirs = interpolate_log_rate(curve, bpp)
            if theirs is None:
                continue
            mine = float(ours[m])
            better = theirs > mine if HIGHER_IS_BETTER[m] else theirs < mine
            parts.append(f"{m.upper()} {_fmt(m, theirs)} vs ours {_fmt(m, mine)}")
            if better:
                losses.append(m.upper())
        if not parts:
            side = "below" if bpp < lo else "above"
            lines.append(
                f"{codec}: our {bpp:.4f} bpp is {side} the rates its CRF sweep reached ({lo:.4f}-{hi:.4f} bpp); "
                "widen --crf to compare"
            )
            continue
        if losses:
            verdict = f"tokens LOSE to {codec} on {', '.join(losses)}"
            won = [p.split()[0] for p in parts if p.split()[0] not in losses]
            if won:
                verdict += f" and win on {', '.join(won)}"
        else:
            verdict = f"tokens beat {codec} on every metric"
        line = f"{verdict} at our rate {bpp:.4f} bpp ({codec} there: {'; '.join(parts)})"
        if ours.get("psnr") is not None:
            need = _rate_for_value(
                [(float(r["bpp"]), r.get("psnr")) for r in rows], float(ours["psnr"]), True
            )
            if need is not None:
                line += f"; {codec} reaches our PSNR at {need:.4f} bpp ({need / bpp:.2f}x our rate)"
        lines.append(line)
    return lines


def dominating_metrics(
    ours: Mapping[str, Any], point: Mapping[str, Any], metrics: Sequence[str]
) -> list[str]:
    """Metrics on which a codec point beats the tokenizer while using no more bits per pixel."""
    bpp = ours.get("bpp")
    if not bpp or point.get("bpp") is None or float(point["bpp"]) > float(bpp):
        return []
    out = []
    for m in metrics:
        if m in HIGHER_IS_BETTER and ours.get(m) is not None and point.get(m) is not None:
            a, b = float(point[m]), float(ours[m])
            if (a > b) if HIGHER_IS_BETTER[m] else (a < b):
                out.append(m.upper())
    return out


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def plot_rd(
    rd: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    title: str = "",
) -> Path:
    """Write an RD plot (PNG): one panel per metric (PSNR, SSIM, LPIPS) of value against bpp.

    ``rd`` is the ``rd`` section of a bench result (``points``, ``ours``, ``metrics``). Needs matplotlib
    (``pip install 'vidtok[plot]'``); without it, a one-line UsageError says so.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed; run `pip install 'vidtok[plot]'` "
            "(or `pip install matplotlib`)"
        ) from None
    out = Path(path)
    refuse_existing(out, force, UsageError)
    if not out.parent.is_dir():
        raise UsageError(f"{out}: directory {out.parent} does not exist")
    metrics = [m for m in rd.get("metrics", ()) if m in HIGHER_IS_BETTER]
    ours = rd.get("ours") or {}
    points = rd.get("points") or []
    if not metrics:
        raise UsageError("nothing to plot: no PSNR/SSIM/LPIPS values")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for codec in dict.fromkeys(str(p["codec"]) for p in points):
            rows = sorted(
                (p for p in points if p["codec"] == codec and p.get(m) is not None), key=lambda p: p["bpp"]
            )
            if not rows:
                continue
            xs, ys = [p["bpp"] for p in rows], [p[m] for p in rows]
            ax.plot(xs, ys, marker="o", label=f"{codec} ({rows[0]['preset']}, {rows[0]['pix_fmt']})")
            for p in rows:
                ax.annotate(
                    str(p["crf"]), (p["bpp"], p[m]), fontsize=7, textcoords="offset points", xytext=(3, 3)
                )
        if ours.get("bpp") and ours.get(m) is not None:
            ax.plot([ours["bpp"]], [ours[m]], marker="*", markersize=14, linestyle="none",
                    label=f"tokens ({ours.get('model', 'model')})")  # fmt: skip
            if ours.get("bpp_ideal"):
                ax.plot([ours["bpp_ideal"]], [ours[m]], marker="*", markersize=10, linestyle="none",
                        fillstyle="none", label="tokens at n_tokens*log2(K)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(m.upper() + (" (dB)" if m == "psnr" else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.partial.png")
    try:
        fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    os.replace(tmp, out)
    return out
