"""Pure PyTorch model definitions (no file or network I/O).

``VidTokConfig`` imports without torch; the model classes load torch on first use.
"""

from typing import Any

from .config import ArchConfigError, VidTokConfig

__all__ = ["ArchConfigError", "VidTokConfig", "StreamState", "EncodeOutput", "VidTokModel", "build_model"]

_LAZY = {
    "StreamState": "layers",
    "EncodeOutput": "vidtok",
    "VidTokModel": "vidtok",
    "build_model": "vidtok",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
