"""The model zoo: the official cards in models/, name resolution, and card validation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from vidtok_cli import zoo
from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.errors import ConfigError, ModelNotFoundError

from .helpers import MANIFESTS, require_reference

REPO = Path(__file__).resolve().parents[1]


OFFICIAL_NAMES = {
    "vidtok_fsq_causal_41616_262144",
    "vidtok_fsq_causal_488_262144",
    "vidtok_fsq_causal_488_32768",
    "vidtok_fsq_causal_488_4096",
    "vidtok_fsq_noncausal_41616_262144",
    "vidtok_fsq_noncausal_488_262144",
    "vidtok_kl_causal_288_8chn",
    "vidtok_kl_causal_41616_4chn",
    "vidtok_kl_causal_444_4chn",
    "vidtok_kl_causal_488_16chn",
    "vidtok_kl_causal_488_4chn",
    "vidtok_kl_causal_488_8chn",
    "vidtok_kl_noncausal_41616_16chn",
    "vidtok_kl_noncausal_41616_4chn",
    "vidtok_kl_noncausal_488_16chn",
    "vidtok_kl_noncausal_488_4chn",
    "vidtok_fsq_causal_41616_262144_v1_1",
    "vidtok_fsq_causal_488_32768_v1_1",
    "vidtok_fsq_causal_888_32768_v1_1",
    "vidtok_kl_causal_288_8chn_v1_1",
    "vidtok_kl_causal_41616_16chn_v1_1",
    "vidtok_kl_causal_488_16chn_v1_1",
    "vidtok_kl_causal_488_4chn_v1_1",
}


@pytest.fixture(autouse=True)
def _source_tree_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test reads the cards of this checkout unless it sets its own directory."""
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(REPO / "models"))


def official_cards() -> list[zoo.ModelCard]:
    return [c for c in zoo.list_cards() if c.family == "vidtok" and not c.default]


def test_there_is_one_card_per_official_checkpoint() -> None:
    cards = official_cards()
    assert len(cards) == 23
    assert {c.official_name for c in cards} == OFFICIAL_NAMES
    assert sum(c.version == "v1.0" for c in cards) == 16
    assert sum(c.version == "v1.1" for c in cards) == 7


@pytest.mark.parametrize("official", sorted(OFFICIAL_NAMES))
def test_card_file_name_follows_the_official_name(official: str) -> None:
    card = zoo.get_card(official)
    expected = official.replace("_v1_1", "-v1.1").replace("_", "-")
    assert card.name == expected
    assert card.path.name == f"{expected}.toml"
    assert card.version == ("v1.1" if official.endswith("_v1_1") else "v1.0")


def test_every_card_builds_a_config_that_matches_its_summary() -> None:
    for card in official_cards():
        cfg = card.config
        assert isinstance(cfg, VidTokConfig)
        assert cfg.version == card.version
        assert cfg.causal == card.causal
        assert cfg.regularizer == card.regularizer
        assert cfg.temporal_factor == card.temporal_factor
        assert cfg.spatial_factor == card.spatial_factor
        assert cfg.latent_channels == card.latent_channels
        assert cfg.fsq_levels == card.fsq_levels
        assert cfg.codebook_size == card.codebook_size
        # the official family: ch 128, 2 res blocks, layernorm, RGB in and out
        assert (cfg.ch, cfg.num_res_blocks, cfg.norm_type, cfg.in_channels, cfg.out_ch) == (
            128,
            2,
            "layernorm",
            3,
            3,
        )
        assert cfg.interpolation_mode == ("trilinear" if card.version == "v1.1" else "nearest")
        # the name spells the compression: 488 = 4x8x8, 41616 = 4x16x16, 888 = 8x8x8 ...
        factors = f"{card.temporal_factor}{card.spatial_factor}{card.spatial_factor}"
        assert f"_{factors}_" in f"{card.official_name}_"
        if card.regularizer == "kl":
            assert f"_{card.latent_channels}chn" in card.official_name
            assert card.codebook_size is None and card.fsq_levels == ()
        else:
            assert f"_{card.codebook_size}" in card.official_name
            assert math.prod(card.fsq_levels) == card.codebook_size
            assert len(card.fsq_levels) == card.latent_channels


def test_hub_files_are_the_official_checkpoints() -> None:
    for card in official_cards():
        assert card.hub_repo == "microsoft/VidTok"
        assert card.hub_revision == "main"
        assert card.hub_file is not None
        hub_file = Path(card.hub_file)
        assert hub_file.stem == card.official_name
        assert hub_file.suffix == ".ckpt"
        folder = "checkpoints/vidtok_v1_1" if card.version == "v1.1" else "checkpoints"
        assert hub_file.parent.as_posix() == folder
        assert card.sha256 is None  # "" in the card: not verified yet
        assert card.official_config is not None
        assert Path(card.official_config).stem == card.official_name


def test_cards_match_the_reference_manifests() -> None:
    require_reference(MANIFESTS)
    for card in official_cards():
        manifest = json.loads((MANIFESTS / f"{card.official_name}.json").read_text())
        assert manifest["name"] == card.official_name
        assert manifest["version"] == card.version.replace(".", "_")
        assert manifest["causal"] == card.causal
        assert manifest["regularizer"] == card.regularizer
        assert manifest["source_config"] == card.official_config


def test_card_geometry_matches_the_manifest_shapes() -> None:
    """Latent width and the number of spatial/temporal down-samplers, read from the real key list."""
    require_reference(MANIFESTS)
    for card in official_cards():
        manifest = json.loads((MANIFESTS / f"{card.official_name}.json").read_text())
        shapes = {e["key"]: e["shape"] for e in manifest["state_dict"]}
        sep = ".conv" if card.causal else ""
        out_ch = shapes[f"encoder.conv_out{sep}.weight"][0]
        assert out_ch == card.latent_channels * (2 if card.regularizer == "kl" else 1), card.name
        assert shapes[f"decoder.conv_in{sep}.weight"][1] == card.latent_channels, card.name
        n_spatial = len(
            {
                k
                for k in shapes
                if k.startswith("encoder.down.") and ".downsample." in k and k.endswith("weight")
            }
        )
        assert 2**n_spatial == card.spatial_factor, card.name
        n_temporal = len(
            {k for k in shapes if k.startswith("encoder.down_temporal.") and k.endswith("mix_factor")}
        )
        assert 2**n_temporal == card.temporal_factor, card.name
        assert len({k.split(".")[2] for k in shapes if k.startswith("encoder.down.")}) == len(
            card.config.ch_mult
        )


def test_published_metrics_of_the_reference_model() -> None:
    card = zoo.get_card("vidtok-kl-causal-488-4chn")
    assert card.metrics["psnr"] == 29.64
    assert card.metrics["ssim"] == 0.852
    assert card.metrics["lpips"] == 0.114
    assert card.metrics["fvd"] == 194.2
    assert "MCL-JCV" in str(card.metrics["source"])


def test_metrics_are_published_or_marked_unpublished() -> None:
    unpublished = set()
    for card in official_cards():
        source = card.metrics["source"]
        assert isinstance(source, str) and source
        if source == "not published":
            assert set(card.metrics) == {"source"}
            unpublished.add(card.official_name)
        else:
            assert {"psnr", "ssim", "lpips", "fvd"} <= set(card.metrics)
            assert 20 < card.metrics["psnr"] < 40  # type: ignore[operator]
            assert 0 < card.metrics["ssim"] < 1  # type: ignore[operator]
            if card.version == "v1.1":
                assert "long-video" in source
    assert unpublished == {"vidtok_kl_causal_488_4chn_v1_1", "vidtok_fsq_causal_41616_262144_v1_1"}


@pytest.mark.parametrize(
    "query",
    [
        "vidtok-kl-causal-488-4chn-v1.1",
        "vidtok_kl_causal_488_4chn_v1_1",
        "VIDTOK_KL_CAUSAL_488_4CHN_V1_1",
        "VidTok-KL-Causal-488-4chn-v1_1",
        "vidtok.kl.causal.488.4chn.v1.1",
        "  vidtok-kl-causal-488-4chn-v1-1 ",
    ],
)
def test_name_normalization(query: str) -> None:
    assert zoo.get_card(query).name == "vidtok-kl-causal-488-4chn-v1.1"
    assert zoo.find_card(query) is zoo.get_card(query)


def test_v10_and_v11_are_distinct() -> None:
    assert zoo.get_card("vidtok_kl_causal_488_4chn").version == "v1.0"
    assert zoo.get_card("vidtok_kl_causal_488_4chn_v1_1").version == "v1.1"


def test_unknown_name_suggests_the_closest_cards() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        zoo.get_card("vidtok-kl-causal-488-4ch")
    message = str(info.value)
    assert "vidtok-kl-causal-488-4chn" in message
    assert "vidtok models" in message
    assert "\n" not in message
    assert zoo.find_card("vidtok-kl-causal-488-4ch") is None


def test_unknown_name_far_from_everything() -> None:
    with pytest.raises(ModelNotFoundError, match="vidtok models"):
        zoo.get_card("stable-diffusion")


def test_card_for_file() -> None:
    assert zoo.card_for_file("vidtok_kl_causal_488_4chn.ckpt").name == "vidtok-kl-causal-488-4chn"  # type: ignore[union-attr]
    found = zoo.card_for_file(Path("/cache/x/vidtok_fsq_causal_488_32768_v1_1.safetensors"))
    assert found is not None and found.name == "vidtok-fsq-causal-488-32768-v1.1"
    found = zoo.card_for_file("vidtok-kl-causal-288-8chn-v1.1.ckpt")
    assert found is not None and found.official_name == "vidtok_kl_causal_288_8chn_v1_1"
    assert zoo.card_for_file("my_finetune.ckpt") is None
    assert zoo.card_for_file("vidtok_kl_causal_488_4chn_step1000.ckpt") is None


def test_listing_order_is_deterministic() -> None:
    names = [c.name for c in official_cards()]
    assert names[0] == "vidtok-kl-causal-488-4chn"
    v10 = [c.version for c in official_cards()]
    assert v10 == sorted(v10)  # all v1.0 before all v1.1
    assert names == [c.name for c in zoo.list_cards() if c.family == "vidtok" and not c.default]


def test_to_dict_is_json_serialisable() -> None:
    card = zoo.get_card("vidtok-fsq-causal-888-32768-v1.1")
    data = json.loads(json.dumps(card.to_dict()))
    assert data["name"] == card.name
    assert data["fsq_levels"] == [8, 8, 8, 8, 8]
    assert data["codebook_size"] == 32768
    assert data["compression"] == "8x8x8"
    assert VidTokConfig.from_dict(data["config"]) == card.config
    assert data["hub"]["file"] == "checkpoints/vidtok_v1_1/vidtok_fsq_causal_888_32768_v1_1.ckpt"


def test_importing_the_zoo_does_not_import_torch() -> None:
    code = "import sys, vidtok_cli.zoo as z; z.list_cards(); assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------ user card files
TINY_CARD = """\
name = "tiny-test"
family = "vidtok"
version = "v1.0"
official_name = ""
description = "a tiny card written by the test"
default = true
weights = "tiny-test.safetensors"
causal = true
temporal_factor = 2
spatial_factor = 4
regularizer = "fsq"
latent_channels = 3
fsq_levels = [8, 5, 5]
codebook_size = 200

[architecture]
causal = true
version = "v1.0"
ch = 16
ch_mult = [1, 2, 2]
num_res_blocks = 1
z_channels = 3
time_downsample_factor = 2
tempo_ds = [1]
tempo_us = [1]
regularizer = "fsq"
fsq_levels = [8, 5, 5]

[metrics]
source = "made up for a test"
"""


def test_models_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny-test.toml").write_text(TINY_CARD)
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(tmp_path))
    assert zoo.cards_dir() == tmp_path.resolve()
    cards = zoo.list_cards()
    assert [c.name for c in cards] == ["tiny-test"]
    card = zoo.get_card("TINY_TEST")
    assert card.default is True
    assert card.official_name is None
    assert card.hub_repo is None and card.hub_file is None and card.sha256 is None
    assert card.weights_path == (tmp_path / "tiny-test.safetensors").resolve()
    assert card.config.ch == 16 and card.config.temporal_factor == 2 and card.config.spatial_factor == 4
    assert card.codebook_size == 200
    with pytest.raises(ModelNotFoundError):
        zoo.get_card("vidtok-kl-causal-488-4chn")


def test_default_card_is_listed_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in (REPO / "models").glob("*.toml"):
        if "vidtok-default" not in path.name:
            (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "tiny-test.toml").write_text(TINY_CARD)
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(tmp_path))
    names = [c.name for c in zoo.list_cards()]
    assert names[0] == "tiny-test"
    assert len(names) == len(list((REPO / "models").glob("*.toml")))  # the default replaced by tiny-test
    assert len(official_cards()) == 23


def test_card_from_toml_reads_a_card_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "whatever-name.toml"
    path.write_text(TINY_CARD)
    card = zoo.card_from_toml(path)
    assert card.name == "tiny-test" and card.path == path.resolve()


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("temporal_factor = 2", "temporal_factor = 4", "temporal_factor"),
        ("latent_channels = 3", "latent_channels = 4", "latent_channels"),
        ("codebook_size = 200", "codebook_size = 256", "codebook_size"),
        ("causal = true\ntemporal", 'causal = "yes"\ntemporal', "'causal' must be bool"),
        ('name = "tiny-test"\n', "", "missing key 'name'"),
        ("ch = 16\n", "ch = 16\nbogus = 1\n", "unknown architecture keys: bogus"),
        ("tempo_ds = [1]", "tempo_ds = [0, 1]", "time_downsample_factor"),
        ("default = true\n", 'default = true\nlicence = "mit"\n', "unknown key(s) licence"),
        ('weights = "tiny-test.safetensors"\n', "", "names no weights"),
        ("[metrics]\n", '[metrics]\npsnr = "high"\nssim = true\n', "'ssim' must be a number"),
        ("description = ", "description = = ", "not valid TOML"),
    ],
)
def test_malformed_cards_raise_config_error(tmp_path: Path, old: str, new: str, problem: str) -> None:
    assert old in TINY_CARD
    path = tmp_path / "tiny-test.toml"
    path.write_text(TINY_CARD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        zoo.card_from_toml(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_bad_hub_sha256_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny-test.toml"
    path.write_text(TINY_CARD + '\n[hub]\nrepo = "me/tiny"\nfile = "tiny.ckpt"\nsha256 = "abc"\n')
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        zoo.card_from_toml(path)
    good = "A" * 64
    path.write_text(TINY_CARD + f'\n[hub]\nrepo = "me/tiny"\nfile = "tiny.ckpt"\nsha256 = "{good}"\n')
    card = zoo.card_from_toml(path)
    assert card.sha256 == "a" * 64 and card.hub_revision == "main"


def test_card_name_must_match_its_file_in_the_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "other-name.toml").write_text(TINY_CARD)
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(tmp_path))
    with pytest.raises(ConfigError, match="differs from the file name"):
        zoo.list_cards()


def test_missing_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zoo.ENV_MODELS_DIR, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        zoo.list_cards()


def test_shipped_weights_card_takes_sha256_and_training(tmp_path: Path) -> None:
    sha = "ab" * 32
    extra = f'sha256 = "{sha}"\n[training]\ncommand = "vidtok train ..."\nsteps = 10\n'
    head, _, rest = TINY_CARD.partition("[architecture]")
    path = tmp_path / "tiny-test.toml"
    path.write_text(head + extra + "[architecture]" + rest)
    card = zoo.card_from_toml(path)
    assert card.sha256 == sha and card.training == {"command": "vidtok train ...", "steps": 10}
    assert card.to_dict()["training"]["steps"] == 10
    path.write_text(head + 'sha256 = "nothex"\n[architecture]' + rest)
    with pytest.raises(ConfigError, match="sha256"):
        zoo.card_from_toml(path)
    path.write_text(head + f'sha256 = "{sha}"\n[hub]\nrepo = "a/b"\nfile = "c.ckpt"\n[architecture]' + rest)
    with pytest.raises(ConfigError, match="not both"):
        zoo.card_from_toml(path)
