"""Exponential moving average of a model's trainable weights (saved as ``model_ema.safetensors``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of the trainable weights (official LitEma: decay warm-up
    ``min(decay, (1 + n) / (10 + n))``). Frozen weights are the model's own."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards the current weights of ``model``."""
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        params = dict(model.named_parameters())
        cur = [params[n].detach().float() for n in self.names]
        torch._foreach_lerp_(self.shadow, cur, 1.0 - d)

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state dict with the averaged weights in place of the trainable ones."""
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        for n, s in zip(self.names, self.shadow, strict=True):
            sd[n] = s.to(sd[n].dtype)
        return sd

    def load(self, state: dict[str, Tensor], num_updates: int) -> None:
        """Restores saved averaged weights (names missing from ``state`` keep theirs) and the update count."""
        for i, n in enumerate(self.names):
            if n in state:
                self.shadow[i].copy_(state[n].float())
        self.num_updates = num_updates

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Temporarily put the EMA weights into ``model``."""
        params = dict(model.named_parameters())
        saved = [params[n].detach().clone() for n in self.names]
        with torch.no_grad():
            for n, s in zip(self.names, self.shadow, strict=True):
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, s in zip(self.names, saved, strict=True):
                    params[n].copy_(s)
