"""Round-trips a synthetic clip through a tiny VidTok model saved as a local checkpoint.

Shows the offline workflow: build a model, save it, load it back by path with ``load_model``, encode
and decode, stream in chunks. Runs in a few seconds on a CPU.
"""

import tempfile
from pathlib import Path

import torch

from vidtok_cli import VidTokConfig, load_model
from vidtok_cli.arch import build_model
from vidtok_cli.checkpoints import save_safetensors

cfg = VidTokConfig(ch=16, regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)
torch.manual_seed(0)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "tiny.safetensors"
    import json

    save_safetensors(build_model(cfg).state_dict(), path, {"vidtok.config": json.dumps(cfg.to_dict())})
    model = load_model(path)

    t = torch.linspace(0, 1, 17)
    x = torch.sin(6.28 * (t[:, None, None] + torch.linspace(0, 1, 64)[None, None, :])) * torch.ones(
        3, 17, 64, 64
    )
    x = x.unsqueeze(0)
    with torch.no_grad():
        enc = model.encode(x)
        y = model.decode_indices(enc.indices)
        state, chunks = None, []
        for chunk in x.split(5, dim=2):
            out, state = model.encode_chunk(chunk, state)
            chunks.append(out.indices)
    streamed = torch.cat(chunks, dim=1)
    print(
        f"input {tuple(x.shape)} -> tokens {tuple(enc.indices.shape)} (codebook {cfg.codebook_size}) -> {tuple(y.shape)}"
    )
    print(f"streamed tokens identical to whole-clip tokens: {bool((streamed == enc.indices).all())}")
