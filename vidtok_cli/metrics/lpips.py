"""LPIPS (VGG16, v0.1 linear layers), written here so that neither torchvision nor the `lpips` package is imported.

The maths is that of PyPI ``lpips`` 0.1.4 ``LPIPS(net="vgg", version="0.1")`` in eval mode (METRICS.md §3):
a fixed scaling layer, VGG16 ``features[0:30]`` tapped after relu1_2, relu2_2, relu3_3, relu4_3 and
relu5_3, channel-wise unit normalisation, a non-negative 1x1 convolution per layer on the squared
difference, a spatial mean per layer and the sum over layers.

Weights:

* VGG16 ImageNet weights (torchvision ``IMAGENET1K_V1``): Hub ``timm/vgg16.tv_in1k`` file
  ``model.safetensors`` (timm keeps torchvision's ``features.<idx>`` names), or a local directory with
  ``vgg16.safetensors``, ``model.safetensors`` or torchvision's ``vgg16-397923af.pth``.
* The linear layers: ``lpips/weights/v0.1/vgg.pth`` of the PyPI ``lpips`` wheel (``pip install lpips
  --no-deps``), located without importing the package, or ``vgg.pth`` in that local directory.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..checkpoints import read_state_dict
from ..errors import CheckpointError, UsageError, WeightsUnavailableError
from ._weights import (
    UnverifiedWeightsWarning,
    WeightsFile,
    existing_file,
    file_hash,
    hub_file,
    hub_source,
    tensor_digest,
)

__all__ = [
    "LIN_SHA256",
    "LPIPS",
    "LPIPS_CHANNELS",
    "VGG16_HUB_FILE",
    "VGG16_HUB_REPO",
    "VGG16_TORCHVISION_SHA256",
    "load_lpips",
    "lpips_frames",
]

# Scaling layer constants of lpips v0.1 (per RGB channel, applied to [-1, 1] input).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_EPS = 1e-10
LPIPS_CHANNELS = (64, 128, 256, 512, 512)

# torchvision VGG16 "D" configuration of `features`: conv widths, "M" = 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
)
# Indices (in features) of the ReLUs whose outputs LPIPS compares: relu1_2 ... relu5_3.
_TAPS = (3, 8, 15, 22, 29)

VGG16_HUB_REPO = "timm/vgg16.tv_in1k"
VGG16_HUB_FILE = "model.safetensors"
VGG16_TORCHVISION_FILE = "vgg16-397923af.pth"
VGG16_TORCHVISION_SHA256 = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
VGG16_DIR_NAMES = ("vgg16.safetensors", "model.safetensors", VGG16_TORCHVISION_FILE)

LIN_FILE = "vgg.pth"
LIN_PACKAGE_PATH = ("weights", "v0.1", LIN_FILE)
LIN_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"

_REMEDY = (
    "pass --lpips-weights DIR holding that file as vgg16.safetensors (or torchvision's "
    f"{VGG16_TORCHVISION_FILE}) plus vgg.pth from `pip install lpips --no-deps`"
)


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features[0:30]`` (without the final pool), with the same layer indices."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(v, int)
            layers.append(nn.Conv2d(in_ch, v, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            in_ch = v
    assert len(layers) == 30 and all(isinstance(layers[i], nn.ReLU) for i in _TAPS)
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS distance with a VGG16 backbone and v0.1 linear layers (eval-mode, frozen).

    State-dict names: ``features.<idx>.weight/bias`` (as torchvision and timm) and ``lins.<i>.weight``
    (shape (1, C, 1, 1); ``lin<i>.model.1.weight`` in the lpips package).  ``weights`` holds the
    provenance of the loaded files once :func:`load_lpips` has filled it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS)
        self.weights: dict[str, WeightsFile] = {}
        self.requires_grad_(False)
        self.eval()

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped VGG16 activations of a [-1, 1] batch (N, 3, H, W), after the scaling layer."""
        h = (x - self.shift) / self.scale
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _TAPS:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image of two [-1, 1] batches of shape (N, 3, H, W); returns shape (N,)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS: expected two (N, 3, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        n = x.shape[0]
        feats = self.layer_features(torch.cat([x, y], dim=0))
        total = x.new_zeros(n)
        for f, lin in zip(feats, self.lins, strict=True):
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + LPIPS_EPS)
            d = lin((f[:n] - f[n:]).square())  # (N, 1, h, w)
            total = total + d.mean(dim=(1, 2, 3))
        return total

    def weights_info(self) -> dict[str, dict[str, Any]]:
        """Provenance of the loaded weights: {"vgg16": {...}, "lin": {...}} with paths and sha256 values."""
        return {role: record.as_dict() for role, record in self.weights.items()}


@torch.no_grad()
def lpips_frames(model: LPIPS, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """Per-frame LPIPS of float frames in [0, 1] of shape (..., 3, H, W); float64 result of shape (...,).

    Frames are mapped to [-1, 1] (``2x - 1``) and run through ``model`` in batches of ``batch_size``
    on the model's device.
    """
    if x.shape != y.shape or x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(
            f"LPIPS: expected frames (..., 3, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    lead = x.shape[:-3]
    xf = x.reshape(-1, *x.shape[-3:])
    yf = y.reshape(-1, *y.shape[-3:])
    if xf.shape[0] == 0:
        return torch.empty(lead, dtype=torch.float64)
    device = next(model.parameters()).device
    out = []
    step = max(1, batch_size)
    for i in range(0, xf.shape[0], step):
        a = xf[i : i + step].to(device, torch.float32) * 2 - 1
        b = yf[i : i + step].to(device, torch.float32) * 2 - 1
        out.append(model(a, b).to("cpu", torch.float64))
    return torch.cat(out).reshape(lead)


# --------------------------------------------------------------------------------------------
# Weight loading
# --------------------------------------------------------------------------------------------


def lpips_package_dir() -> Path | None:
    """Directory of the installed PyPI ``lpips`` package, found without importing it (it imports torchvision)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _resolve_lin(
    lin_weights: str | os.PathLike[str] | None, weights_dir: Path | None
) -> tuple[Path, str, bool]:
    """(path, source, explicit) of the linear-layer file."""
    if lin_weights is not None:
        return existing_file(lin_weights, "LPIPS linear-layer file"), "explicit", True
    if weights_dir is not None and (weights_dir / LIN_FILE).is_file():
        return weights_dir / LIN_FILE, f"weights_dir {weights_dir}", True
    pkg = lpips_package_dir()
    if pkg is not None:
        candidate = pkg.joinpath(*LIN_PACKAGE_PATH)
        if candidate.is_file():
            return candidate, "lpips package", False
    where = f" and {weights_dir} has no {LIN_FILE}" if weights_dir is not None else ""
    raise WeightsUnavailableError(
        "LPIPS needs its v0.1 linear layers (lpips/weights/v0.1/vgg.pth of the PyPI lpips package), which are "
        f"not installed{where}; run `pip install lpips --no-deps`, or pass --lpips-weights DIR containing "
        f"{LIN_FILE} and the VGG16 weights (vgg16.safetensors or {VGG16_TORCHVISION_FILE})"
    )


def _resolve_vgg(vgg_weights: str | os.PathLike[str] | None, weights_dir: Path | None) -> tuple[Path, str]:
    """(path, source) of the VGG16 backbone weights."""
    if vgg_weights is not None:
        return existing_file(vgg_weights, "VGG16 weights file"), "explicit"
    if weights_dir is not None:
        for name in VGG16_DIR_NAMES:
            if (weights_dir / name).is_file():
                return weights_dir / name, f"weights_dir {weights_dir}"
        raise WeightsUnavailableError(
            f"LPIPS weights directory {weights_dir} has no VGG16 weights; put {VGG16_HUB_FILE} of Hub repo "
            f"{VGG16_HUB_REPO} there as vgg16.safetensors, or torchvision's {VGG16_TORCHVISION_FILE}"
        )
    path = hub_file(VGG16_HUB_REPO, VGG16_HUB_FILE, what="VGG16 ImageNet weights for LPIPS", remedy=_REMEDY)
    return path, hub_source(VGG16_HUB_REPO, VGG16_HUB_FILE, path)


def _strict(
    raw: dict[str, torch.Tensor], expected: dict[str, tuple[str, tuple[int, ...]]], what: str, hint: str
) -> dict[str, torch.Tensor]:
    """``raw`` renamed by ``expected`` (key -> (name, shape)) as float32; any extra, missing,
    misshapen or non-float tensor is a CheckpointError naming the key."""
    for key in raw:
        if key not in expected:
            raise CheckpointError(f"{what}: unexpected key {key!r} ({hint})")
    out: dict[str, torch.Tensor] = {}
    for key, (name, shape) in expected.items():
        if key not in raw:
            raise CheckpointError(f"{what}: missing key {key!r}")
        t = raw[key]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{what}: {key!r} has shape {tuple(t.shape)}, expected {shape}")
        if not t.is_floating_point():
            raise CheckpointError(f"{what}: {key!r} has dtype {t.dtype}, expected float")
        out[name] = t.to(torch.float32)
    return out


def _lin_state(path: Path) -> dict[str, torch.Tensor]:
    """The linear-layer tensors of a ``vgg.pth`` under this module's names, checked strictly."""
    raw, _ = read_state_dict(path, prefixes=None)
    expected = {
        f"lin{i}.model.1.weight": (f"lins.{i}.weight", (1, c, 1, 1)) for i, c in enumerate(LPIPS_CHANNELS)
    }
    return _strict(raw, expected, f"LPIPS linear-layer file {path}", "expected lin0..lin4.model.1.weight")


def _vgg_state(path: Path, model: LPIPS) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG16 weights file, checked strictly against ``model``."""
    raw, _ = read_state_dict(path, prefixes=("features.",))
    expected = {k: (k, tuple(v.shape)) for k, v in model.features.state_dict(prefix="features.").items()}
    return _strict(raw, expected, f"VGG16 weights {path}", "not in VGG16 features[0:30]")


def load_lpips(
    vgg_weights: str | os.PathLike[str] | None = None,
    lin_weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """An eval-mode LPIPS-VGG v0.1 model with official weights, on ``device``.

    ``vgg_weights`` / ``lin_weights`` name files explicitly; ``weights_dir`` is a directory holding the
    VGG16 weights (``vgg16.safetensors``, ``model.safetensors`` or ``vgg16-397923af.pth``) and optionally
    ``vgg.pth``.  Otherwise the linear layers come from the installed ``lpips`` package (its file must
    have the pinned sha256) and VGG16 from the Hub (``timm/vgg16.tv_in1k``, local cache first).  A
    linear-layer file named by the user that differs from the pinned sha256 is used with an
    :class:`UnverifiedWeightsWarning`.

    Raises WeightsUnavailableError (one line, saying what to download) when weights are missing,
    CheckpointError when a file does not hold exactly the expected tensors, UsageError for a path that
    is not a file or directory.
    """
    wdir: Path | None = None
    if weights_dir is not None:
        wdir = Path(weights_dir).expanduser()
        if not wdir.is_dir():
            raise UsageError(
                f"LPIPS weights directory {wdir} {'is a file' if wdir.exists() else 'does not exist'}"
            )

    lin_path, lin_source, explicit = _resolve_lin(lin_weights, wdir)
    lin_sha = file_hash(lin_path)
    if lin_sha != LIN_SHA256:
        if not explicit:
            raise CheckpointError(
                f"LPIPS linear-layer file {lin_path} of the installed lpips package has sha256 {lin_sha}, expected "
                f"{LIN_SHA256} (lpips 0.1.4); reinstall it with `pip install --force-reinstall --no-deps lpips==0.1.4`"
            )
        warnings.warn(
            f"LPIPS linear-layer file {lin_path} has sha256 {lin_sha}, not the official {LIN_SHA256}; "
            "LPIPS values will not be comparable with published ones",
            UnverifiedWeightsWarning,
            stacklevel=2,
        )
    lin_state = _lin_state(lin_path)  # checked before a possible VGG16 download

    vgg_path, vgg_source = _resolve_vgg(vgg_weights, wdir)
    model = LPIPS()
    vgg_state = _vgg_state(vgg_path, model)
    model.load_state_dict({**vgg_state, **lin_state}, strict=True)

    vgg_sha = file_hash(vgg_path)
    vgg_expected: str | None = None
    if vgg_path.name == VGG16_TORCHVISION_FILE or vgg_sha == VGG16_TORCHVISION_SHA256:
        vgg_expected = VGG16_TORCHVISION_SHA256  # the name carries the hash prefix: hold it to the full hash
        if vgg_sha != vgg_expected:
            warnings.warn(
                f"VGG16 weights {vgg_path} have sha256 {vgg_sha}, not that of torchvision's "
                f"{VGG16_TORCHVISION_FILE} ({vgg_expected}); LPIPS values may not be comparable",
                UnverifiedWeightsWarning,
                stacklevel=2,
            )
    model.weights = {
        "vgg16": WeightsFile(
            role="vgg16",
            path=str(vgg_path),
            sha256=vgg_sha,
            source=vgg_source,
            verified=None if vgg_expected is None else vgg_sha == vgg_expected,
            expected_sha256=vgg_expected,
            tensor_sha256=tensor_digest(vgg_state),
        ),
        "lin": WeightsFile(
            role="lin",
            path=str(lin_path),
            sha256=lin_sha,
            source=lin_source,
            verified=lin_sha == LIN_SHA256,
            expected_sha256=LIN_SHA256,
            tensor_sha256=tensor_digest(lin_state),
        ),
    }
    return model.to(device).eval()
