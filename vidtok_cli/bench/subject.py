"""The thing under test: a uniform view of a VidTok model or the :class:`IdentityModel`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dtypes import canonical_dtype
from ..errors import UsageError, VidtokError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class IdentityModel:
    """A stand-in tokenizer whose reconstruction is its input (no rate).

    Benchmarking it checks the measurement itself: PSNR at the 80 dB cap, SSIM 1, LPIPS 0, FVD 0 (up
    to float noise); ``u8`` values show the cost of 8-bit output alone.
    """

    def __init__(self, causal: bool = True, temporal_factor: int = 4, device: str = "cpu") -> None:
        self.causal = causal
        self.temporal_factor = temporal_factor
        self.device = device
        self.card = {"name": "identity", "description": "reconstruction = input (measurement check)"}


class _Subject:
    """A uniform view of a VidTok model or the identity model for the benchmark loop."""

    def __init__(self, model: Any, dtype: str) -> None:
        import torch

        self.model = model
        self.identity = isinstance(model, IdentityModel)
        self.dtype = getattr(torch, canonical_dtype(dtype))
        if self.identity:
            self.device = torch.device(model.device)
            self.causal, self.tdf, self.sf = model.causal, model.temporal_factor, 1
            self.mode: str | None = None
            self.levels: list[int] | None = None
            self.card: dict[str, Any] = dict(model.card)
            self.weights_sha256: str | None = None
            self.param_bytes = 0
        else:
            cfg = model.cfg
            p = next(model.parameters())
            self.device = p.device
            if p.dtype != torch.float32:
                raise UsageError(
                    f"the model's weights are {p.dtype}; bench loads them in float32 (use --dtype for autocast)"
                )
            self.causal, self.tdf, self.sf = cfg.causal, cfg.time_downsample_factor, cfg.spatial_factor
            self.mode = "tokens" if cfg.regularizer == "fsq" else "latent"
            self.levels = list(cfg.fsq_levels) if self.mode == "tokens" else None
            self.card = dict(model.card or {})
            self.card.setdefault("name", "unnamed")
            self.weights_sha256 = _weights_sha256(model)
            self.param_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())

    @property
    def name(self) -> str:
        return str(self.card.get("name", "model"))

    @property
    def native_frames(self) -> int:
        return 17 if self.causal else 16

    def check_frames(self, t: int) -> None:
        if self.causal and (t - 1) % self.tdf:
            raise UsageError(
                f"--frames must be 1 + k*{self.tdf} for this causal model (e.g. {1 + 4 * self.tdf}), got {t}"
            )
        if not self.causal and (t % self.tdf or t < 4):
            raise UsageError(f"--frames must be a multiple of {self.tdf} for this non-causal model, got {t}")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32 or self.identity:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latent, indices or None) of a clip (1, 3, T, H, W) in [-1, 1]."""
        if self.identity:
            return x, None
        with self.autocast():
            out = self.model.encode(x)
        return out.latent, out.indices

    def decode(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        """The reconstruction (1, 3, T, H, W) of a clip of ``frames`` frames."""
        if self.identity:
            return latent
        with self.autocast():
            y = self.model.decode(latent)
        if y.shape[2] < frames:
            raise VidtokError(f"the model decoded {y.shape[2]} frames for a clip of {frames}")
        return y[:, :, y.shape[2] - frames :]

    def encode_chunk(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        if self.identity:
            return x, None, None
        with self.autocast():
            out, state = self.model.encode_chunk(x, state)
        return out.latent, out.indices, state

    def decode_chunk(self, z: torch.Tensor, state: Any, final: bool) -> tuple[torch.Tensor, Any]:
        if self.identity:
            return z, None
        with self.autocast():
            return self.model.decode_chunk(z, state, final=final)


def _weights_sha256(model: Any) -> str:
    """sha256 of the weights file a model was loaded from, else of its tensors (names, dtypes, bytes)."""
    import hashlib

    import torch

    path = (model.card or {}).get("weights_file")
    if path and Path(path).is_file():
        from ..hub import file_sha256

        return file_sha256(path)
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
