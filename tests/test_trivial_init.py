"""`vidtok train --init trivial`: weights that compute the trivial codec, as a training warm start."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.arch.trivial import TrivialCodec
from vidtok_cli.arch.vidtok import build_model
from vidtok_cli.errors import ConfigError, UsageError
from vidtok_cli.train.trainer import train
from vidtok_cli.train.trivial_init import check_supported, trivial_init_

from .helpers import step_records, tiny

ARCH = dict(
    causal=True, version="v1.0", ch=8, ch_mult=(1, 1, 2, 2), num_res_blocks=1, z_channels=6,
    time_downsample_factor=4, norm_type="groupnorm", norm_groups=1, regularizer="kl",
)  # fmt: skip


def model():
    torch.manual_seed(0)
    return trivial_init_(build_model(VidTokConfig(**ARCH))).eval()


def smooth_video(t: int = 17, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Low-frequency random motion in [-1, 1] (detail the trivial codec keeps)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 5, 4, 4, generator=g) * 1.6 - 0.8
    return F.interpolate(x, size=(t, size, size), mode="trilinear", align_corners=True)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / F.mse_loss(a, b).item())


@torch.no_grad()
def test_latent_is_the_box_average_of_every_4th_frame():
    m, x = model(), smooth_video()
    enc = m.encode(x)
    box = F.avg_pool3d(x[:, :, ::4], (1, 8, 8))
    assert enc.latent.shape == (1, 6, 5, 8, 8)
    assert torch.allclose(enc.latent[:, :3], box, atol=1e-3)
    assert enc.latent[:, 3:].abs().max() < 1e-5
    logvar = enc.moments[:, 6:]
    assert torch.allclose(logvar, torch.full_like(logvar, -10.0))


@torch.no_grad()
def test_decoder_interpolates_like_the_trivial_codec():
    m, base = model(), TrivialCodec()
    # frames that are flat in space isolate the temporal interpolation: equal away from the border
    values = torch.rand(1, 3, 17, 1, 1, generator=torch.Generator().manual_seed(1)) * 2 - 1
    flat = values.expand(1, 3, 17, 32, 32).contiguous()
    out, ref = m(flat), base.decode(base.encode(flat).latent)
    assert out.shape == ref.shape == flat.shape
    assert (out - ref)[..., 8:-8, 8:-8].abs().max() < 5e-3
    # kept frames come back exactly (up to the norm's tiny signal dependence)
    assert (out - flat)[:, :, ::4, 8:-8, 8:-8].abs().max() < 5e-3
    # on smooth content the model is about as good as the trivial codec inside the frame (their
    # filters differ: 8x8 box vs antialiased bilinear down, nearest/bilinear 2x stages vs bilinear 8x)
    x = smooth_video(seed=2)
    y, r = m(x), base.decode(base.encode(x).latent)
    inner = (..., slice(8, -8), slice(8, -8))
    assert psnr(y, x) > 28
    assert abs(psnr(y[inner], x[inner]) - psnr(r[inner], x[inner])) < 1.0


@torch.no_grad()
def test_streaming_still_matches_whole_clip():
    m, x = model(), smooth_video(t=9, size=32, seed=3)
    whole = m.decode(m.encode(x).latent)
    enc_state = dec_state = None
    outs = []
    for chunk in (x[:, :, :3], x[:, :, 3:6], x[:, :, 6:]):
        z, enc_state = m.encode_chunk(chunk, enc_state)
        y, dec_state = m.decode_chunk(z.latent, dec_state)
        outs.append(y)
    y, dec_state = m.decode_chunk(x.new_zeros(1, 6, 0, 4, 4), dec_state, final=True)
    outs.append(y)
    assert torch.allclose(torch.cat(outs, dim=2), whole, atol=1e-5)


def test_unsupported_architectures_are_refused():
    for change, words in (
        (dict(norm_type="layernorm", norm_groups=None), "norm_groups = 1"),
        (dict(regularizer="fsq", fsq_levels=(8, 8, 8, 5, 5, 5)), "KL"),
        (dict(version="v1.1"), "v1.0"),
    ):
        cfg = VidTokConfig(**{**ARCH, **change})
        with pytest.raises(ValueError, match=words):
            check_supported(build_model(cfg))


def test_train_init_trivial(videos, tmp_path):  # noqa: F811
    card = tmp_path / "arch.toml"
    card.write_text(
        'name = "t"\n[architecture]\nch = 8\nch_mult = [1, 1, 2, 2]\nnum_res_blocks = 1\nz_channels = 6\n'
        'norm_type = "groupnorm"\nnorm_groups = 1\n'
    )
    with pytest.raises(UsageError, match="needs --config"):
        train(tiny(tmp_path / "a", videos, None, init="trivial"))
    bad = tmp_path / "ln.toml"
    bad.write_text('name = "t"\n[architecture]\nch = 8\nch_mult = [1, 1, 2, 2]\nz_channels = 6\n')
    with pytest.raises(ConfigError, match="norm_groups = 1"):
        train(tiny(tmp_path / "b", videos, bad, init="trivial"))
    out = tmp_path / "c"
    train(tiny(out, videos, card, init="trivial", size=32, frames=9, steps=3, lr=1e-4))
    recs = step_records(out)
    # a warm start: the reconstruction error starts far below a random model's
    assert recs[1]["rec_loss"] < 0.15, recs[1]
