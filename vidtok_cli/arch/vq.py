"""Vector quantisation with a learned codebook, with the distance of Video-LaVIT's tokenizers.

Only the input vectors are l2-normalised; the codebook rows are used as stored (their norms matter).
The token of a vector is the codebook row with the smallest squared euclidean distance
``|z|^2 + |e|^2 - 2 z.e``, computed in float32, first index on ties; the quantised value is that raw row.
State-dict key: ``embedding.weight`` (n_embed, embedding_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CodebookEmbedding(nn.Module):
    """The codebook: ``weight`` (num_tokens, codebook_dim), unit rows at initialisation."""

    def __init__(self, num_tokens: int, codebook_dim: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.codebook_dim = codebook_dim
        self.weight = nn.Parameter(F.normalize(torch.randn(num_tokens, codebook_dim), p=2, dim=-1))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight)


class VectorQuantizer(nn.Module):
    """Nearest-codebook-row quantiser (see the module doc)."""

    def __init__(self, n_embed: int, embedding_dim: int):
        super().__init__()
        self.num_tokens = n_embed
        self.codebook_dim = embedding_dim
        self.embedding = CodebookEmbedding(n_embed, embedding_dim)

    def distances(self, z: Tensor) -> Tensor:
        """Squared distances (N, n_embed) in float32 from vectors z (..., dim), l2-normalised first."""
        flat = F.normalize(z.float(), p=2, dim=-1).reshape(-1, self.codebook_dim)
        e = self.embedding.weight.float()
        return flat.pow(2).sum(dim=1, keepdim=True) + e.pow(2).sum(dim=1) - 2 * flat @ e.t()

    def tokenize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(codebook rows (N, dim), token ids (N,) int64) for vectors z (..., dim)."""
        ids = torch.argmin(self.distances(z), dim=1)
        return self.embedding(ids), ids

    def lookup(self, ids: Tensor) -> Tensor:
        """The raw codebook rows of token ids (any shape): (..., dim)."""
        return self.embedding(ids)
