"""The one interface every model family presents: `Tokenizer`, with `FrameLayout`, `LatentSpec`, `Encoded`.

Everything outside a family (streaming, files, bench, training) speaks to this interface and never to a
family's config fields. A family adapts its ``nn.Module`` to it (see ``vidtok_cli.families``); provenance
(the card, the weights file and their sha256) lives on the tokenizer, not on the module.

Conventions: video is (B, C, T, H, W) float in [-1, 1]; latents keep each family's official layout, with
the time axis given by ``LatentSpec.time_axis`` (None: a clip-level stream, one step per clip); FSQ and VQ
indices are int64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

LATENT_KINDS = ("continuous", "fsq", "vq")


@dataclass(frozen=True)
class FrameLayout:
    """How frames map to latent steps.

    ``causal``: a causal stream, encoded chunk by chunk with a state; the result equals whole-clip encoding.
    Otherwise the family encodes independent clips of ``clip_frames`` frames. ``input_size``: the (H, W) the
    family requires (None: any size that is a multiple of ``spatial_factor``).
    """

    temporal_factor: int
    spatial_factor: int
    causal: bool
    clip_frames: int = 16
    input_size: tuple[int, int] | None = None
    in_channels: int = 3

    def native_frames(self, n: int) -> int:
        """The padded frame count the family needs for ``n`` frames (1 + k*tdf causal, whole clips else)."""
        if n <= 0:
            return 0
        if self.causal:
            tdf = self.temporal_factor
            return 1 + -(-(n - 1) // tdf) * tdf
        return -(-n // self.clip_frames) * self.clip_frames

    def latent_frames(self, first_step: int, end_step: int) -> tuple[int, int]:
        """The frames ``[a, b)`` of a stream (or clip sequence) that latent steps ``[first, end)`` cover."""
        tdf = self.temporal_factor
        if self.causal:
            a = 0 if first_step == 0 else 1 + (first_step - 1) * tdf
            return a, 1 + (end_step - 1) * tdf
        return first_step * tdf, end_step * tdf

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "temporal_factor": self.temporal_factor,
            "spatial_factor": self.spatial_factor,
            "causal": self.causal,
            "clip_frames": self.clip_frames,
        }
        if self.input_size is not None:
            d["input_size"] = list(self.input_size)
        return d


@dataclass(frozen=True)
class LatentSpec:
    """One named latent stream of a family.

    ``kind``: ``continuous`` (float values), ``fsq`` (int64 indices of FSQ codes with ``levels``) or ``vq``
    (int64 indices into a codebook of ``codebook_size``). ``channels``: the channel axis of a continuous or
    FSQ-latent stream (None for plain index maps). ``time_axis``: the axis of the per-sample tensor
    (batch axis removed) that counts latent steps, or None for a clip-level stream: each clip of a non-causal
    family is one step, and the step is the whole per-sample tensor (shape ``fixed_shape``); a sequence of
    such steps stacks them on a new leading axis (in a batch, the batch axis). ``spatial_factor``: the
    per-step map is the frame size divided by it (None: the step shape is ``fixed_shape``). ``channel_axis``:
    the axis of one step's shape that holds the ``channels`` of a continuous stream (per-channel coding uses
    it); 0 by default for spatial streams, whose step is (channels, h, w).
    """

    name: str
    kind: str
    channels: int | None = None
    levels: tuple[int, ...] = ()
    codebook_size: int | None = None
    time_axis: int | None = 1
    spatial_factor: int | None = None
    fixed_shape: tuple[int, ...] | None = None
    channel_axis: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LATENT_KINDS:
            raise ValueError(f"latent kind must be one of {LATENT_KINDS}, got {self.kind!r}")
        if self.kind == "fsq" and not self.levels:
            raise ValueError("an fsq stream needs its levels")
        if self.kind == "fsq" and self.codebook_size is None:
            n = 1
            for level in self.levels:
                n *= level
            object.__setattr__(self, "codebook_size", n)
        if self.kind == "vq" and not self.codebook_size:
            raise ValueError("a vq stream needs its codebook size")
        if self.time_axis is None and self.fixed_shape is None:
            raise ValueError("a clip-level stream (time_axis None) needs its fixed_shape")
        if self.channel_axis is None and self.kind == "continuous" and self.channels and self.spatial_factor:
            object.__setattr__(self, "channel_axis", 0)

    @property
    def clip_level(self) -> bool:
        """Whether the stream has no time axis (one step per clip, see the class doc)."""
        return self.time_axis is None

    def step_axis(self, batched: bool) -> int:
        """The axis counting latent steps in a tensor of this stream, with or without the batch axis
        (clip-level streams: axis 0, where a batch's clips or a sequence's steps are stacked)."""
        if self.time_axis is None:
            return 0
        return self.time_axis + int(batched)

    @property
    def discrete(self) -> bool:
        return self.kind != "continuous"

    def step_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The shape of one latent step (time axis removed) for frames of ``height`` x ``width``."""
        if self.fixed_shape is not None:
            return self.fixed_shape
        assert self.spatial_factor is not None
        hw = (height // self.spatial_factor, width // self.spatial_factor)
        return (self.channels, *hw) if self.kind == "continuous" else hw

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "time_axis": self.time_axis}
        if self.channels is not None:
            d["channels"] = self.channels
        if self.levels:
            d["levels"] = list(self.levels)
        if self.codebook_size is not None:
            d["codebook_size"] = self.codebook_size
        return d


@dataclass
class Encoded:
    """What ``Tokenizer.encode`` returns: ``latents`` by stream name, plus what tiling and training need.

    ``moments``: the raw encoder output where the family has one (KL: mean and log-variance; FSQ: the
    pre-quantisation latent), used for tile blending and training. ``decoder_input``: what the decoder
    takes when it differs from the stored streams (FSQ: the quantised codes). VidTok's conveniences
    ``.latent`` and ``.indices`` read these.
    """

    latents: dict[str, Tensor]
    moments: Tensor | None = None
    decoder_input: Tensor | None = None

    @property
    def latent(self) -> Tensor:
        """The continuous latent the decoder takes (VidTok: the KL mean or the FSQ codes)."""
        if self.decoder_input is not None:
            return self.decoder_input
        if "latent" in self.latents:
            return self.latents["latent"]
        raise AttributeError("this tokenizer has no single continuous latent; use .latents")

    @property
    def indices(self) -> Tensor | None:
        """FSQ/VQ indices of a single-token-stream tokenizer, else None."""
        return self.latents.get("tokens")


@runtime_checkable
class Tokenizer(Protocol):
    """A loaded model of any family, as the rest of vidtok sees it (see the module doc)."""

    family: str
    card: dict[str, Any]
    weights_path: Path | None

    @property
    def weights_sha256(self) -> str: ...

    @property
    def frame_layout(self) -> FrameLayout: ...

    @property
    def latent_specs(self) -> dict[str, LatentSpec]: ...

    @property
    def module(self) -> nn.Module: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode(self, x: Tensor) -> Encoded: ...

    @property
    def stream_groups(self) -> dict[str, tuple[str, ...]]: ...

    def decode(self, latents: Mapping[str, Tensor], only: str | None = None) -> Tensor: ...

    def encode_chunk(self, x: Tensor, state: Any = None) -> tuple[Encoded, Any]: ...

    def decode_chunk(
        self, latents: Mapping[str, Tensor], state: Any = None, final: bool = False
    ) -> tuple[Tensor, Any]: ...

    def blend_encoded(self, moments: Tensor) -> Encoded: ...


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's tensors (names, dtypes, shapes and bytes, in key order)."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ModuleTokenizer:
    """Base of the family adapters: provenance, device and dtype of an ``nn.Module`` behind the interface.

    ``weights_sha256`` is the sha256 of the weights file the model was loaded from, or of its tensors for a
    model built in memory: one identity for one set of weights, as written in .vtok headers.
    """

    family: str = ""

    def __init__(self, module: nn.Module, card: Mapping[str, Any] | None = None, weights_path: Any = None):
        self._module = module
        self.card: dict[str, Any] = dict(card or {})
        self.weights_path: Path | None = Path(weights_path) if weights_path else None
        self._sha256: str | None = None

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.family)

    @property
    def stream_groups(self) -> dict[str, tuple[str, ...]]:
        """Named groups of streams that ``decode(latents, only=GROUP)`` decodes alone ({}: none)."""
        return {}

    @property
    def weights_sha256(self) -> str:
        if self._sha256 is None:
            if self.weights_path is not None and self.weights_path.is_file():
                from .hub import file_sha256

                self._sha256 = file_sha256(self.weights_path)
            else:
                self._sha256 = state_dict_sha256(self._module)
        return self._sha256

    def _first_tensor(self) -> Tensor | None:
        for t in self._module.parameters():
            return t
        for t in self._module.buffers():
            return t
        return None

    @property
    def device(self) -> torch.device:
        import torch

        t = self._first_tensor()
        return t.device if t is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        import torch

        t = self._first_tensor()
        return t.dtype if t is not None else torch.float32

    def to(self, *args: Any, **kwargs: Any) -> ModuleTokenizer:
        """Moves the module (like ``nn.Module.to``); returns the tokenizer."""
        self._module.to(*args, **kwargs)
        return self

    def eval(self) -> ModuleTokenizer:
        self._module.eval()
        return self

    def parameters(self) -> Any:
        return self._module.parameters()

    def state_dict(self) -> dict[str, Tensor]:
        return self._module.state_dict()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.family})>"
