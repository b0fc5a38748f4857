"""The Tokenizer adapter shared by single-stream autoencoders (VidTok, the trivial codec).

Their modules encode to ``EncodeOutput(latent, indices, moments)`` and decode a continuous latent; the
stream is ``tokens`` when the module gives indices (FSQ), else ``latent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..tokenizer import Encoded, ModuleTokenizer

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class SingleStreamTokenizer(ModuleTokenizer):
    """Delegates encode/decode (whole clips and causal chunks) to the module, with named streams."""

    def _encoded(self, out: Any) -> Encoded:
        if out.indices is not None:
            return Encoded({"tokens": out.indices}, out.moments, out.latent)
        return Encoded({"latent": out.latent}, out.moments)

    def encode(self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Encoded:
        """Encodes a whole clip x (B, 3, T, H, W) in [-1, 1] (KL: the posterior mean unless ``sample``)."""
        return self._encoded(self._module.encode(x, sample=sample, generator=generator))

    def encode_chunk(
        self, x: Tensor, state: Any = None, sample: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Encoded, Any]:
        """Encodes the next frames of a causal stream; pass the returned state with the next chunk."""
        out, state = self._module.encode_chunk(x, state, sample=sample, generator=generator)
        return self._encoded(out), state

    def blend_encoded(self, moments: Tensor) -> Encoded:
        """The regularizer applied to encoder moments (e.g. blended spatial tiles)."""
        return self._encoded(self._module.regularize(moments))

    def indices_to_latent(self, indices: Tensor) -> Tensor:
        """The codes of token indices, in the decoder's dtype."""
        return self._module.indices_to_latent(indices)

    def _decoder_input(self, latents: Mapping[str, Tensor] | Tensor, only: str | None = None) -> Tensor:
        if only is not None:
            raise UsageError(f"--only {only}: a {self.family} model has a single latent stream")
        if not isinstance(latents, Mapping):
            return latents
        if "tokens" in latents:
            return self.indices_to_latent(latents["tokens"])
        if "latent" in latents:
            return latents["latent"]
        raise UsageError(f"no 'latent' or 'tokens' stream among {sorted(latents)}")

    def decode(self, latents: Mapping[str, Tensor] | Tensor, only: str | None = None) -> Tensor:
        """Frames from ``{"latent": z}`` or ``{"tokens": indices}`` (a bare latent tensor also works)."""
        return self._module.decode(self._decoder_input(latents, only))

    def decode_chunk(
        self, latents: Mapping[str, Tensor] | Tensor, state: Any = None, final: bool = False
    ) -> tuple[Tensor, Any]:
        """Decodes the next latents of a causal stream; ``final`` flushes look-ahead layers."""
        return self._module.decode_chunk(self._decoder_input(latents), state, final=final)
