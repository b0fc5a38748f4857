"""The one table of dtype names accepted anywhere (command line, configs, files), without torch."""

from __future__ import annotations

from .errors import UsageError

# alias -> canonical name (also the container's and torch's attribute name)
ALIASES = {"fp16": "float16", "float16": "float16", "half": "float16",
           "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp32": "float32", "float32": "float32", "float": "float32"}  # fmt: skip
SHORT = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def canonical_dtype(name: object, what: str = "dtype") -> str:
    """``float16``/``bfloat16``/``float32`` for any accepted alias (``fp16``, ``torch.float16`` ...)."""
    key = str(name).lower().removeprefix("torch.")
    try:
        return ALIASES[key]
    except KeyError:
        raise UsageError(f"unknown {what} {name!r} (use fp16, bf16 or fp32)") from None


def parse_latent_dtype(name: str) -> str:
    """The container's dtype name for ``fp16``/``bf16``/``fp32`` (or their long names)."""
    return canonical_dtype(name, "latent dtype")
