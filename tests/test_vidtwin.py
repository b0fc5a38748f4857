"""VidTwin: official keys (full-size manifest), strict loading, parity with the official code (fixture in
../shared/reference/vidtwin), the Tokenizer adapter, configs, the zoo card and conversion."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import vidtok_cli
from vidtok_cli import families, zoo
from vidtok_cli.arch.vidtwin import VidTwinModel
from vidtok_cli.arch.vidtwin_config import VidTwinConfig
from vidtok_cli.checkpoints import META_FAMILY, read_safetensors_metadata
from vidtok_cli.errors import ConfigError, UsageError
from vidtok_cli.loading import config_from_official, convert_checkpoint

from .helpers import MANIFESTS, VIDTWIN_REF, require_reference, tiny_vidtwin, tiny_vidtwin_config

CARD = "vidtwin-structure-7-7-8-dynamics-7-8"
MIRROR = Path("/work/.mirror/microsoft+VidTok/repo")
YAML_PATH = "configs/vidtwin/vidtwin_structure_7_7_8_dynamics_7_8.yaml"


@pytest.fixture(scope="module")
def ref() -> Path:
    return require_reference(VIDTWIN_REF)


@pytest.fixture(scope="module")
def model(ref: Path):
    return vidtok_cli.load_model(ref / "model.ckpt", config=ref / "config.json")


@pytest.fixture(scope="module")
def io(ref: Path) -> dict[str, torch.Tensor]:
    return load_file(ref / "io.safetensors")


@pytest.fixture(scope="module")
def io_fp32(ref: Path) -> dict[str, torch.Tensor]:
    return load_file(ref / "io_fp32.safetensors")


def _outputs(m: VidTwinModel, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor the fixture holds, computed by vidtok (names as in io*.safetensors)."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        enc = {k: m.encode(io[f"x_{k}"]) for k in "ab"}
        for k, e in enc.items():
            out.update({f"z_{k}": e.z, f"structure_{k}": e.structure})
            out.update({f"dynamics_x_{k}": e.dynamics_x, f"dynamics_y_{k}": e.dynamics_y})
        a, b = enc["a"], enc["b"]
        out["structure_moments_a"] = a.structure_moments
        out["dynamics_x_moments_a"] = a.dynamics_x_moments
        out["dynamics_y_moments_a"] = a.dynamics_y_moments
        out["kl_loss_a"] = a.kl_loss()
        out["dec_a"] = m.decode(a.structure, a.dynamics_x, a.dynamics_y)
        out["dec_b"] = m.decode(b.structure, b.dynamics_x, b.dynamics_y)
        out["dec_a_structure_only"] = m.decode(a.structure, None, None, only="structure")
        out["dec_a_dynamics_only"] = m.decode(None, a.dynamics_x, a.dynamics_y, only="dynamics")
        out["dec_cross_structure_a_dynamics_b"] = m.decode(a.structure, b.dynamics_x, b.dynamics_y)
    return out


# ----------------------------------------------------------------------------- keys and loading


def test_full_size_state_dict_matches_the_manifest_key_for_key():
    manifest = json.loads(
        (require_reference(MANIFESTS) / "vidtwin_structure_7_7_8_dynamics_7_8.json").read_text()
    )
    entries = manifest["state_dict"]
    assert len(entries) == manifest["num_keys"] == 643
    training = [e for e in entries if e["key"].startswith("loss.")]
    assert len(training) == 56  # LPIPS + discriminator of the training checkpoint: not part of the model
    assert families.get("vidtwin").training_prefixes[0] == "loss."
    with torch.device("meta"):
        m = VidTwinModel(zoo.get_card(CARD).config)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in m.state_dict().items()]
    expected = [
        (e["key"], tuple(e["shape"]), e["dtype"]) for e in entries if not e["key"].startswith("loss.")
    ]
    assert ours == expected  # 587 keys: same names, shapes, dtypes (float64 sin-cos tables) and order
    for group, counts in manifest["groups"].items():
        if group == "loss":
            continue
        got = [v for k, v in m.state_dict().items() if k.split(".", 1)[0] == group]
        assert (len(got), sum(v.numel() for v in got)) == (counts["keys"], counts["elements"]), group


def test_fixture_loads_strictly_with_the_stored_float64_tables(ref: Path, model):
    sd = torch.load(ref / "model.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    own = {k: v for k, v in sd.items() if not k.startswith("loss.")}
    assert set(model.state_dict()) == set(own)
    for name in ("encoder.pos_embed", "encoder.pos_embed_temporal", "decoder.pos_embed"):
        t = model.state_dict()[name]
        assert t.dtype == torch.float64
        assert torch.equal(t, own[name])
    assert model.family == "vidtwin"
    assert torch.equal(model.state_dict()["conv_in.weight"], own["conv_in.weight"].float())


# ----------------------------------------------------------------------------- parity


def test_parity_with_the_official_float32_math(model, io, io_fp32):
    ours = _outputs(model.module, io)
    names = set(io_fp32)
    assert names <= set(ours)
    for name in sorted(names - {"kl_loss_a"}):
        assert ours[name].shape == io_fp32[name].shape, name
        diff = (ours[name] - io_fp32[name]).abs().max().item()
        assert diff <= 1e-4, f"{name}: {diff}"
    kl, want = ours["kl_loss_a"].item(), io_fp32["kl_loss_a"].item()
    assert abs(kl - want) <= 1e-5 * abs(want)


def test_official_casts_reproduce_the_official_gpu_numerics(ref: Path, io):
    m = vidtok_cli.load_model(ref / "model.ckpt", config=ref / "config.json").module
    m.official_casts = True  # bfloat16 attention casts, fp16 autocast around the blocks
    ours = _outputs(m, io)
    for name in sorted(set(io) - {"x_a", "x_b", "kl_loss_a"}):
        diff = (ours[name] - io[name]).abs().max().item()
        assert diff <= 1e-2, f"{name}: {diff}"
    assert abs(ours["kl_loss_a"].item() - io["kl_loss_a"].item()) <= 1e-4 * io["kl_loss_a"].item()


def test_temporal_attention_is_causal_and_spatial_is_not(model, io):
    """Changing the last frame leaves the features of earlier frames unchanged (and not the other way)."""
    x = io["x_a"].clone()
    x2 = x.clone()
    x2[:, :, -1] = -x2[:, :, -1]
    with torch.no_grad():
        z, z2 = model.module.encoder.encode(x), model.module.encoder.encode(x2)
    assert torch.allclose(z[:, :, :-1], z2[:, :, :-1], atol=1e-6)
    assert not torch.allclose(z[:, :, -1], z2[:, :, -1], atol=1e-3)


# ----------------------------------------------------------------------------- the adapter


def test_adapter_streams_layouts_and_groups(model, io, io_fp32):
    layout = model.frame_layout
    assert (layout.temporal_factor, layout.clip_frames, layout.spatial_factor, layout.causal) == (
        8,
        8,
        16,
        False,
    )
    assert layout.input_size == (64, 64)
    specs = model.latent_specs
    assert list(specs) == ["structure", "dynamics_x", "dynamics_y"]
    assert all(s.time_axis is None and s.kind == "continuous" for s in specs.values())
    assert specs["structure"].fixed_shape == (16, 2, 2, 8) and specs["structure"].channels == 8
    assert specs["dynamics_x"].fixed_shape == (8, 8, 2) and specs["dynamics_y"].channels == 8
    assert model.stream_groups == {"structure": ("structure",), "dynamics": ("dynamics_x", "dynamics_y")}
    with torch.no_grad():
        enc = model.encode(io["x_a"])
        for name, spec in specs.items():
            assert tuple(enc.latents[name].shape[1:]) == spec.step_shape(64, 64)
            assert (enc.latents[name] - io_fp32[f"{name}_a"]).abs().max() <= 1e-4
        assert enc.moments is None
        lat = enc.latents
        full = model.decode(lat)
        only_s = model.decode({"structure": lat["structure"]}, only="structure")
        only_d = model.decode(
            {"dynamics_x": lat["dynamics_x"], "dynamics_y": lat["dynamics_y"]}, only="dynamics"
        )
        chunk, state = model.decode_chunk(lat)
    assert state is None and torch.equal(chunk, full)
    assert (full - io_fp32["dec_a"]).abs().max() <= 1e-4
    assert (only_s - io_fp32["dec_a_structure_only"]).abs().max() <= 1e-4
    assert (only_d - io_fp32["dec_a_dynamics_only"]).abs().max() <= 1e-4


def test_adapter_refuses_bad_input_with_usage_errors(model, io):
    lat = model.encode(io["x_a"]).latents
    with pytest.raises(UsageError, match="--only texture"):
        model.decode(lat, only="texture")
    with pytest.raises(UsageError, match="dynamics_y"):
        model.decode({"dynamics_x": lat["dynamics_x"]}, only="dynamics")
    with pytest.raises(UsageError, match="exactly 8 frames of 64x64"):
        model.encode(io["x_a"][:, :, :4])
    with pytest.raises(UsageError, match="tiling is not supported"):
        model.blend_encoded(torch.zeros(1))


def test_sampling_is_for_training_and_reproducible(model, io):
    x = io["x_a"]
    with torch.no_grad():
        mode = model.encode(x).latents["structure"]
        s1 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(1)).latents["structure"]
        s2 = model.encode(x, sample=True, generator=torch.Generator().manual_seed(1)).latents["structure"]
    assert torch.equal(s1, s2) and not torch.allclose(s1, mode)


def test_single_stream_families_have_no_stream_groups():
    assert vidtok_cli.load_model("trivial").stream_groups == {}


# ----------------------------------------------------------------------------- configs, card, convert


def _official_yaml() -> dict:
    if not (MIRROR / "HEAD").exists():
        pytest.skip("the official repository mirror is not on this machine")
    text = subprocess.run(
        ["git", "-C", str(MIRROR), "show", f"HEAD:{YAML_PATH}"], capture_output=True, text=True, check=True
    ).stdout
    return yaml.safe_load(text)


def test_official_yaml_gives_the_card_config(tmp_path: Path):
    data = _official_yaml()
    assert config_from_official(data) == zoo.get_card(CARD).config
    path = tmp_path / "vidtwin.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg, card = vidtok_cli.loading.resolve_config(path)
    assert cfg == zoo.get_card(CARD).config and card is None


# The official YAML's layout (model.target, model.params with the three sub-configs, loss, regularizer and
# training keys vidtok ignores), written here from the fixture's values; ``${...}`` references tie the decoder
# and the Q-Former's context width to the encoder, as OmegaConf would resolve them.
_FIXTURE_YAML = """\
model:
  base_learning_rate: 1.6e-4
  target: {engine_target}
  params:
    input_key: jpg
    monitor: val/rec_loss
    ckpt_path: PATH_TO_CHECKPOINT
    ignore_keys: []
    expect_ch: {expect_ch}
    cont_num_blocks: {cont_num_blocks}
    downsample_motion: True
    motion_num_blocks: {motion_num_blocks}
    d_dim: {d_dim}
    init_ch: {init_ch}
    temporal_qformer_config:
      target: vidtwin.modules.qformer.MyQformerInterface
      params:
        num_query_tokens: {q[num_query_tokens]}
        query_hidden_size: {q[query_hidden_size]}
        encoder_hidden_size: ${{model.params.encoder_config.params.hidden_size}}
        num_hidden_layers: {q[num_hidden_layers]}
        intermediate_size: {q[intermediate_size]}
        num_attention_heads: {q[num_attention_heads]}
    encoder_config:
      target: vidtwin.modules.st_transformer.STTEncoder
      params:
        in_channels: 3
        input_size: {e[input_size]}
        patch_size: {e[patch_size]}
        hidden_size: {e[hidden_size]}
        depth: {e[depth]}
        num_heads: {e[num_heads]}
        temporal_casual: true
    decoder_config:
      target: vidtwin.modules.st_transformer.STTDecoder
      params:
        in_channels: 3
        input_size: ${{model.params.encoder_config.params.input_size}}
        patch_size: ${{model.params.encoder_config.params.patch_size}}
        hidden_size: ${{model.params.encoder_config.params.hidden_size}}
        depth: ${{model.params.encoder_config.params.depth}}
        num_heads: ${{model.params.encoder_config.params.num_heads}}
        temporal_casual: true
    loss_config:
      target: vidtok.modules.losses.GeneralLPIPSWithDiscriminator
      params:
        perceptual_weight: 0.05
        disc_weight: 0.05
        regularization_weights:
          kl_loss: 0.001
    regularizer_config:
      target: vidtok.modules.regularizers.DiagonalGaussianRegularizer
      params:
        sample: True
data:
  params:
    batch_size: 2
lightning:
  trainer:
    devices: 4
"""


def test_official_yaml_with_interpolations_loads_the_fixture_to_parity(
    ref: Path, io, io_fp32, tmp_path: Path
):
    """No mirror needed: an official-layout YAML of the fixture gives the same model as its config.json."""
    facts = json.loads((ref / "config.json").read_text())
    params = facts["model_params_used"]
    text = _FIXTURE_YAML.format(
        engine_target=facts["engine_target"],
        q=params["temporal_qformer_config"]["params"],
        e=params["encoder_config"]["params"],
        **{k: params[k] for k in ("expect_ch", "cont_num_blocks", "motion_num_blocks", "d_dim", "init_ch")},
    )
    assert text.count("${") == 6
    path = tmp_path / "vidtwin_fixture.yaml"
    path.write_text(text)
    m = vidtok_cli.load_model(ref / "model.ckpt", config=path)
    assert m.family == "vidtwin" and m.module.cfg.input_size == (8, 64, 64)
    assert m.module.cfg == vidtok_cli.load_model(ref / "model.ckpt", config=ref / "config.json").module.cfg
    ours = _outputs(m.module, io)
    for name in sorted(set(io_fp32) - {"kl_loss_a"}):
        diff = (ours[name] - io_fp32[name]).abs().max().item()
        assert diff <= 1e-4, f"{name}: {diff}"
    broken = text.replace("${model.params.encoder_config.params.depth}", "${model.params.encoder.depth}")
    (tmp_path / "broken.yaml").write_text(broken)
    with pytest.raises(ConfigError, match="cannot resolve"):
        vidtok_cli.load_model(ref / "model.ckpt", config=tmp_path / "broken.yaml")


def test_official_structure_with_interpolations_is_vidtwin_not_vidtok(ref: Path):
    params = json.loads((ref / "config.json").read_text())["model_params_used"]
    params = {**params, "decoder_config": "${model.params.encoder_config}"}
    data = {
        "model": {
            "target": "vidtwin.models.vidtwin_ae.VidAutoEncoderQformerCompactSymVidVAE",
            "params": params,
        }
    }
    fam, cfg = families.official_config(data, "cfg")
    assert fam.name == "vidtwin" and cfg.input_size == (8, 64, 64) and cfg.query_hidden_size == 32
    bad = {"model": {"target": "vidtwin.models.vidtwin_ae.VidAutoEncoderQformer", "params": params}}
    with pytest.raises(ConfigError, match="not supported"):
        families.get("vidtwin").config_from_official(bad, "cfg")


def test_card_shows_the_paper_numbers():
    card = zoo.get_card(CARD)
    assert card.family == "vidtwin" and card.hub_repo == "microsoft/vidtwin"
    assert card.metrics["psnr"] == 28.14 and card.metrics["fvd"] == 388.9
    assert card.metrics["compression_rate"] == "0.20%"
    cfg = card.config
    assert cfg.structure_shape == (16, 7, 7, 8) and cfg.dynamics_shape == (8, 16, 7)
    assert "could not be checked offline" in Path(card.path).read_text()  # the unverified Hub file name


def test_config_round_trip_and_validation():
    cfg = tiny_vidtwin_config()
    assert VidTwinConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="square"):
        tiny_vidtwin_config(input_size=(4, 32, 48))
    with pytest.raises(ValueError, match="unknown architecture keys"):
        VidTwinConfig.from_dict({"hidden": 3})


def test_convert_to_self_describing_safetensors(ref: Path, tmp_path: Path, model, io):
    out = convert_checkpoint(ref / "model.ckpt", tmp_path / "twin.safetensors", config=ref / "config.json")
    assert read_safetensors_metadata(out)[META_FAMILY] == "vidtwin"
    again = vidtok_cli.load_model(out)
    assert again.family == "vidtwin" and again.module.decoder.pos_embed.dtype == torch.float64
    with torch.no_grad():
        a, b = model.encode(io["x_a"]).latents, again.encode(io["x_a"]).latents
    assert all(torch.equal(a[k], b[k]) for k in a)
    half = convert_checkpoint(
        ref / "model.ckpt", tmp_path / "half.safetensors", config=ref / "config.json", dtype="fp16"
    )
    tensors = load_file(half)
    assert tensors["conv_in.weight"].dtype == torch.float16
    assert tensors["encoder.pos_embed"].dtype == torch.float64  # the sin-cos tables stay exact


def test_tiny_vidtwin_helper_round_trips(tmp_path: Path):
    m = vidtok_cli.load_model(tiny_vidtwin(tmp_path / "tiny.safetensors"))
    x = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        y = m.decode(m.encode(x).latents)
    assert y.shape == x.shape and m.frame_layout.input_size == (32, 32)
    assert y.abs().max() > 0


@pytest.mark.slow
def test_clip_models_benchmark_small_mode(tmp_path: Path):
    """benchmarks/clip_models.py --small: one JSON line per model, each in its own process."""
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks/clip_models.py"), "--small", "--repeats", "1", "--json"],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["model"].split()[0] for r in rows] == [CARD, "lavit-motion"]
    assert all(
        r["encode_clips_per_s"] > 0 and r["decode_clips_per_s"] > 0 and r["peak_rss_mib"] > 0 for r in rows
    )
    assert rows[0]["clip"] == "4x32x32" and rows[1]["tokens_per_clip"] == 135
    assert rows[1]["encode_tokens_per_s"] == pytest.approx(135 * rows[1]["encode_clips_per_s"])
