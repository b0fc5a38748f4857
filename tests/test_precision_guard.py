"""Reduced precision: a non-finite chunk is recomputed in float32 (runtime.recompute_if_not_finite),
from the causal state it started from, and the latent head runs in float32 under autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtok_cli.arch import build_model
from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.loading import load_model
from vidtok_cli.runtime import PrecisionWarning, all_finite, recompute_if_not_finite
from vidtok_cli.stream import encode_frames


def test_all_finite_looks_into_containers() -> None:
    ok = torch.ones(3)
    assert all_finite({"a": ok, "b": (ok, [ok])})
    assert not all_finite({"a": ok, "b": (ok, [torch.tensor([1.0, float("inf")])])})
    assert all_finite(torch.tensor([1, 2]))  # integers are always finite


def test_recompute_only_when_autocast_output_is_not_finite() -> None:
    cpu = torch.device("cpu")
    calls: list[bool] = []

    def run() -> torch.Tensor:
        on = torch.is_autocast_enabled("cpu")
        calls.append(on)
        return torch.tensor([float("nan") if on else 1.0])

    assert recompute_if_not_finite(run, cpu).item() == 1.0
    nan = torch.tensor([float("nan")])
    assert torch.isnan(recompute_if_not_finite(lambda: nan, cpu)).all()  # float32: no fallback
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(PrecisionWarning, match="bf16 output was not finite; recomputed in float32"):
            out = recompute_if_not_finite(run, cpu, "encoder chunk")
    assert out.item() == 1.0
    assert calls == [False, True, False]


def _poison_under_autocast(model: torch.nn.Module) -> None:
    """Makes the encoder's middle stage return NaN whenever autocast is on (an injected overflow)."""

    def hook(_mod, _args, out):
        return out * float("nan") if torch.is_autocast_enabled("cpu") else out

    model.encoder.mid.register_forward_hook(hook)


def test_stream_recomputes_poisoned_chunks_from_their_start_state() -> None:
    tok = load_model()  # the embedded default model (causal)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(9)]
    ref = [c.latents for c in encode_frames(tok, frames, chunk_frames=4)]
    _poison_under_autocast(tok.module)
    with pytest.warns(PrecisionWarning, match="encoder chunk"):
        got = [c.latents for c in encode_frames(tok, frames, chunk_frames=4, autocast_dtype=torch.bfloat16)]
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        for name in b:  # every chunk was recomputed in float32 from the same state: identical
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_latent_head_runs_in_float32_under_autocast() -> None:
    cfg = VidTokConfig(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=4)
    model = build_model(cfg).eval()
    seen: list[torch.dtype] = []
    model.encoder.conv_out.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode(x)
    assert seen == [torch.float32]
    assert out.moments.dtype == torch.float32
