"""Video-LaVIT motion tokens: the tokenizer against the official manifest and the reduced fixture, the vector
quantiser's distance, loading (official constructor arguments as JSON, conversion, the zoo card), the
family adapter, and decoding by motion compensation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file

from vidtok_cli import load_model, motion_warp
from vidtok_cli.arch.lavit_config import LavitMotionConfig
from vidtok_cli.arch.lavit_motion import build_model
from vidtok_cli.arch.vq import VectorQuantizer
from vidtok_cli.checkpoints import META_FAMILY, read_safetensors_metadata
from vidtok_cli.errors import ConfigError, UsageError, VidtokError
from vidtok_cli.loading import convert_checkpoint
from vidtok_cli.zoo import get_card

from .helpers import MANIFESTS, REFERENCE, cli, require_reference

LAVIT_REF = REFERENCE / "lavit"
SMALL = LAVIT_REF / "tokenizer_small_d32_k64"
FLOAT_TOL = {"encoder_features": 1e-4, "quantizer_input": 1e-4, "quantizer_input_l2": 1e-4, "quantize": 1e-4}
FLOAT_TOL |= {"decode": 1e-4, "reconstruct": 1e-5, "reconstruct_from_token": 1e-5}


@pytest.fixture(scope="module")
def small():
    d = require_reference(SMALL)
    return load_model(d / "motion_tokenizer.bin", config=d / "config.json")


@pytest.fixture(scope="module")
def io():
    return load_file(require_reference(SMALL) / "io.safetensors")


# ----------------------------------------------------------------------------- the tokenizer


def test_full_size_state_dict_matches_manifest():
    manifest = json.loads((require_reference(MANIFESTS) / "lavit_motion_tokenizer.json").read_text())
    with torch.device("meta"):
        model = build_model(LavitMotionConfig())
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(e["key"], tuple(e["shape"])) for e in manifest["state_dict"]]  # keys, shapes, order
    assert len(ours) == manifest["num_keys"] == 515
    for group, count in manifest["param_counts"].items():
        assert sum(v.numel() for k, v in model.state_dict().items() if k.startswith(group + ".")) == count
    assert LavitMotionConfig().token_grid == tuple(manifest["config"]["token_grid_thw"])


def _check_fixture(small, io, samples: slice) -> None:
    m = small.module
    x, tokens_ref = io["x"][samples], io["tokens"][samples]
    with torch.no_grad():
        feats = m.encoder(x)
        z = m.encode_task_layer(feats)
        rows, tokens = m.quantize.tokenize(z)
        rows = rows.view(z.shape)
        decoded = m.decode(rows)
        got = {
            "encoder_features": feats,
            "quantizer_input": z,
            "quantizer_input_l2": torch.nn.functional.normalize(z, dim=-1),
            "quantize": rows,
            "decode": decoded,
            "reconstruct": m.rescale(decoded, 10, 45),  # = the official reconstruct(x, 10, 45)
            "reconstruct_from_token": m.reconstruct_from_token(tokens_ref, 10, 45),
        }
    assert torch.equal(tokens.view(x.shape[0], -1), tokens_ref)
    for name, tol in FLOAT_TOL.items():
        want = io[name][samples]
        assert got[name].shape == want.shape, name
        assert (got[name] - want).abs().max().item() < tol, name
    assert torch.equal(got["reconstruct"], got["reconstruct_from_token"])


def test_reduced_fixture_matches_official_outputs(small, io):
    """The first clip (carphone) through every stage, and through the adapter."""
    assert small.family == "lavit" and small.dtype == torch.float32
    _check_fixture(small, io, slice(0, 1))
    enc = small.encode(io["x"][:1])
    assert torch.equal(enc.latents["motion_tokens"], io["tokens"][:1])


@pytest.mark.slow
def test_reduced_fixture_all_clips(small, io):
    _check_fixture(small, io, slice(None))


def test_quantizer_uses_the_raw_codebook_norms_and_first_index_on_ties():
    vq = VectorQuantizer(3, 2)
    with torch.no_grad():
        # row 0 points exactly along z but is long; row 1 is a bit off-axis and unit length
        vq.embedding.weight.copy_(torch.tensor([[3.0, 0.0], [0.8, 0.6], [0.8, 0.6]]))
    z = torch.tensor([[5.0, 0.0]])  # l2-normalised to (1, 0); its norm does not matter
    rows, ids = vq.tokenize(z)
    assert ids.tolist() == [1]  # best cosine would be row 0; the distance picks row 1 (first of the tie)
    assert torch.equal(rows, vq.embedding.weight[1:2])  # the raw row, not normalised
    d = vq.distances(z)
    assert d.dtype == torch.float32 and math.isclose(d[0, 0].item(), 4.0, abs_tol=1e-6)


def test_bad_motion_clip_shape_is_a_usage_error(small):
    with pytest.raises(UsageError, match="motion clips must be"):
        small.encode(torch.zeros(1, 2, 16, 20, 36))
    with pytest.raises(UsageError, match="motion tokens"):
        small.motion_field(torch.zeros(1, 100, dtype=torch.long))


# ----------------------------------------------------------------------------- configs, files, card


def test_official_constructor_arguments_are_detected(tmp_path):
    data = json.loads((require_reference(SMALL) / "config.json").read_text())
    cfg = LavitMotionConfig.from_official(data)
    assert (cfg.n_embed, cfg.embed_dim, cfg.encoder.dim, cfg.decoder.in_channel) == (64, 8, 32, 8)
    assert LavitMotionConfig.from_dict(cfg.to_dict()) == cfg  # what converted files embed
    bad = dict(data, encoder=dict(data["encoder"], heads=4))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="unknown argument.*heads"):
        load_model(SMALL / "motion_tokenizer.bin", config=path)
    path.write_text(json.dumps(dict(data, embed_dim=16)))  # the decoder takes 8-dim codes
    with pytest.raises(ConfigError, match="in_channel"):
        load_model(SMALL / "motion_tokenizer.bin", config=path)


def test_convert_records_the_family_and_reloads(small, io, tmp_path):
    out = tmp_path / "m.safetensors"
    proc = cli(
        "convert", str(SMALL / "motion_tokenizer.bin"), "-o", str(out), "--config", str(SMALL / "config.json")
    )
    assert proc.returncode == 0, proc.stderr
    assert read_safetensors_metadata(out)[META_FAMILY] == "lavit"
    with pytest.raises(VidtokError, match="exists"):  # no clobbering
        convert_checkpoint(SMALL / "motion_tokenizer.bin", out, config=SMALL / "config.json")
    again = load_model(out)  # needs no config
    assert again.family == "lavit" and again.cfg == small.cfg
    assert torch.equal(again.encode(io["x"][:1]).latents["motion_tokens"], io["tokens"][:1])
    # the file name matches the lavit-motion card, whose architecture is not this one: not claimed
    assert small.card["name"] == "motion_tokenizer"


def test_zoo_card():
    card = get_card("lavit-motion")
    assert card.family == "lavit" and card.codebook_size == 1024 and card.latent_channels == 32
    assert (card.hub_repo, card.hub_file) == ("rain1011/Video-LaVIT-v1", "motion_tokenizer.bin")
    assert card.sha256 is None  # not verifiable offline
    assert card.config == LavitMotionConfig()


# ----------------------------------------------------------------------------- the adapter


def test_adapter_streams_and_decode(small, io):
    specs = small.latent_specs
    assert specs["motion_tokens"].kind == "vq" and specs["motion_tokens"].codebook_size == 64
    assert specs["motion_tokens"].time_axis is None and specs["motion_tokens"].fixed_shape == (135,)
    assert specs["key_frame"].time_axis is not None  # the key-frame model's own layout, one step per clip
    layout = small.frame_layout
    assert (layout.temporal_factor, layout.clip_frames, layout.causal) == (24, 24, False)
    assert small.stream_groups == {"motion": ("motion_tokens",), "key_frame": ("key_frame",)}

    key = torch.linspace(-1, 1, 3 * 36 * 44).reshape(1, 3, 36, 44)
    enc = small.encode(io["x"][:1], key_frames=key)
    assert set(enc.latents) == {"motion_tokens", "key_frame"}
    frames = small.decode(enc.latents, size=(36, 44))
    assert frames.shape == (1, 3, 24, 36, 44) and frames.abs().max() <= 1
    key_only = small.decode(enc.latents, only="key_frame", size=(36, 44))
    assert torch.equal(frames[:, :, 0], key_only[:, :, 0])  # frame 0 is the decoded key frame
    units = small.decode(enc.latents, only="motion")
    assert units.shape == (1, 2, 24, 20, 36)
    assert torch.equal(units, small.module.decode(enc.decoder_input))
    pixels = small.decode(enc.latents, only="motion", size=(36, 44))
    assert torch.allclose(pixels, motion_warp.to_pixels(units, 36, 44))
    view = small.motion_view(enc.latents, (36, 44), max_magnitude=1.0)
    assert view.shape == (1, 3, 24, 36, 44) and torch.equal(view, motion_warp.motion_to_rgb(pixels, 1.0))
    with pytest.raises(UsageError, match="no key_frame stream"):
        small.decode({"motion_tokens": enc.latents["motion_tokens"]})
    with pytest.raises(UsageError, match="parts"):
        small.decode(enc.latents, only="structure")


# ----------------------------------------------------------------------------- motion compensation


def _texture(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([torch.sin(xs * 0.7) * torch.cos(ys * 0.4), torch.cos(xs * 0.3 + ys * 0.5), xs / w])[
        None
    ]


def test_constant_shift_moves_content_by_that_shift():
    key = _texture(24, 32)
    flow = torch.zeros(1, 2, 5, 24, 32)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # content moves 2 px right and 1 px up per frame
    frames = motion_compensate_check(key, flow)
    for t in range(5):
        dx, dy = 2 * t, -t
        # every pixel whose source (x - dx, y - dy) lies inside the key frame
        got = frames[0, :, t, max(dy, 0) : 24 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)]
        want = key[0, :, max(-dy, 0) : 24 - max(dy, 0), max(-dx, 0) : 32 - max(dx, 0)]
        assert got.shape[-1] == 32 - 2 * t
        assert torch.allclose(got, want, atol=1e-5), t


def motion_compensate_check(key: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    frames = motion_warp.motion_compensate(key, flow)
    assert frames.shape == (key.shape[0], key.shape[1], flow.shape[2], *key.shape[-2:])
    assert torch.equal(frames[:, :, 0], key)
    return frames


def test_half_pixel_shift_interpolates():
    key = _texture(8, 8)
    out = motion_warp.warp(key, torch.full((1, 2, 8, 8), 0.0).index_fill_(1, torch.tensor([0]), 0.5))
    assert torch.allclose(out[..., 1:], (key[..., 1:] + key[..., :-1]) / 2, atol=1e-6)


def test_zero_motion_repeats_the_key_frame():
    key = _texture(10, 14)
    frames = motion_compensate_check(key, torch.zeros(1, 2, 24, 10, 14))
    assert torch.equal(frames, key.unsqueeze(2).expand_as(frames))


@pytest.mark.parametrize("video", ["carphone", "synthetic"])
def test_normalisation_matches_the_extraction(video):
    """Pixels -> tokenizer units reproduces the extraction's grid values exactly; to_pixels inverts it."""
    data = load_numpy(require_reference(LAVIT_REF) / f"extract_{video}.safetensors")
    rows, splits, grid = data["mv_rows"], data["mv_row_splits"], data["grid"]
    h, w = data["key_frames_rgb"].shape[1:3]
    checked = 0
    for i in range(grid.shape[0]):
        r = torch.from_numpy(rows[splits[i] : splits[i + 1]]).double()
        if len(r) == 0:
            continue
        px = (r[:, 0:1] * r[:, 7:9] / r[:, 9:]).t().reshape(1, 2, 1, 1, -1)
        units = motion_warp.from_pixels(px, h, w)
        cy = r[:, 6].long().clamp(0, h - 1) // 16
        cx = r[:, 5].long().clamp(0, w - 1) // 16
        expected = torch.from_numpy(grid[i])[:, cy, cx]
        assert torch.equal(units.reshape(2, -1), expected)
        checked += len(r)
    assert checked > 1000


def test_to_pixels_inverts_from_pixels():
    px = torch.randn(2, 2, 24, 20, 36) * 5
    units = motion_warp.from_pixels(px, 20, 36)  # as if the frames were 20x36: no resize
    assert torch.allclose(motion_warp.to_pixels(units, 20, 36), px, atol=1e-5)
    # x is scaled by std_x / 10 * W and y by std_y / 10 * H; a uniform field stays uniform when resized
    uniform = torch.zeros(1, 2, 3, 20, 36)
    uniform[:, 0], uniform[:, 1] = 1.0, -2.0
    out = motion_warp.to_pixels(uniform, 144, 176)
    assert out.shape == (1, 2, 3, 144, 176)
    assert torch.allclose(out[:, 0], torch.tensor(0.00993703 * 176), atol=1e-5)
    assert torch.allclose(out[:, 1], torch.tensor(-2 * 0.01130276 * 144), atol=1e-5)


def test_motion_colours_follow_the_hsv_wheel():
    flow = torch.zeros(1, 2, 1, 1, 5)
    flow[0, :, 0, 0] = torch.tensor([[1.0, 0.0, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0, 0.0]])
    rgb = (motion_warp.motion_to_rgb(flow)[0, :, 0, 0] + 1) / 2  # (3, 5) in [0, 1]
    assert torch.allclose(rgb[:, 0], torch.tensor([1.0, 0.0, 0.0]))  # right: red
    assert torch.allclose(rgb[:, 2], torch.tensor([0.0, 1.0, 1.0]))  # left: cyan
    assert torch.allclose(rgb[:, 4], torch.zeros(3))  # no motion: black
    half = (motion_warp.motion_to_rgb(flow * 0.5, max_magnitude=1.0)[0, :, 0, 0, 0] + 1) / 2
    assert torch.allclose(half, torch.tensor([0.5, 0.0, 0.0]))


def test_extracted_motion_predicts_the_real_frames():
    """carphone's extracted clip (the tokenizer input), turned into pixels and warped from the key frame,
    predicts the next 6-fps frames better than repeating the key frame; the opposite sign does worse."""
    import av
    import numpy as np

    data = load_numpy(require_reference(LAVIT_REF) / "extract_carphone.safetensors")
    with av.open(str(LAVIT_REF / "carphone.6fps.m4v")) as container:
        rgb = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(6), container.decode(video=0), strict=False)
        ]
    assert int(data["key_frame_indices"][0]) == 0
    frames = torch.from_numpy(np.stack(rgb)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    h, w = frames.shape[-2:]
    flow = motion_warp.to_pixels(torch.from_numpy(data["clip_motion"][:1, :, :6]), h, w)

    def psnr(pred: torch.Tensor) -> torch.Tensor:  # per frame 1..5
        return 10 * torch.log10(4 / ((pred - frames) ** 2).mean(dim=(0, 1, 3, 4))[1:])

    repeat = psnr(frames[:, :, :1].expand_as(frames))
    warped = psnr(motion_warp.motion_compensate(frames[:, :, 0], flow))
    reversed_ = psnr(motion_warp.motion_compensate(frames[:, :, 0], -flow))
    assert (warped > repeat + 1.5).all(), (warped, repeat)
    assert (reversed_ < repeat).all(), (reversed_, repeat)


def test_end_point_error():
    ref = torch.zeros(2, 2, 3, 4, 5)
    pred = ref.clone()
    pred[0, 0], pred[0, 1] = 3.0, 4.0  # sample 0 off by a 3-4-5 vector everywhere
    assert motion_warp.end_point_error(pred, ref).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError):
        motion_warp.end_point_error(pred, ref[:, :, :2])
