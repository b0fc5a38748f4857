"""The prepacked oneDNN convolution path of the CPU inference layers."""

from __future__ import annotations

import copy

import pytest
import torch

from vidtok_cli.arch import layers
from vidtok_cli.arch.layers import CausalConv3d, StreamState, conv3d

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


@pytest.mark.parametrize("shape", [(1, 8, 4, 6, 6), (2, 3, 5, 9, 7)])
def test_prepacked_matches_conv3d_and_follows_weight_updates(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(shape[1], 5, 3)
    x = torch.randn(*shape)
    with torch.no_grad():
        got = conv3d(conv, x, conv.weight, conv.bias, (1, 1, 1), (0, 1, 1))
        assert conv in layers._PACKED
        want = torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        conv.weight.mul_(2)  # in-place update: the packed weight is redone
        got = conv3d(conv, x, conv.weight, conv.bias, (1, 1, 1), (0, 1, 1))
        want = torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_causal_conv_fused_silu_and_deepcopy_after_inference() -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(4, 4, 3)
    conv.cache_key = "c"
    x = torch.randn(1, 4, 5, 6, 6)
    with torch.no_grad():
        fused = conv(x.clone(), StreamState(), act=True)
        plain = conv(torch.nn.functional.silu(x), StreamState())
        torch.testing.assert_close(fused, plain)
        twin = copy.deepcopy(conv)  # the oneDNN weight is not part of the module
        torch.testing.assert_close(twin(x.clone(), StreamState(), act=True), fused)
    x.requires_grad_(True)  # autograd takes the plain path
    conv(x, StreamState(), act=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_weights_made_under_inference_mode() -> None:
    """Weights created under torch.inference_mode are inference tensors without a version counter."""
    torch.manual_seed(0)
    with torch.inference_mode():
        conv = torch.nn.Conv3d(3, 4, 3)
        x = torch.randn(1, 3, 4, 6, 6)
        got = conv3d(conv, x, conv.weight, conv.bias, (1, 1, 1), (1, 1, 1))
        want = torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=(1, 1, 1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous", "mixed"])
def test_residual_is_added_by_the_convolution(layout: str) -> None:
    torch.manual_seed(3)
    conv = torch.nn.Conv3d(6, 6, (1, 3, 3))
    x = torch.randn(1, 6, 4, 7, 9)
    r = torch.randn(1, 6, 4, 7, 9)
    if layout != "contiguous":
        x = layers.channels_last(x)
    if layout == "channels_last":
        r = layers.channels_last(r)
    want = torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1)) + r
    kept = r.clone()
    with torch.no_grad():
        got = conv3d(conv, x, conv.weight, conv.bias, (1, 1, 1), (0, 1, 1), residual=r)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(r, kept)  # the residual is read, never overwritten
    with torch.enable_grad():  # the autograd path adds it too
        torch.testing.assert_close(conv3d(conv, x, conv.weight, conv.bias, (1, 1, 1), (0, 1, 1), r), want)
