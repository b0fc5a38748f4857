"""Latent regularizers of VidTok: diagonal Gaussian (KL) and finite scalar quantisation (FSQ)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DiagonalGaussian(nn.Module):
    """KL regularizer: the encoder emits mean and log-variance (channels split in half).

    Encoding for inference uses the mean (the posterior mode); sampling is available for training.
    """

    logvar_min = -30.0
    logvar_max = 20.0

    def split(self, moments: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-variance of the encoder output."""
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(self.logvar_min, self.logvar_max)

    def forward(
        self, moments: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        mean, logvar = self.split(moments)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise

    def kl_loss(self, moments: Tensor) -> Tensor:
        """KL divergence to N(0, I), summed over all but the batch dimension and averaged over the batch."""
        mean, logvar = self.split(moments)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
        return kl.sum() / kl.shape[0]


class FSQ(nn.Module):
    """Finite scalar quantisation with the official bounding, rounding and index order.

    Channel 0 is the least significant digit of an index; indices are int64 (B, t, h, w).
    """

    def __init__(self, levels: tuple[int, ...] | list[int]):
        super().__init__()
        levels = [int(v) for v in levels]
        self.levels = tuple(levels)
        basis = [1]
        for v in levels[:-1]:
            basis.append(basis[-1] * v)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), persistent=False)
        self.codebook_size = math.prod(levels)
        self.bits_per_index = max(1, math.ceil(math.log2(self.codebook_size)))

    def _bound(self, z: Tensor) -> Tensor:
        levels = self._levels.to(torch.float32)
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(torch.float32)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Quantised latent (B, d, ...) in the encoder's dtype and indices (B, ...) int64.

        The latent carries a straight-through gradient to ``z``.
        """
        zc = z.movedim(1, -1).float()
        bounded = self._bound(zc)
        rounded = bounded.round()
        half = (self._levels // 2).to(torch.float32)
        codes = (bounded + (rounded - bounded).detach()) / half
        digits = rounded.detach().to(torch.int64) + self._levels // 2
        indices = (digits * self._basis).sum(dim=-1)
        return codes.to(z.dtype).movedim(-1, 1), indices

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.quantize(z)

    def indices_to_latent(self, indices: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Latent (B, d, ...) for indices (B, ...); bit-identical to the latent ``quantize`` returns."""
        if indices.dtype.is_floating_point:
            raise TypeError("FSQ indices must be an integer tensor")
        idx = indices.to(torch.int64).unsqueeze(-1)
        if bool((idx < 0).any()) or bool((idx >= self.codebook_size).any()):
            raise ValueError(f"FSQ index out of range 0..{self.codebook_size - 1}")
        digits = (idx // self._basis) % self._levels
        half = self._levels // 2
        codes = (digits - half).to(torch.float32) / half.to(torch.float32)
        return codes.to(dtype).movedim(-1, 1)

    def aux_loss(
        self,
        z: Tensor,
        entropy_weight: float,
        commitment_weight: float,
        inv_temperature: float = 100.0,
        diversity_gamma: float = 1.0,
        chunk_tokens: int = 64,
    ) -> Tensor:
        """Official FSQ training loss: ``entropy_weight * entropy_aux + commitment_weight * commitment``.

        The entropy term is the mean per-token entropy of the soft code assignment minus
        ``diversity_gamma`` times the entropy of the batch-average assignment, over the whole implicit
        codebook; it is computed ``chunk_tokens`` tokens at a time so memory stays bounded for large
        codebooks. ``z`` is the raw encoder output (B, d, ...).
        """
        zc = z.movedim(1, -1).reshape(-1, z.shape[1]).float()
        codes, _ = self.quantize(z.detach())
        codes_c = codes.movedim(1, -1).reshape(-1, z.shape[1]).float()
        commitment = F.mse_loss(zc, codes_c)
        if entropy_weight == 0:
            return commitment * commitment_weight
        codebook = self.implicit_codebook().to(zc.device)
        n = zc.shape[0]
        per_sample = zc.new_zeros(())
        avg_prob = zc.new_zeros(self.codebook_size)
        for start in range(0, n, chunk_tokens):
            logits = 2.0 * inv_temperature * (zc[start : start + chunk_tokens] @ codebook.t())
            prob = logits.softmax(dim=-1)
            per_sample = per_sample + (-prob * prob.clamp(min=1e-5).log()).sum(dim=-1).sum()
            avg_prob = avg_prob + prob.sum(dim=0)
        per_sample = per_sample / n
        avg_prob = avg_prob / n
        codebook_entropy = (-avg_prob * avg_prob.clamp(min=1e-5).log()).sum()
        entropy = per_sample - diversity_gamma * codebook_entropy
        return entropy * entropy_weight + commitment * commitment_weight

    def implicit_codebook(self) -> Tensor:
        """All codebook vectors (K, d) in index order (K = prod(levels); large for big codebooks)."""
        return self.indices_to_latent(torch.arange(self.codebook_size, device=self._levels.device)).movedim(
            1, -1
        )
