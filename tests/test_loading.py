"""load_model / convert_checkpoint: every kind of weights and config reference, offline Hub, failures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from vidtok_cli import convert_checkpoint, load_model, zoo
from vidtok_cli.arch import VidTokConfig
from vidtok_cli.checkpoints import read_safetensors_metadata, sha256_file
from vidtok_cli.errors import (
    CheckpointError,
    ConfigError,
    ModelNotFoundError,
    UnsafeCheckpointError,
    VidtokError,
    WeightsUnavailableError,
)
from vidtok_cli.loading import config_from_official

from .helpers import VIDTOK_REF, fixture_config, fixture_io

pytestmark = pytest.mark.usefixtures("reference")
NAME = "vidtok_fsq_causal_488_262144"
CKPT = VIDTOK_REF / NAME / "model.ckpt"


def _yaml_text(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg)


@pytest.fixture(scope="module")
def reference_output():
    tensors, _ = fixture_io(NAME)
    return tensors["x"][:, :, :5], tensors


def _check_model(model, tensors):
    with torch.no_grad():
        enc = model.encode(tensors["x"])
    assert torch.equal(enc.indices, tensors["indices"].long())


def test_official_yaml_with_interpolation(tmp_path, reference_output):
    cfg = fixture_config(NAME)
    assert cfg["model"]["params"]["decoder_config"]["params"] == "${model.params.encoder_config.params}"
    path = tmp_path / "vidtok_fsq.yaml"
    path.write_text(_yaml_text(cfg))
    model = load_model(CKPT, config=str(path))
    _check_model(model, reference_output[1])
    assert model.card["weights_file"] == str(CKPT)


def test_dict_and_dataclass_configs_agree():
    cfg = fixture_config(NAME)
    a = config_from_official(cfg)
    assert isinstance(a, VidTokConfig) and a.regularizer == "fsq" and a.fsq_levels == (8,) * 6 and a.ch == 16
    model = load_model(CKPT, config=a)
    assert model.cfg == a


def test_convert_then_load_without_config(tmp_path, reference_output):
    out = tmp_path / "tiny.safetensors"
    convert_checkpoint(CKPT, out, config=fixture_config(NAME))
    meta = read_safetensors_metadata(out)
    assert meta["vidtok.source_sha256"] == sha256_file(CKPT)
    assert json.loads(meta["vidtok.config"])["ch"] == 16
    model = load_model(out)
    _check_model(model, reference_output[1])
    with pytest.raises(VidtokError, match="exists"):
        convert_checkpoint(CKPT, out, config=fixture_config(NAME))
    convert_checkpoint(CKPT, out, config=fixture_config(NAME), dtype="bf16", force=True)
    assert load_model(out, dtype="bf16").module.encoder.conv_in.conv.weight.dtype == torch.bfloat16


def test_unknown_file_name_needs_a_config():
    with pytest.raises(ConfigError, match="cannot tell the architecture"):
        load_model(CKPT)


def test_wrong_architecture_is_a_one_line_error():
    with pytest.raises(CheckpointError, match="do not fit the architecture") as e:
        load_model(CKPT, config="vidtok-fsq-causal-488-262144")  # full-size card vs ch=16 weights
    assert "\n" not in str(e.value)


def test_malicious_checkpoint_is_harmless():
    marker = Path("/tmp/VIDTOK_PWNED")
    marker.unlink(missing_ok=True)
    with pytest.raises(UnsafeCheckpointError, match="builtins.exec"):
        load_model(VIDTOK_REF / "malicious.ckpt", config=fixture_config(NAME))
    assert not marker.exists()


def test_unknown_model_name_suggests():
    with pytest.raises(ModelNotFoundError, match="vidtok-kl-causal-488-4chn"):
        load_model("vidtok-kl-causal-488-4ch")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model("no/such/file.ckpt")


def _card_dir(tmp_path: Path, hub: bool) -> Path:
    """A model directory with one card describing the tiny fixture architecture."""
    cfg = config_from_official(fixture_config(NAME))
    arch = "\n".join(f"{k} = {json.dumps(v)}" for k, v in cfg.to_dict().items())
    where = (
        '[hub]\nrepo = "tester/tiny-vidtok"\nfile = "checkpoints/tiny_fsq.ckpt"\nrevision = "main"\nsha256 = ""\n'
        if hub
        else ""
    )
    text = f"""name = "tiny-fsq"
family = "vidtok"
version = "v1.0"
official_name = "tiny_fsq"
description = "tiny test model"
causal = true
temporal_factor = 4
spatial_factor = 8
regularizer = "fsq"
latent_channels = 6
fsq_levels = [8, 8, 8, 8, 8, 8]
codebook_size = 262144
{"" if hub else 'weights = "tiny_fsq.ckpt"'}

{where}
[architecture]
{arch}

[metrics]
source = "test"
"""
    d = tmp_path / "models"
    d.mkdir()
    (d / "tiny-fsq.toml").write_text(text)
    if not hub:
        shutil.copy(CKPT, d / "tiny_fsq.ckpt")
    return d


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDTOK_CACHE", str(tmp_path / "vidtok-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield tmp_path
    zoo.clear_cache()


def test_card_with_shipped_weights_and_file_name_match(isolated, monkeypatch, reference_output):
    d = _card_dir(isolated, hub=False)
    monkeypatch.setenv("VIDTOK_MODELS_DIR", str(d))
    zoo.clear_cache()
    _check_model(load_model("tiny-fsq"), reference_output[1])
    # a local file whose name matches a card needs no config
    _check_model(load_model(d / "tiny_fsq.ckpt"), reference_output[1])


def _fake_hub_cache(root: Path, repo: str, filename: str, src: Path) -> Path:
    """The Hugging Face cache layout: blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = root / ("models--" + repo.replace("/", "--"))
    digest = sha256_file(src)
    (base / "blobs").mkdir(parents=True)
    shutil.copy(src, base / "blobs" / digest)
    target = base / "snapshots" / commit / filename
    target.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(base / "blobs" / digest, target.parent), target)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return target


def test_zoo_name_from_offline_hub_cache_is_converted_once(isolated, monkeypatch, reference_output):
    d = _card_dir(isolated, hub=True)
    monkeypatch.setenv("VIDTOK_MODELS_DIR", str(d))
    zoo.clear_cache()
    _fake_hub_cache(isolated / "hf", "tester/tiny-vidtok", "checkpoints/tiny_fsq.ckpt", CKPT)
    model = load_model("tiny-fsq")
    _check_model(model, reference_output[1])
    converted = list((isolated / "vidtok-cache" / "converted").glob("tiny-fsq-*.safetensors"))
    assert len(converted) == 1
    assert read_safetensors_metadata(converted[0])["vidtok.source_sha256"] == sha256_file(CKPT)
    mtime = converted[0].stat().st_mtime_ns
    load_model("tiny-fsq")
    assert converted[0].stat().st_mtime_ns == mtime  # reused, not converted again
    # hf:// references go through the same cache
    _check_model(load_model("hf://tester/tiny-vidtok/checkpoints/tiny_fsq.ckpt", config=fixture_config(NAME)),
                 reference_output[1])  # fmt: skip


def test_offline_without_cached_weights_is_one_clear_line(isolated):
    with pytest.raises(WeightsUnavailableError) as e:
        load_model("vidtok-kl-causal-488-4chn")
    msg = str(e.value)
    assert "\n" not in msg
    assert "vidtok-kl-causal-488-4chn" in msg and "checkpoints/vidtok_kl_causal_488_4chn.ckpt" in msg


def test_keys_outside_the_family_are_reported_not_dropped_silently(tmp_path):
    import warnings

    from safetensors.torch import load_file, save_file

    from vidtok_cli.loading import DroppedKeysWarning

    conv = convert_checkpoint(CKPT, tmp_path / "tiny.safetensors", config=fixture_config(NAME))
    state = load_file(conv)
    meta = read_safetensors_metadata(conv)
    # training-only keys of official checkpoints are dropped on purpose, without a warning
    save_file({**state, "loss.logvar": torch.zeros(1)}, tmp_path / "train.safetensors", metadata=meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(tmp_path / "train.safetensors")
    # anything else is reported, naming the modules that were not loaded
    extra = {**state, "extra_head.weight": torch.zeros(2), "extra_head.bias": torch.zeros(2)}
    save_file(extra, tmp_path / "extra.safetensors", metadata=meta)
    with pytest.warns(DroppedKeysWarning, match=r"2 tensors outside the vidtok model.*extra_head"):
        model = load_model(tmp_path / "extra.safetensors")
    assert model.family == "vidtok"
    # a file without any of the family's keys is an error naming what it holds
    save_file({"extra_head.weight": torch.zeros(2)}, tmp_path / "none.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="no vidtok weights.*extra_head"):
        load_model(tmp_path / "none.safetensors")
