"""The thing under test: any `Tokenizer` seen through its interface, and the :class:`IdentityModel`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..dtypes import canonical_dtype
from ..errors import UsageError, VidtokError
from ..tokenizer import Encoded, FrameLayout, LatentSpec, ModuleTokenizer

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..tokenizer import Tokenizer


class IdentityModel(ModuleTokenizer):
    """A stand-in tokenizer whose reconstruction is its input (no weights, no rate).

    Benchmarking it checks the measurement itself: PSNR at the 80 dB cap, SSIM 1, LPIPS 0, FVD 0 (up
    to float noise); ``u8`` values show the cost of 8-bit output alone. Its one continuous stream
    ``frames`` holds the frames themselves (one latent step per frame, no downsampling); ``causal``
    chooses the native clip length it is benchmarked with (17 frames, else 16). It belongs to no
    registered family, so no .vtok file can name it: the bench measures no rate for it.
    """

    family = "identity"

    def __init__(self, causal: bool = True, device: str = "cpu") -> None:
        from torch import nn

        card = {
            "name": "identity",
            "family": "identity",
            "description": "reconstruction = input (measurement check)",
        }
        super().__init__(nn.Identity(), card)
        self._layout = FrameLayout(1, 1, causal)
        self._device = device

    @property
    def weights_sha256(self) -> str | None:  # type: ignore[override]
        return None

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self._device)

    @property
    def frame_layout(self) -> FrameLayout:
        return self._layout

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        return {"frames": LatentSpec("frames", "continuous", 3, time_axis=1, spatial_factor=1)}

    def encode(self, x: torch.Tensor) -> Encoded:
        return Encoded({"frames": x})

    def decode(self, latents: Mapping[str, torch.Tensor], only: str | None = None) -> torch.Tensor:
        return latents["frames"]

    def encode_chunk(self, x: torch.Tensor, state: Any = None) -> tuple[Encoded, Any]:
        return Encoded({"frames": x}), state

    def decode_chunk(
        self, latents: Mapping[str, torch.Tensor], state: Any = None, final: bool = False
    ) -> tuple[torch.Tensor, Any]:
        return latents["frames"], state

    def blend_encoded(self, moments: torch.Tensor) -> Encoded:
        return Encoded({"frames": moments})


class _Subject:
    """The model under test as the bench loop needs it: layout, streams, precision, encode/decode, rate.

    Only the `Tokenizer` interface is used. ``precision`` is ``auto``/``fp32``/``bf16``/``fp16``
    (``vidtok_cli.runtime``); the weights must be float32 (reduced precision is autocast).
    """

    def __init__(self, model: Tokenizer, precision: str) -> None:
        import torch

        from ..runtime import compute_dtype, precision_name

        self.model = model
        self.device = model.device
        if model.dtype != torch.float32:
            raise UsageError(
                f"the model's weights are {model.dtype}; bench loads them in float32 (use --precision for autocast)"
            )
        self.compute_dtype = compute_dtype(precision, self.device)
        self.precision = precision_name(self.compute_dtype)
        layout = model.frame_layout
        self.layout = layout
        self.causal, self.tdf, self.sf = layout.causal, layout.temporal_factor, layout.spatial_factor
        self.specs: dict[str, LatentSpec] = dict(model.latent_specs)
        self.card: dict[str, Any] = dict(model.card or {})
        self.card.setdefault("name", "unnamed")
        self.weights_sha256: str | None = model.weights_sha256
        self.param_bytes = sum(t.numel() * t.element_size() for t in model.module.state_dict().values())
        self.mode, self.stream = _stored_stream(model.family, self.specs)
        self.levels = list(self.stream.levels) if self.mode == "tokens" else None
        self.latent_channels = self.stream.channels if self.stream is not None else None

    @property
    def name(self) -> str:
        return str(self.card.get("name", "model"))

    @property
    def dtype_name(self) -> str:
        """The dtype the model computes in: ``float32``, ``bfloat16`` or ``float16``."""

        return canonical_dtype(self.precision)

    @property
    def discrete(self) -> bool:
        """Whether the model has token (fsq/vq) streams, whose count gives the ideal rate."""
        return any(s.discrete for s in self.specs.values())

    @property
    def native_frames(self) -> int:
        return 17 if self.causal else self.layout.clip_frames

    def check_frames(self, t: int) -> None:
        if self.causal and (t - 1) % self.tdf:
            raise UsageError(
                f"--frames must be 1 + k*{self.tdf} for this causal model (e.g. {1 + 4 * self.tdf}), got {t}"
            )
        if not self.causal and (t % self.tdf or t < 4):
            raise UsageError(f"--frames must be a multiple of {self.tdf} for this non-causal model, got {t}")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        from ..runtime import autocast

        return autocast(self.device, self.compute_dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        """The latents of a clip (1, 3, T, H, W) in [-1, 1]."""
        with self.autocast():
            return self.model.encode(x)

    def decode(self, latents: Mapping[str, torch.Tensor], frames: int) -> torch.Tensor:
        """The reconstruction (1, 3, T, H, W) of a clip of ``frames`` frames."""
        with self.autocast():
            y = self.model.decode(latents)
        if y.shape[2] < frames:
            raise VidtokError(f"the model decoded {y.shape[2]} frames for a clip of {frames}")
        return y[:, :, y.shape[2] - frames :]

    def tokens(self, latents: Mapping[str, torch.Tensor]) -> tuple[int, float]:
        """(token count, ideal bits n * log2(codebook size)) over the discrete streams among ``latents``."""
        n, bits = 0, 0.0
        for name, spec in self.specs.items():
            if spec.discrete and name in latents:
                k = int(latents[name].numel())
                n += k
                bits += k * math.log2(spec.codebook_size or 1)
        return n, bits

    def file_stream(
        self, latents: Mapping[str, torch.Tensor], batched: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latent, indices or None) of the stream a .vtok file stores, batched (1, ...) for the writer."""
        assert self.stream is not None
        t = latents[self.stream.name]
        t = t if batched else t.unsqueeze(0)
        return t, (t if self.mode == "tokens" else None)


def _stored_stream(family: str, specs: Mapping[str, LatentSpec]) -> tuple[str | None, LatentSpec | None]:
    """(.vtok mode, stream) for a model a .vtok file can store: a registered family with one continuous
    or FSQ stream; ``("streams", None)`` for one with several streams or clip-level streams (each stored as
    ``vidtok encode`` stores it); (None, None) otherwise (no file sizes; the ideal rate of token streams is
    still counted)."""
    from .. import families

    if family not in families.names() or not specs:
        return None, None
    if len(specs) > 1 or any(spec.clip_level for spec in specs.values()):
        return "streams", None
    spec = next(iter(specs.values()))
    if spec.kind == "continuous":
        return "latent", spec
    if spec.kind == "fsq":
        return "tokens", spec
    return None, None
