"""Initialise a causal VidTok model so that it starts as the trivial codec (a training warm start).

The trivial codec (`vidtok_cli.baseline`) keeps every 4th frame at 1/8 resolution and interpolates
back. A small model trained from random weights on a CPU spends thousands of steps climbing towards
that quality; starting from weights that already compute it (approximately) puts training where
learning the residual detail begins. After this initialisation:

* every residual branch (spatial, temporal and mid blocks, attention) outputs zero, so each block is
  the identity, while its first layers keep their random weights so that training can use them;
* the encoder's spatial downsamplers average 2x2 pixels (three of them: an 8x8 box) and its temporal
  downsamplers keep the last frame of each window (latent ``k`` = input frame ``4k``);
* the decoder's spatial upsamplers are nearest 2x, the middle one followed by a [1, 2, 1]/4
  separable filter (bilinear 2x). Filtering at every stage is smoother inside the frame but the
  convolutions' zero padding darkens a band along the border; on real 256x256 frames this choice
  measured 23.96 dB against 22.86 dB for three bilinear stages (trivial codec: 23.51 dB). Its temporal
  upsamplers interpolate linearly (latent ``k`` lands on output frame ``4k``, frames in between are
  blended linearly);
* the latent's first 3 channels carry the block-averaged RGB, the others start at zero, and the
  posterior log-variance starts at ``logvar``.

The normalisation + SiLU before each ``conv_out`` is made (almost exactly) linear: the signal travels
as a +x / -x pair of channels, so ``silu(a) - silu(-a) = a`` recovers it after SiLU, and a +K / -K
pair of constant channels, added by the last residual block before each norm, fixes the per-frame
GroupNorm statistics (zero mean, a standard deviation that the signal changes by about ``3 / K^2``
relatively).

Only causal v1.0 models with a 1-group GroupNorm (``norm_type = "groupnorm"``, ``norm_groups = 1``)
and at least 8 channels at every level are supported; anything else raises ValueError.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..arch.layers import (
    CausalConv1d,
    CausalConv3d,
    FrameAttention,
    ResnetBlock2D,
    ResnetBlock3D,
    TemporalResBlock,
)
from ..arch.resample import Downsample, TimeDownsample, TimeUpsample, Upsample
from ..arch.vidtok import VidTokModel

RGB = (0, 1, 2)
NEG = (3, 4, 5)
CONST = (6, 7)  # +K, -K
_MIX = 20.0  # |mix_factor|: sigmoid(-20) ~ 2e-9, so the AlphaBlenders use only their conv branch


def check_supported(model: VidTokModel) -> None:
    """Raises ValueError unless ``trivial_init_`` can build the trivial codec in ``model``."""
    cfg = model.cfg
    problems = []
    if not cfg.causal or cfg.version != "v1.0":
        problems.append("a causal v1.0 model")
    if cfg.norm_layer != "groupnorm:1":
        problems.append('norm_type = "groupnorm" with norm_groups = 1')
    if cfg.ch < 8:
        problems.append("ch >= 8")
    if cfg.in_channels != 3 or cfg.out_ch != 3 or cfg.z_channels < 3:
        problems.append("RGB in and out and at least 3 latent channels")
    if cfg.regularizer != "kl":
        problems.append("the KL regularizer")
    if problems:
        raise ValueError("the trivial-codec initialisation needs " + ", ".join(problems))


def _zero(module: nn.Module) -> None:
    for p in module.parameters():
        nn.init.zeros_(p)


def _inner(conv: nn.Module) -> nn.Module:
    return conv.conv if isinstance(conv, (CausalConv3d, CausalConv1d)) else conv


def _set_pointwise(conv: nn.Module, taps: list[tuple[int, int, float]], bias: dict[int, float]) -> None:
    """Sets a conv to a per-position linear map at its last temporal tap and spatial centre.

    ``taps``: (output channel, input channel, weight); ``bias[out] = value``; all else zero.
    """
    inner = _inner(conv)
    w = inner.weight  # (out, in, kt, kh, kw) or (out, in, kh, kw)
    centre = (
        (w.shape[2] - 1, w.shape[3] // 2, w.shape[4] // 2)
        if w.ndim == 5
        else (w.shape[2] // 2, w.shape[3] // 2)
    )
    w.zero_()
    for out, src, value in taps:
        w[(out, src, *centre)] = value
    if inner.bias is not None:
        inner.bias.zero_()
        for out, value in bias.items():
            inner.bias[out] = value


def _split(conv: nn.Module) -> None:
    """RGB -> (+RGB, -RGB) on the signal channels."""
    _set_pointwise(
        conv, [(c, c, 1.0) for c in RGB] + [(n, c, -1.0) for c, n in zip(RGB, NEG, strict=True)], {}
    )


def _merge(conv: nn.Module, norm: nn.GroupNorm, k: float, bias: dict[int, float]) -> None:
    """After ``norm`` and SiLU: RGB = sigma * (silu(+x / sigma) - silu(-x / sigma)), with sigma the norm's
    per-frame standard deviation, fixed by the +K / -K channels."""
    sigma = math.sqrt(2 * k * k / norm.num_channels)
    taps = [(c, c, sigma) for c in RGB] + [(c, n, -sigma) for c, n in zip(RGB, NEG, strict=True)]
    _set_pointwise(conv, taps, bias)


@torch.no_grad()
def trivial_init_(model: VidTokModel, k: float = 30.0, logvar: float = -10.0) -> VidTokModel:
    """Sets ``model``'s weights so that it approximates the trivial codec (see the module doc)."""
    check_supported(model)
    enc, dec = model.encoder, model.decoder
    for m in model.modules():
        if isinstance(m, (ResnetBlock2D, ResnetBlock3D, TemporalResBlock)):
            _zero(_inner(m.conv2))
            if isinstance(m, ResnetBlock2D) and hasattr(m, "nin_shortcut"):
                _set_pointwise(m.nin_shortcut, [(c, c, 1.0) for c in RGB + NEG + CONST], {})
        elif isinstance(m, FrameAttention):
            _zero(_inner(m.proj_out))
        elif isinstance(m, nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # encoder: split, 8x8 box + every 4th frame, constants, norm, SiLU, merge (+ the log-variance)
    _split(enc.conv_in)
    for level, level_t in zip(enc.down, enc.down_temporal, strict=True):
        if hasattr(level, "downsample"):
            _box_downsample(level.downsample)
            if hasattr(level_t, "downsample"):
                _keep_last_frame(level_t.downsample)
    _add_constants(enc.mid.block_2, k)
    zc = model.cfg.z_channels
    _merge(enc.conv_out, enc.norm_out, k, {zc + c: logvar for c in range(zc)})

    # decoder: split, nearest / bilinear 2x stages, linear in time, constants, norm, SiLU, merge
    _split(dec.conv_in)
    ups = [dec.up[i].upsample for i in reversed(range(len(dec.up))) if hasattr(dec.up[i], "upsample")]
    for j, up in enumerate(ups):  # coarse to fine
        _upsample(up, bilinear=j == len(ups) // 2)
    for level_t in dec.up_temporal:
        if hasattr(level_t, "upsample"):
            _linear_time_upsample(level_t.upsample)
    _add_constants(dec.up_temporal[0].block[-1], k)
    _merge(dec.conv_out, dec.norm_out, k, {})
    return model


def _add_constants(block: nn.Module, k: float) -> None:
    """Makes a residual block (its conv2 zero) add +K / -K to the constant channels.

    The constants enter through a bias at the end of the stack rather than at ``conv_in``: a weight
    that reads a channel of size K moves the output K times faster than a bias, so constants carried
    through the resampling layers made the first training steps drift in colour and gain.
    """
    bias = _inner(block.conv2).bias
    bias[CONST[0]] = k
    bias[CONST[1]] = -k


def _box_downsample(down: Downsample) -> None:
    w = down.conv.weight  # (C, C, 3, 3); output i covers inputs 2i .. 2i+2 (right/bottom zero pad)
    w.zero_()
    for c in range(w.shape[0]):
        w[c, c, :2, :2] = 0.25
    down.conv.bias.zero_()


def _keep_last_frame(td: TimeDownsample) -> None:
    td.mix_factor.fill_(-_MIX)
    conv = _inner(td.conv)
    conv.weight.zero_()
    for c in range(conv.weight.shape[0]):
        conv.weight[c, c, -1, 1, 1] = 1.0
    conv.bias.zero_()


def _upsample(up: Upsample, bilinear: bool) -> None:
    w = up.conv.weight  # nearest 2x, then [1, 2, 1] / 4 in each direction = bilinear 2x, or nothing
    w.zero_()
    taps = torch.tensor([0.25, 0.5, 0.25] if bilinear else [0.0, 1.0, 0.0], dtype=w.dtype)
    for c in range(w.shape[0]):
        w[c, c] = taps[:, None] * taps[None, :]
    up.conv.bias.zero_()


def _linear_time_upsample(tu: TimeUpsample) -> None:
    tu.mix_factor.fill_(-_MIX)  # conv branch only
    conv = _inner(tu.conv)
    conv.weight.zero_()
    for c in range(conv.weight.shape[0]):  # (current + previous) / 2 after nearest 2x
        conv.weight[c, c, -1, 1, 1] = 0.5
        conv.weight[c, c, -2, 1, 1] = 0.5
    conv.bias.zero_()
