"""vidtok: video tokenizers and neural video codecs (VidTok, VidTwin, motion tokens) for the command line and Python.

The public API is re-exported here and imported lazily, so ``import vidtok_cli`` does not load torch.
"""

from typing import Any

from ._version import __version__

__all__ = [
    "__version__",
    "load_model",
    "convert_checkpoint",
    "Tokenizer",
    "Encoded",
    "FrameLayout",
    "LatentSpec",
    "EncodedChunk",
    "VidTokConfig",
    "VidTokModel",
    "StreamState",
    "list_cards",
    "get_card",
    "encode_file",
    "decode_file",
    "read_latents",
    "encode_frames",
    "decode_chunks",
    "run_bench",
    "BenchConfig",
]

_LAZY = {
    "load_model": "vidtok_cli.loading",
    "convert_checkpoint": "vidtok_cli.loading",
    "Tokenizer": "vidtok_cli.tokenizer",
    "Encoded": "vidtok_cli.tokenizer",
    "FrameLayout": "vidtok_cli.tokenizer",
    "LatentSpec": "vidtok_cli.tokenizer",
    "EncodedChunk": "vidtok_cli.stream",
    "VidTokConfig": "vidtok_cli.arch.config",
    "VidTokModel": "vidtok_cli.arch.vidtok",
    "StreamState": "vidtok_cli.arch.layers",
    "list_cards": "vidtok_cli.zoo",
    "get_card": "vidtok_cli.zoo",
    "encode_file": "vidtok_cli.codec",
    "decode_file": "vidtok_cli.codec",
    "read_latents": "vidtok_cli.export",
    "encode_frames": "vidtok_cli.stream",
    "decode_chunks": "vidtok_cli.stream",
    "run_bench": "vidtok_cli.bench",
    "BenchConfig": "vidtok_cli.bench",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidtok_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
