"""The terminal report of ``vidtok bench``: per-video and overall table, FVD, speed, RD table (rich)."""

from __future__ import annotations

from typing import Any

from ..bench.config import FRAME_METRICS
from ..bench.result import BenchResult
from ..memory_plan import format_bytes


def _cell(v: Any, metric: str, available: bool) -> str:
    if not available:
        return "unavailable"
    if v is None:
        return "-"
    if metric.startswith("psnr"):
        return f"{v:.2f}"
    if metric.startswith(("ssim", "lpips")):
        return f"{v:.4f}"
    if metric.startswith("bpp"):
        return f"{v:.4f}"
    return str(v)


def print_report(result: BenchResult, console: Any) -> None:
    """Print the per-video/overall table, FVD with N, speed and memory, and the RD table with verdicts
    on a rich ``console``."""
    avail = {m: bool(result.metrics[m]["available"]) for m in result.metrics}
    console.print(_video_table(result, avail))
    for line in _summary_lines(result, avail):
        console.print(line, markup=False, highlight=False)
    if result.rd:
        _print_rd(result.rd, console)


def _video_table(result: BenchResult, avail: dict[str, bool]) -> Any:
    """The per-video and overall rows of the frame metrics (float and 8-bit) and the rate."""
    from rich.table import Table

    cols = [m for m in FRAME_METRICS if m in result.metrics]
    u8 = any(k.endswith("_u8") for k in result.overall)
    title = f"vidtok bench: {result.model.get('name')} ({result.protocol.get('name')} protocol)"
    if result.partial:
        title += " [PARTIAL: interrupted]"
    table = Table(title=title, title_justify="left")
    table.add_column("video", no_wrap=True)
    table.add_column("clips", justify="right")
    table.add_column("frames (dup)", justify="right")
    for m in cols:
        table.add_column(m.upper(), justify="right")
    if u8:
        for m in cols:
            table.add_column(f"{m.upper()} 8-bit", justify="right")
    has_rate = any("bpp" in v for v in result.videos)
    if has_rate:
        table.add_column("bpp (.vtok)", justify="right")

    def row(
        name: str, d: dict[str, Any], clips: Any, frames: Any, padded: Any, style: str | None = None
    ) -> None:
        cells = [name, str(clips), f"{frames} ({padded})"]
        cells += [_cell(d.get(m), m, avail[m]) for m in cols]
        if u8:
            cells += [_cell(d.get(m + "_u8"), m, avail[m]) for m in cols]
        if has_rate:
            cells.append(_cell(d.get("bpp"), "bpp", True))
        table.add_row(*cells, style=style)

    for v in result.videos:
        row(v["name"], v, v["clips"], v["frames_scored"], v["frames_padded"])
    o = result.overall
    row("overall", o, o.get("clips", 0), o.get("frames_scored", 0), o.get("frames_padded", 0), style="bold")
    return table


def _summary_lines(result: BenchResult, avail: dict[str, bool]) -> list[str]:
    """The rate, FVD (with N) and speed/memory lines under the table."""
    o = result.overall
    lines: list[str] = []
    if "bpp_ideal" in o:
        lines.append(
            f"rate: {o['bpp']:.4f} bpp in real .vtok files (header included; tokens entropy-coded where that is "
            f"smaller); fixed-length n_tokens*log2(K): {o['bpp_ideal']:.4f} bpp"
        )
    if "fvd" in result.metrics:
        if not avail["fvd"]:
            lines.append("FVD: unavailable")
        elif result.fvd and result.fvd.get("fvd") is not None:
            f = result.fvd
            text = f"rFVD {f['fvd']:.2f} (ours, N={f['n']} clips)"
            if result.fvd_u8 and result.fvd_u8.get("fvd") is not None:
                text += f"; 8-bit output {result.fvd_u8['fvd']:.2f}"
            if f.get("small_sample"):
                text += f" [N <= {f.get('feature_dim', 400)}: biased upwards, see warning]"
            lines.append(text + "; StyleGAN-V I3D, not comparable with published FVDs (see docs/BENCH.md)")
        else:
            lines.append(f"FVD: not computed ({(result.fvd or {}).get('reason', 'no clips')})")
    sp = result.speed
    if sp:
        enc = f"{sp['encode_fps']:.2f}" if sp.get("encode_fps") else "-"
        dec = f"{sp['decode_fps']:.2f}" if sp.get("decode_fps") else "-"
        warm = (
            "first step excluded as warm-up" if sp.get("warmup_excluded") else "single step, warm-up included"
        )
        lines.append(
            f"speed: encode {enc} frames/s, decode {dec} frames/s ({sp['dtype']} on {sp['device']} "
            f"{sp.get('device_name', '')}, {sp['frames_timed']} frames, {warm}); peak memory "
            f"{format_bytes(sp['peak_memory_bytes'])} ({sp['peak_memory_kind'].split(' (')[0]})"
        )
    return lines


def _print_rd(rd: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    metrics = rd["metrics"]
    t = Table(
        title=f"rate-distortion vs codecs (preset {rd['preset']}, {rd['pix_fmt']})", title_justify="left"
    )
    for c in ("codec", "CRF", "bpp", "bpp +SEI", *[m.upper() for m in metrics], "vs tokens"):
        t.add_column(c, justify="left" if c in ("codec", "vs tokens") else "right")
    ours = rd["ours"]
    if ours.get("bpp"):
        ideal = f" (n*log2K {ours['bpp_ideal']:.4f})" if ours.get("bpp_ideal") else ""
        t.add_row(f"tokens: {ours['model']}", "-", f"{ours['bpp']:.4f}{ideal}", "-",
                  *[_cell(ours.get(m), m, True) for m in metrics], "", style="bold")  # fmt: skip
    for p in sorted(rd["points"], key=lambda p: (p["codec"], p["crf"])):
        beats = p.get("beats_tokens_on") or []
        t.add_row(
            p["codec"], str(p["crf"]), f"{p['bpp']:.4f}", f"{p['bpp_with_sei']:.4f}",
            *[_cell(p.get(m), m, True) for m in metrics],
            f"beats tokens on {', '.join(beats)} at a lower rate" if beats else "",
            style="red" if beats else None,
        )  # fmt: skip
    console.print(t)
    for line in rd["verdicts"]:
        console.print(line, markup=False, highlight=False)
