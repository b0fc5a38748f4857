"""Metrics of the bench protocol (vidtok_cli.metrics): closed forms, skimage/scipy cross-checks, LPIPS and
I3D weight loading with random weights saved in the official file formats. No network: the Hub is offline
and its cache is an empty (or test-made) directory."""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vidtok_cli.errors import CheckpointError, UsageError, WeightsUnavailableError
from vidtok_cli.metrics import (
    LPIPS,
    FVDAccumulator,
    FVDResult,
    UnverifiedWeightsWarning,
    clip_frames,
    feature_stats,
    frechet_distance,
    i3d_features,
    i3d_preprocess,
    load_i3d,
    load_lpips,
    lpips_frames,
    mse,
    psnr,
    ssim,
)
from vidtok_cli.metrics import lpips as lpips_mod

from .helpers import FakeI3D

skimage_metrics = pytest.importorskip("skimage.metrics")

# The stand-in I3D model is made with torch.jit.script, which recent torch versions mark as deprecated.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script` is deprecated:DeprecationWarning")

LPIPS_CHANNELS = (64, 128, 256, 512, 512)
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline(hf_offline: Path) -> Path:
    """Every test runs offline against an empty Hugging Face cache of its own."""
    return hf_offline


def _single_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def _hf_cache_file(cache: Path, repo_id: str, filename: str, source: Path) -> Path:
    """Place ``source`` in a Hugging Face cache laid out like the real one (blob named by its sha256)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    blob = repo_dir / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(source.read_bytes())
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(HF_COMMIT)
    pointer = repo_dir / "snapshots" / HF_COMMIT / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:
        pointer.write_bytes(blob.read_bytes())
    return pointer


# ------------------------------------------------------------------------------------------
# PSNR
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0.5, 0.1, 0.01])
def test_psnr_constant_offset(d: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 24, generator=g) * 0.4
    y = x + d
    value = psnr(x, y)
    assert value.shape == (4,) and value.dtype == torch.float64
    expected = -10 * math.log10(d * d + 1e-8)
    assert torch.allclose(value, torch.full((4,), expected, dtype=torch.float64), atol=1e-4)
    assert abs(expected - (-10 * math.log10(d * d))) < 5e-4  # eps is negligible at these errors


def test_psnr_identical_is_capped_and_per_frame() -> None:
    x = torch.rand(2, 5, 3, 8, 8)
    assert torch.allclose(psnr(x, x), torch.full((2, 5), 80.0, dtype=torch.float64))
    y = x.clone()
    y[1, 2] += 0.1  # one frame differs: only its value changes
    value = psnr(x, y)
    assert value.shape == (2, 5)
    assert value[1, 2] < 30 and (value.flatten()[torch.arange(10) != 7] == 80).all()
    assert psnr(x[0, 0], y[0, 0]).shape == ()  # a single (C, H, W) frame
    assert torch.allclose(mse(x, y)[1, 2], torch.tensor(0.01, dtype=torch.float64))


def test_psnr_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(ValueError, match="float"):
        psnr(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_clip_frames_order() -> None:
    video = torch.arange(2 * 3 * 4).float().view(2, 3, 4, 1, 1).expand(2, 3, 4, 5, 6)
    frames = clip_frames(video)
    assert frames.shape == (8, 3, 5, 6)
    assert torch.equal(frames[5], video[1, :, 1])  # clip 1, frame 1


# ------------------------------------------------------------------------------------------
# SSIM
# ------------------------------------------------------------------------------------------


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(
        skimage_metrics.structural_similarity(
            x.double().numpy(),
            y.double().numpy(),
            channel_axis=0,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def _structured_pair(h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth textured frame and a blurred, shifted, noisy version of it."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = [
        0.5 + 0.4 * torch.sin(2 * math.pi * (3 * xx + 2 * yy)),
        xx * yy,
        (torch.sin(12 * xx) * torch.cos(9 * yy) + 1) / 2,
    ]
    x = torch.stack(chans).double()
    blurred = F.avg_pool2d(x[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    y = (
        torch.roll(blurred, 1, dims=-1) + 0.03 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    ).clamp(0, 1)
    return x, y


def test_ssim_matches_skimage_gaussian_population() -> None:
    g = torch.Generator().manual_seed(2)
    pairs = [_structured_pair(40, 56, s) for s in range(3)]
    noise_x = torch.rand(3, 33, 47, generator=g, dtype=torch.float64)
    pairs.append(
        (noise_x, (noise_x + 0.2 * torch.rand(3, 33, 47, generator=g, dtype=torch.float64)).clamp(0, 1))
    )
    pairs.append((noise_x, torch.rand(3, 33, 47, generator=g, dtype=torch.float64)))
    for x, y in pairs:
        ours = ssim(x, y)
        assert ours.shape == () and ours.dtype == torch.float64
        assert abs(float(ours) - _skimage_ssim(x, y)) < 1e-6
        assert abs(float(ssim(x.float(), y.float(), dtype=torch.float32)) - _skimage_ssim(x, y)) < 1e-5
    # skimage's defaults (7x7 uniform window, sample covariance) are a different metric
    x, y = pairs[0]
    default = skimage_metrics.structural_similarity(x.numpy(), y.numpy(), channel_axis=0, data_range=1.0)
    assert abs(float(ssim(x, y)) - default) > 1e-3


def test_ssim_batch_shape_and_identity() -> None:
    x, y = _structured_pair(24, 24, 0)
    batch_x = torch.stack([x, y, x]).view(3, 3, 24, 24)
    batch_y = torch.stack([y, y, x])
    values = ssim(batch_x, batch_y)
    assert values.shape == (3,)
    assert abs(float(values[1]) - 1.0) < 1e-12 and abs(float(values[2]) - 1.0) < 1e-12
    assert abs(float(values[0]) - _skimage_ssim(x, y)) < 1e-6
    many = torch.rand(2, 20, 3, 16, 16, dtype=torch.float64)  # more frames than one internal chunk
    assert ssim(many, many).shape == (2, 20)
    assert torch.allclose(ssim(many, many), torch.ones(2, 20, dtype=torch.float64))


def test_ssim_constant_images_closed_form() -> None:
    a = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    b = torch.tensor([0.3, 0.5, 0.1], dtype=torch.float64)
    x = a.view(3, 1, 1).expand(3, 20, 20)
    y = b.view(3, 1, 1).expand(3, 20, 20)
    c1 = 0.01**2
    expected = ((2 * a * b + c1) / (a * a + b * b + c1)).mean()
    assert abs(float(ssim(x, y)) - float(expected)) < 1e-12


def test_ssim_pools_large_frames_first() -> None:
    x, y = _structured_pair(384, 400, 3)  # min side 384: average-pooled by round(384/256) = 2
    pooled = _skimage_ssim(F.avg_pool2d(x[None], 2)[0], F.avg_pool2d(y[None], 2)[0])
    assert abs(float(ssim(x, y)) - pooled) < 1e-6
    assert abs(float(ssim(x, y)) - _skimage_ssim(x, y)) > 1e-4
    with pytest.raises(ValueError, match="window"):
        ssim(torch.rand(3, 10, 30), torch.rand(3, 10, 30))


# ------------------------------------------------------------------------------------------
# LPIPS
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random VGG16 weights as a timm-style safetensors file and random v0.1 linear layers as an lpips-style vgg.pth."""
    torch.manual_seed(1234)
    root = tmp_path_factory.mktemp("lpips")
    features = {k: v.clone().contiguous() for k, v in LPIPS().features.state_dict(prefix="features.").items()}
    for v in features.values():  # default init, but not the same values as a fresh LPIPS() in a test
        v.mul_(1.0 + 0.1 * torch.rand_like(v))
    timm_style = dict(features)
    timm_style["pre_logits.fc1.weight"] = torch.randn(4, 8)  # non-feature keys of a timm file are ignored
    timm_style["head.fc.weight"] = torch.randn(3, 4)
    wdir = root / "weights"
    wdir.mkdir()
    save_file(timm_style, str(wdir / "vgg16.safetensors"))
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS_CHANNELS)}
    torch.save(lin, wdir / "vgg.pth", _use_new_zipfile_serialization=False)  # legacy format, like the wheel's
    return {"dir": wdir, "vgg": wdir / "vgg16.safetensors", "lin": wdir / "vgg.pth", "root": root}


@pytest.fixture(scope="module")
def lpips_model(lpips_files: dict[str, Path]) -> LPIPS:
    with pytest.warns(UnverifiedWeightsWarning, match="sha256"):
        return load_lpips(weights_dir=lpips_files["dir"])


def _hand_lpips(x: torch.Tensor, y: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """LPIPS written out from METRICS.md §3, in float64: VGG16 stages, unit-normalised taps, weighted mean."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
    stages = [
        [0, 2],
        [5, 7],
        [10, 12, 14],
        [17, 19, 21],
        [24, 26, 28],
    ]  # conv indices of torchvision's features
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    hx, hy = (x.double() - shift) / scale, (y.double() - shift) / scale
    for level, convs in enumerate(stages):
        if level:
            hx, hy = F.max_pool2d(hx, 2), F.max_pool2d(hy, 2)
        for i in convs:
            w, b = state[f"features.{i}.weight"].double(), state[f"features.{i}.bias"].double()
            hx, hy = F.relu(F.conv2d(hx, w, b, padding=1)), F.relu(F.conv2d(hy, w, b, padding=1))
        nx = hx / (hx.square().sum(1, keepdim=True).sqrt() + 1e-10)
        ny = hy / (hy.square().sum(1, keepdim=True).sqrt() + 1e-10)
        weight = state[f"lins.{level}.weight"].double().view(1, -1, 1, 1)
        total += ((nx - ny).square() * weight).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_loads_official_formats_and_matches_hand_computation(
    lpips_model: LPIPS, lpips_files: dict[str, Path]
) -> None:
    model = lpips_model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    # lpips_frames maps [0, 1] frames of any leading shape to [-1, 1] and batches them
    both = lpips_frames(model, torch.stack([x, x]) * 0.5 + 0.5, torch.stack([y, x]) * 0.5 + 0.5, batch_size=4)
    assert both.shape == (2, 2) and both.dtype == torch.float64
    d, same = both
    assert (d > 0).all()
    assert torch.allclose(same, torch.zeros(2, dtype=torch.float64), atol=1e-7)
    expected = _hand_lpips(x, y, model.state_dict())
    assert torch.allclose(d, expected, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        assert torch.allclose(model(x, y).double(), d, rtol=1e-5)  # forward takes [-1, 1] batches
    # the loaded tensors are the files' tensors, under their mapped names
    lin = torch.load(lpips_files["lin"], weights_only=True)
    assert torch.equal(model.lins[2].weight, lin["lin2.model.1.weight"])


def test_lpips_weights_info(lpips_model: LPIPS, lpips_files: dict[str, Path]) -> None:
    info = lpips_model.weights_info()
    assert set(info) == {"vgg16", "lin"}
    assert info["lin"]["sha256"] == hashlib.sha256(lpips_files["lin"].read_bytes()).hexdigest()
    assert info["lin"]["verified"] is False and info["lin"]["expected_sha256"] == lpips_mod.LIN_SHA256
    assert info["vgg16"]["sha256"] == hashlib.sha256(lpips_files["vgg"].read_bytes()).hexdigest()
    assert info["vgg16"]["verified"] is None and len(info["vgg16"]["tensor_sha256"]) == 64


def test_lpips_tensor_digest_is_container_independent(
    lpips_files: dict[str, Path], tmp_path: Path, lpips_model: LPIPS
) -> None:
    """torchvision's .pth layout (features + classifier) gives the same tensors as the timm safetensors file."""
    state = {k: v for k, v in lpips_model.state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    pth = tmp_path / "vgg16-397923af.pth"
    torch.save(state, pth)
    with pytest.warns(UnverifiedWeightsWarning):  # name of torchvision's file, but not its sha256
        model = load_lpips(vgg_weights=pth, lin_weights=lpips_files["lin"])
    assert model.weights["vgg16"].verified is False
    assert model.weights["vgg16"].tensor_sha256 == lpips_model.weights["vgg16"].tensor_sha256


def test_lpips_strict_keys(lpips_files: dict[str, Path], tmp_path: Path) -> None:
    lin = torch.load(lpips_files["lin"], weights_only=True)
    renamed = dict(lin)
    renamed["lin3.model.0.weight"] = renamed.pop("lin3.model.1.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with (
        pytest.warns(UnverifiedWeightsWarning),
        pytest.raises(CheckpointError, match="lin3.model.0.weight") as e,
    ):
        load_lpips(vgg_weights=lpips_files["vgg"], lin_weights=tmp_path / "renamed.pth")
    _single_line(e.value)

    reshaped = dict(lin)
    reshaped["lin1.model.1.weight"] = torch.rand(1, 64, 1, 1)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with (
        pytest.warns(UnverifiedWeightsWarning),
        pytest.raises(CheckpointError, match=r"lin1\.model\.1\.weight.*shape"),
    ):
        load_lpips(vgg_weights=lpips_files["vgg"], lin_weights=tmp_path / "reshaped.pth")

    from safetensors.torch import load_file

    vgg = load_file(str(lpips_files["vgg"]))
    del vgg["features.28.bias"]
    save_file(vgg, str(tmp_path / "short.safetensors"))
    with (
        pytest.warns(UnverifiedWeightsWarning),
        pytest.raises(CheckpointError, match="features.28.bias") as e,
    ):
        load_lpips(vgg_weights=tmp_path / "short.safetensors", lin_weights=lpips_files["lin"])
    _single_line(e.value)


def test_lpips_package_file_must_match_pinned_sha(
    lpips_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "weights" / "v0.1" / "vgg.pth").write_bytes(lpips_files["lin"].read_bytes())
    monkeypatch.setattr(lpips_mod, "lpips_package_dir", lambda: pkg)
    with pytest.raises(CheckpointError, match="lpips package has sha256") as e:
        load_lpips(vgg_weights=lpips_files["vgg"])
    _single_line(e.value)


def test_lpips_package_found_without_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lpips"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('importing lpips would import torchvision')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lpips_mod.lpips_package_dir() == pkg


def test_lpips_offline_without_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lpips_files: dict[str, Path]
) -> None:
    monkeypatch.setattr(lpips_mod, "lpips_package_dir", lambda: None)
    with pytest.raises(WeightsUnavailableError) as e:
        load_lpips()
    msg = _single_line(e.value)
    assert "pip install lpips --no-deps" in msg and "--lpips-weights" in msg

    # linear layers present, VGG16 neither cached nor downloadable
    with pytest.warns(UnverifiedWeightsWarning), pytest.raises(WeightsUnavailableError) as e:
        load_lpips(lin_weights=lpips_files["lin"])
    msg = _single_line(e.value)
    assert "timm/vgg16.tv_in1k" in msg and "model.safetensors" in msg and "--lpips-weights" in msg

    # a directory without VGG16 weights
    empty = tmp_path / "empty"
    empty.mkdir()
    with (
        pytest.warns(UnverifiedWeightsWarning),
        pytest.raises(WeightsUnavailableError, match="no VGG16 weights"),
    ):
        load_lpips(weights_dir=empty, lin_weights=lpips_files["lin"])
    with pytest.raises(UsageError):
        load_lpips(weights_dir=tmp_path / "missing")


def test_lpips_vgg_from_hub_cache(lpips_files: dict[str, Path], _offline: Path) -> None:
    _hf_cache_file(_offline, "timm/vgg16.tv_in1k", "model.safetensors", lpips_files["vgg"])
    with pytest.warns(UnverifiedWeightsWarning):
        model = load_lpips(lin_weights=lpips_files["lin"])
    assert model.weights["vgg16"].source == f"hf://timm/vgg16.tv_in1k/model.safetensors@{HF_COMMIT}"
    assert model.weights["vgg16"].sha256 == hashlib.sha256(lpips_files["vgg"].read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------


def _scipy_fd(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    linalg = pytest.importorskip("scipy.linalg")
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def test_frechet_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    a, b = rng.uniform(0.1, 3, 12), rng.uniform(0.1, 3, 12)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # torch float inputs give the same value
    value = frechet_distance(
        torch.tensor(mu1), torch.tensor(np.diag(a)), torch.tensor(mu2), torch.tensor(np.diag(b))
    )
    assert value == pytest.approx(expected, rel=1e-12)


def test_frechet_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(1)
    for d, n in ((16, 200), (24, 60), (20, 12)):  # the last one is rank-deficient (N < D)
        f1 = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        f2 = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.5
        mu1, s1 = feature_stats(f1)
        mu2, s2 = feature_stats(f2)
        ours = frechet_distance(mu1, s1, mu2, s2)
        ref = _scipy_fd(mu1, s1, mu2, s2)
        assert ours == pytest.approx(ref, rel=1e-6)


def test_frechet_identical_is_zero_and_stats_unbiased() -> None:
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(50, 30))
    mu, sigma = feature_stats(feats)
    assert np.allclose(sigma, np.cov(feats, rowvar=False), atol=1e-12)
    assert np.allclose(mu, feats.mean(0))
    threads = torch.get_num_threads()
    assert 0.0 <= frechet_distance(mu, sigma, mu, sigma) < 1e-8 * np.trace(sigma)
    assert torch.get_num_threads() == threads  # the single-threaded section restores the setting
    with pytest.raises(ValueError):
        feature_stats(feats[:1])
    with pytest.raises(ValueError, match="expected means"):
        frechet_distance(mu, sigma, mu[:-1], sigma)


# ------------------------------------------------------------------------------------------
# I3D pipeline (with a small TorchScript stand-in for the StyleGAN-V model)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_i3d(fake_i3d_path: Path):
    with pytest.warns(UnverifiedWeightsWarning):
        return load_i3d(fake_i3d_path)


@pytest.mark.parametrize(
    ("h", "w", "size", "top", "left"),
    [
        (64, 96, (224, 336), 0, 56),
        (96, 64, (336, 224), 56, 0),
        (256, 256, (224, 224), 0, 0),
        (100, 130, (224, 292), 0, 34),
    ],
)
def test_i3d_preprocess_geometry(h: int, w: int, size: tuple[int, int], top: int, left: int) -> None:
    g = torch.Generator().manual_seed(h + w)
    clips = torch.rand(2, 3, 4, h, w, generator=g)
    out = i3d_preprocess(clips)
    assert out.shape == (2, 3, 4, 224, 224) and out.dtype == torch.float32
    frames = clips.permute(0, 2, 1, 3, 4).reshape(8, 3, h, w)
    resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    expected = resized[:, :, top : top + 224, left : left + 224] * 2 - 1
    expected = expected.reshape(2, 4, 3, 224, 224).permute(0, 2, 1, 3, 4)
    assert torch.allclose(out, expected, atol=1e-6)
    assert out.min() >= -1 and out.max() <= 1


def test_i3d_features_through_torchscript(fake_i3d, fake_i3d_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    clips = torch.rand(3, 3, 10, 64, 80, generator=g)
    feats = i3d_features(fake_i3d, clips, batch_size=2)
    assert feats.shape == (3, 400) and feats.dtype == torch.float64
    reference = FakeI3D()(i3d_preprocess(clips), False, False, True).double()
    assert torch.allclose(feats, reference, atol=1e-5)
    info = fake_i3d.weights_info()
    assert info["sha256"] == hashlib.sha256(fake_i3d_path.read_bytes()).hexdigest()
    assert info["verified"] is False and info["source"] == "explicit"
    with pytest.raises(UsageError, match="at least 10 frames"):
        i3d_features(fake_i3d, clips[:, :, :9])


def test_i3d_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as e:
        load_i3d()
    msg = _single_line(e.value)
    assert (
        "flateon/FVD-I3D-torchscript" in msg and "i3d_torchscript.pt" in msg and "--i3d-weights PATH" in msg
    )
    with pytest.raises(UsageError):
        load_i3d(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(CheckpointError, match="TorchScript") as e:
        load_i3d(junk)
    _single_line(e.value)
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(FakeI3D(out_dim=10)).save(str(wrong))
    with pytest.warns(UnverifiedWeightsWarning):
        model = load_i3d(wrong)
    with pytest.raises(CheckpointError, match=r"expected \(2, 400\)"):
        i3d_features(model, torch.rand(2, 3, 10, 32, 32))


def test_i3d_from_hub_cache(fake_i3d_path: Path, _offline: Path) -> None:
    _hf_cache_file(_offline, "flateon/FVD-I3D-torchscript", "i3d_torchscript.pt", fake_i3d_path)
    with pytest.warns(UnverifiedWeightsWarning):
        model = load_i3d()
    assert model.weights.source == f"hf://flateon/FVD-I3D-torchscript/i3d_torchscript.pt@{HF_COMMIT}"


def test_fvd_accumulator(fake_i3d) -> None:
    g = torch.Generator().manual_seed(5)
    real = torch.rand(6, 3, 10, 32, 32, generator=g)
    fake = (real + 0.1 * torch.randn(real.shape, generator=g)).clamp(0, 1)
    acc = FVDAccumulator(fake_i3d, batch_size=4)
    acc.update(real[:4], fake[:4])
    acc.update(real[4:], fake[4:])
    assert (acc.n_real, acc.n_fake) == (6, 6)
    result = acc.compute()
    fr, ff = i3d_features(fake_i3d, real), i3d_features(fake_i3d, fake)
    expected = frechet_distance(*feature_stats(fr), *feature_stats(ff))
    # float32 features in batches of 4 vs all 6 at once: the convolutions may round differently
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.n == 6 and result.small_sample and "6 clips" in (result.warning or "")
    real_feats, fake_feats = acc.features()
    assert np.allclose(real_feats, fr.numpy(), atol=1e-5) and np.allclose(fake_feats, ff.numpy(), atol=1e-5)
    assert result.as_dict()["n_real"] == 6

    same = FVDAccumulator()
    same.add_features(real=fr, fake=fr)
    assert same.compute().value < 1e-6
    with pytest.raises(ValueError, match="needs an I3D model"):
        same.update(real, fake)
    with pytest.raises(UsageError, match="at least 2 clips"):
        FVDAccumulator().compute()


def test_fvd_large_sample_has_no_warning() -> None:
    rng = np.random.default_rng(3)
    acc = FVDAccumulator(feature_dim=8)  # N > D: full-rank covariances
    acc.add_features(real=rng.normal(size=(9, 8)), fake=rng.normal(size=(9, 8)) + 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = acc.compute()
    assert not result.small_sample and result.warning is None and result.value > 0
    assert FVDResult(value=1.0, n_real=401, n_fake=500, feature_dim=400).warning is None
    assert FVDResult(value=1.0, n_real=400, n_fake=500, feature_dim=400).small_sample
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        acc.add_features(real=rng.normal(size=(3, 400)))
