"""Names of on-disk latent dtypes accepted on the command line."""

from __future__ import annotations

from .errors import UsageError

_LATENT = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp32": "float32", "float32": "float32"}  # fmt: skip


def parse_latent_dtype(name: str) -> str:
    """The container's dtype name for ``fp16``/``bf16``/``fp32`` (or their long names)."""
    try:
        return _LATENT[name.lower()]
    except KeyError:
        raise UsageError(f"unknown latent dtype {name!r} (use fp16, bf16 or fp32)") from None
