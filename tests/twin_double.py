"""TEST DOUBLE, not a model: a tiny fixed-size, non-causal family with three clip-level streams shaped like
VidTwin's (``structure`` and the ``dynamics_x`` / ``dynamics_y`` pair, grouped as ``structure`` and
``dynamics``), so the generic streaming, file, CLI and bench code can be tested without the real model.

Layout: clips of 8 frames at 64x64, one latent step per clip (temporal factor 8), spatial factor 16.
``register(monkeypatch)`` adds the family to the registry for one test; ``write_weights(path, seed)``
writes a self-describing .safetensors file that ``--model PATH`` loads (other seeds: other models).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidtok_cli.errors import UsageError
from vidtok_cli.tokenizer import Encoded, FrameLayout, LatentSpec, ModuleTokenizer

NAME = "twin-double"
CLIP, SIZE, SF, C = 8, 64, 16, 4  # frames per clip, frame side, spatial factor, channels of every stream
CELLS = SIZE // SF


@dataclass(frozen=True)
class TwinDoubleConfig:
    """No options: the double's shapes are fixed."""

    def to_dict(self) -> dict[str, Any]:
        return {}


class TwinDoubleModule(nn.Module):
    """Pools frames to 4x4 cells; ``structure`` = per-half-clip cell colours, ``dynamics_x``/``_y`` =
    per-frame colour profiles averaged over rows / columns; decoding adds them back up."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_s = nn.Linear(3, C)
        self.enc_d = nn.Linear(3, C)
        self.dec = nn.Linear(C, 3)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p = F.avg_pool3d(x, (1, SF, SF))  # (B, 3, T, 4, 4)
        s = F.avg_pool3d(p, (CLIP // 2, 1, 1)).permute(0, 2, 3, 4, 1)  # (B, 2, 4, 4, 3)
        dx = self.enc_d(p.mean(3).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, T, W)
        dy = self.enc_d(p.mean(4).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, T, H)
        return {"structure": self.enc_s(s), "dynamics_x": dx, "dynamics_y": dy}

    def decode(self, z: Mapping[str, torch.Tensor], only: str | None) -> torch.Tensor:
        s = z["structure"].repeat_interleave(CLIP // 2, dim=1)  # (B, T, 4, 4, C)
        dx = z["dynamics_x"].permute(0, 2, 3, 1)[:, :, None]  # (B, T, 1, W, C)
        dy = z["dynamics_y"].permute(0, 2, 3, 1)[:, :, :, None]  # (B, T, H, 1, C)
        if only == "structure":
            dx, dy = torch.zeros_like(dx), torch.zeros_like(dy)
        if only == "dynamics":
            s = torch.zeros_like(s)
        y = self.dec(s + 0.5 * (dx + dy)).permute(0, 4, 1, 2, 3)  # (B, 3, T, 4, 4)
        return torch.tanh(F.interpolate(y, scale_factor=(1, SF, SF), mode="nearest"))


class TwinStreamsDouble(ModuleTokenizer):
    """The test double as a `Tokenizer` (see the module doc)."""

    family = NAME

    @property
    def frame_layout(self) -> FrameLayout:
        return FrameLayout(CLIP, SF, False, clip_frames=CLIP, input_size=(SIZE, SIZE))

    @property
    def latent_specs(self) -> dict[str, LatentSpec]:
        def spec(name: str, shape: tuple[int, ...], channel_axis: int) -> LatentSpec:
            return LatentSpec(
                name, "continuous", C, time_axis=None, fixed_shape=shape, channel_axis=channel_axis
            )

        return {
            "structure": spec("structure", (CLIP // 2 // 2, CELLS, CELLS, C), 3),
            "dynamics_x": spec("dynamics_x", (C, CLIP, CELLS), 0),
            "dynamics_y": spec("dynamics_y", (C, CLIP, CELLS), 0),
        }

    @property
    def stream_groups(self) -> dict[str, tuple[str, ...]]:
        return {"structure": ("structure",), "dynamics": ("dynamics_x", "dynamics_y")}

    def encode(self, x: torch.Tensor) -> Encoded:
        assert x.shape[2:] == (CLIP, SIZE, SIZE), x.shape
        return Encoded(self._module.encode(x))

    def decode(self, latents: Mapping[str, torch.Tensor], only: str | None = None) -> torch.Tensor:
        assert only in (None, "structure", "dynamics")
        return self._module.decode(latents, only)

    def encode_chunk(self, x: torch.Tensor, state: Any = None) -> tuple[Encoded, Any]:
        return self.encode(x), None  # whole clips, no state (as VidTwin)

    def decode_chunk(
        self, latents: Mapping[str, torch.Tensor], state: Any = None, final: bool = False
    ) -> tuple[torch.Tensor, Any]:
        return self.decode(latents), None

    def blend_encoded(self, moments: torch.Tensor) -> Encoded:
        raise UsageError("the three-stream double has no single moments tensor to blend (no tiling)")


def _family() -> Any:
    from vidtok_cli.families import Family

    return Family(
        name=NAME,
        config_class=TwinDoubleConfig,
        config_from_dict=lambda d: TwinDoubleConfig(),
        config_to_dict=TwinDoubleConfig.to_dict,
        config_from_official=None,
        build=lambda cfg: TwinDoubleModule(),
        wrap=TwinStreamsDouble,
        key_prefixes=("enc_s", "enc_d", "dec"),
    )


FAMILY = _family()


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds the double to the family registry for the current test."""
    from vidtok_cli import families

    monkeypatch.setitem(families._MODULES, NAME, __name__)


def write_weights(path: Path, seed: int = 0) -> Path:
    """A self-describing .safetensors file of the double with weights drawn from ``seed``."""
    from vidtok_cli import checkpoints

    torch.manual_seed(seed)
    module = TwinDoubleModule()
    meta = {
        checkpoints.META_FORMAT_VERSION: checkpoints.FORMAT_VERSION,
        checkpoints.META_FAMILY: NAME,
        checkpoints.META_CONFIG: json.dumps({}),
    }
    checkpoints.save_safetensors(module.state_dict(), path, meta)
    return path
