"""The decoder's upsampling layers compute, without autograd, the convolution of the upsampled frames as
phase convolutions on the frames themselves; these must equal upsampling then convolving."""

from __future__ import annotations

import pytest
import torch

from vidtok_cli.arch import layers
from vidtok_cli.arch.layers import StreamState, assign_cache_keys, channels_last
from vidtok_cli.arch.resample import TimeUpsample, Upsample


def _reference(module: torch.nn.Module, *args: object) -> torch.Tensor:
    """The upsample-then-convolve path (taken while autograd records)."""
    with torch.enable_grad():
        return module(*args).detach()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_spatial_phases_equal_upsample_then_conv(layout: str) -> None:
    torch.manual_seed(0)
    up = Upsample(8)
    x = torch.randn(2, 8, 3, 7, 10)
    x = channels_last(x) if layout == "channels_last" else x
    want = _reference(up, x)
    with torch.no_grad():
        got = up(x)
        assert up in layers._DERIVED  # the phase path ran
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert got.shape == (2, 8, 3, 14, 20)
        up.conv.weight.mul_(-0.5)  # a changed weight gives new phase kernels
        torch.testing.assert_close(up(x), _reference(up, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("replicate", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_temporal_phases_equal_repeat_then_causal_conv_in_any_chunking(replicate: bool, layout: str) -> None:
    torch.manual_seed(1)
    up = TimeUpsample(6, causal=True, replicate=replicate)
    assign_cache_keys(up)
    with torch.no_grad():
        up.mix_factor.fill_(0.3)
    x = torch.randn(1, 6, 9, 5, 4)
    x = channels_last(x) if layout == "channels_last" else x
    want = _reference(up, x, StreamState(final=True))
    with torch.no_grad():
        whole = up(x, StreamState(final=True))
        state = StreamState()
        parts = [up(x[:, :, a:b], state) for a, b in ((0, 1), (1, 1), (1, 5), (5, 9))]
    assert whole.shape == (1, 6, 18, 5, 4)
    torch.testing.assert_close(whole, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(parts, dim=2), want, rtol=1e-5, atol=1e-5)
    assert [p.shape[2] for p in parts] == [2, 0, 8, 8]
    with torch.no_grad():  # the blend weight is folded into the phase kernels: a new one is used
        up.mix_factor.fill_(-1.0)
        again = up(x, StreamState(final=True))
    torch.testing.assert_close(again, _reference(up, x, StreamState(final=True)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("module", ["spatial", "temporal"])
def test_reduced_precision_keeps_upsample_then_convolve(module: str) -> None:
    """Under autocast the phase kernels (sums of taps, the blend weight folded in) would be rounded as
    weights: the layers upsample then convolve, also when handed float32 frames."""
    torch.manual_seed(2)
    if module == "spatial":
        up: torch.nn.Module = Upsample(8)
        args: tuple[object, ...] = ()
    else:
        up = TimeUpsample(8, causal=True, replicate=False)
        assign_cache_keys(up)
        args = (StreamState(final=True),)
    x = torch.randn(1, 8, 4, 6, 6)
    want = _reference(up, x, *args)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = up(x, *[StreamState(final=True) for _ in args])
    assert up not in layers._DERIVED
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
