"""Architecture behaviour beyond the fixtures: every official variant at tiny width, streaming, configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidtok_cli.arch import ArchConfigError, VidTokConfig, build_model
from vidtok_cli.arch.regularizers import FSQ
from vidtok_cli.zoo import list_cards

CARDS = [c for c in list_cards() if c.family == "vidtok"]


def tiny(card_cfg: VidTokConfig, ch: int = 8) -> VidTokConfig:
    return dataclasses.replace(card_cfg, ch=ch)


def randomized(cfg: VidTokConfig, seed: int = 0):
    """A model whose every parameter is random (no identity-initialised temporal blocks)."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.uniform_(-(fan_in**-0.5), fan_in**-0.5)
            elif "mix_factor" in name:
                p.normal_(0.0, 1.0)
            else:
                p.add_(0.1 * torch.randn_like(p))
    return model


def video(cfg: VidTokConfig, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    side = 2 * cfg.spatial_factor
    return torch.rand(1, 3, t, side, side, generator=g) * 2 - 1


def native_length(cfg: VidTokConfig, k: int) -> int:
    return 1 + k * cfg.time_downsample_factor if cfg.causal else 4 * k


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_every_official_variant_shapes(card):
    cfg = tiny(card.config)
    model = randomized(cfg)
    t = native_length(cfg, 3 if cfg.causal else 4)
    x = video(cfg, t)
    with torch.no_grad():
        enc = model.encode(x)
        lat_t = 4 if cfg.causal else 4
        assert enc.latent.shape == (1, cfg.z_channels, lat_t, 2, 2)
        if cfg.regularizer == "fsq":
            assert enc.indices.shape == (1, lat_t, 2, 2) and enc.indices.dtype == torch.int64
            assert int(enc.indices.max()) < cfg.codebook_size
            assert torch.equal(model.decode_indices(enc.indices), model.decode(enc.latent))
        else:
            assert enc.indices is None
        y = model.decode(enc.latent)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("card", [c for c in CARDS if c.causal], ids=lambda c: c.name)
def test_streaming_is_exact_for_every_causal_variant(card):
    """Chunked encode/decode equals whole-clip processing for every official causal config (tiny width)."""
    cfg = tiny(card.config)
    model = randomized(cfg, seed=3)
    tdf = cfg.time_downsample_factor
    x = video(cfg, 1 + 5 * tdf, seed=4)
    with torch.no_grad():
        whole = model.encode(x)
        z = whole.latent
        ref = model.decode(z)
        for chunk in (1, 2, 3, tdf + 1, 2 * tdf):
            state, parts, idx = None, [], []
            for c in x.split(chunk, dim=2):
                out, state = model.encode_chunk(c, state)
                parts.append(out.latent)
                idx.append(out.indices)
            assert (torch.cat(parts, 2) - z).abs().max() <= 1e-5, f"encode chunk {chunk}"
            if cfg.regularizer == "fsq":
                assert torch.equal(torch.cat(idx, 1), whole.indices)
        for chunk in (1, 2, 4):
            state, frames = None, []
            for s in range(0, z.shape[2], chunk):
                f, state = model.decode_chunk(z[:, :, s : s + chunk], state, final=False)
                frames.append(f)
            f, state = model.decode_chunk(z[:, :, :0], state, final=True)  # an empty final chunk flushes
            frames.append(f)
            out = torch.cat(frames, 2)
            assert out.shape == ref.shape
            assert (out - ref).abs().max() <= 1e-5, f"decode chunk {chunk}"


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_first_frame_is_encoded_alone(version):
    """Causal: latent 0 depends only on frame 0 (the model doubles as an image tokenizer)."""
    interp = "trilinear" if version == "v1.1" else "nearest"
    cfg = VidTokConfig(ch=8, version=version, interpolation_mode=interp)
    model = randomized(cfg)
    x = video(cfg, 9)
    x2 = x.clone()
    x2[:, :, 1:] = torch.rand_like(x2[:, :, 1:])
    with torch.no_grad():
        a, b = model.encode(x).latent, model.encode(x2).latent
        single = model.encode(x[:, :, :1]).latent
    assert torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-6)
    assert torch.allclose(a[:, :, 0], single[:, :, 0], atol=1e-5)


def test_groupnorm_variant_runs_and_streams():
    cfg = VidTokConfig(ch=32, ch_mult=(1, 1, 1, 1), norm_type="groupnorm")
    model = randomized(cfg)
    x = video(cfg, 9)
    with torch.no_grad():
        z = model.encode(x).latent
        state, parts = None, []
        for c in x.split(2, dim=2):
            out, state = model.encode_chunk(c, state)
            parts.append(out.latent)
    assert (torch.cat(parts, 2) - z).abs().max() <= 1e-5
    assert "encoder.down.0.block.0.norm1.weight" in model.state_dict()  # GroupNorm keys have no .norm level


def test_groupnorm_with_fewer_groups_streams_exactly():
    """norm_groups (not an official option) lets a ch=16 model use GroupNorm; per-frame statistics keep
    causal streaming exact, in both directions."""
    cfg = VidTokConfig(ch=8, ch_mult=(1, 2, 2, 2), norm_type="groupnorm", norm_groups=1)
    assert cfg.norm_layer == "groupnorm:1" and VidTokConfig.from_dict(cfg.to_dict()) == cfg
    model = randomized(cfg, seed=5)
    assert model.encoder.norm_out.num_groups == 1
    x = video(cfg, 13, seed=6)
    with torch.no_grad():
        z = model.encode(x).latent
        ref = model.decode(z)
        state, parts = None, []
        for c in x.split(3, dim=2):
            out, state = model.encode_chunk(c, state)
            parts.append(out.latent)
        state, frames = None, []
        for s in range(z.shape[2]):
            f, state = model.decode_chunk(z[:, :, s : s + 1], state, final=s == z.shape[2] - 1)
            frames.append(f)
    assert (torch.cat(parts, 2) - z).abs().max() <= 1e-5
    assert (torch.cat(frames, 2) - ref).abs().max() <= 1e-5
    assert "norm_groups" not in VidTokConfig().to_dict()  # official configs are unchanged
    with pytest.raises(ArchConfigError, match="norm_groups"):
        VidTokConfig(ch=8, norm_groups=4)  # needs groupnorm
    with pytest.raises(ArchConfigError, match="multiple"):
        VidTokConfig(ch=12, norm_type="groupnorm", norm_groups=8)


def test_non_causal_rejects_streaming_and_short_clips():
    cfg = VidTokConfig(ch=8, causal=False)
    model = randomized(cfg)
    with pytest.raises(TypeError):
        model.encode_chunk(video(cfg, 4))
    with pytest.raises(ValueError):
        model.encode(video(cfg, 3))


def test_kl_sampling_uses_generator_and_mean_is_default():
    model = randomized(VidTokConfig(ch=8))
    x = video(model.cfg, 5)
    with torch.no_grad():
        enc = model.encode(x)
        mean, logvar = model.regularization.split(enc.moments)
        assert torch.equal(enc.latent, mean)
        s1 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(0)).latent
        s2 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(0)).latent
    assert torch.equal(s1, s2) and not torch.equal(s1, mean)


def test_fsq_index_order_and_round_trip():
    fsq = FSQ((8, 5, 4))
    assert fsq.codebook_size == 160
    codes = fsq.indices_to_latent(torch.arange(160).view(1, 160, 1, 1))  # (1, 3, 160, 1, 1)
    # channel 0 is the least significant digit
    assert codes[0, :, 1, 0, 0].tolist() == [pytest.approx(-3 / 4), -1.0, -1.0]
    assert codes[0, :, 8, 0, 0].tolist() == [-1.0, pytest.approx(-1 / 2), -1.0]
    z = torch.randn(2, 3, 4, 5, 6) * 3
    latent, idx = fsq(z)
    assert torch.equal(fsq.indices_to_latent(idx), latent)
    with pytest.raises(ValueError):
        fsq.indices_to_latent(torch.tensor([[160]]))


def test_fsq_straight_through_gradient():
    fsq = FSQ((8, 8))
    z = torch.randn(1, 2, 3, 4, requires_grad=True)
    latent, _ = fsq(z)
    latent.sum().backward()
    assert z.grad is not None and (z.grad != 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(version="v2"),
        dict(causal=False, version="v1.1"),
        dict(norm_type="batchnorm"),
        dict(regularizer="fsq", z_channels=4, fsq_levels=(8, 8, 8)),
        dict(regularizer="fsq", z_channels=4),
        dict(time_downsample_factor=8),
        dict(interpolation_mode="trilinear"),
        dict(norm_type="groupnorm", ch=16),
        dict(ch_mult=(1,)),
    ],
)
def test_invalid_configs_are_refused(kwargs):
    with pytest.raises(ArchConfigError):
        VidTokConfig(**kwargs)


def test_config_dict_round_trip():
    for card in CARDS:
        cfg = card.config
        assert VidTokConfig.from_dict(cfg.to_dict()) == cfg
