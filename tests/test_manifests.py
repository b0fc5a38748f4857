"""Every official config, built at full size on the meta device, has the official keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from vidtok_cli.arch import VidTokModel
from vidtok_cli.zoo import list_cards

from .helpers import MANIFESTS, require_reference

CARDS = [c for c in list_cards() if c.family == "vidtok" and c.official_name]  # the official checkpoints


def test_23_official_cards():
    assert len(CARDS) == 23
    assert sum(c.version == "v1.1" for c in CARDS) == 7


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_state_dict_matches_manifest(card):
    manifest = json.loads((require_reference(MANIFESTS) / f"{card.official_name}.json").read_text())
    expected = [
        (e["key"], tuple(e["shape"])) for e in manifest["state_dict"] if not e["key"].startswith("loss.")
    ]
    with torch.device("meta"):
        model = VidTokModel(card.config)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == expected  # same keys, same shapes, same order
    counts = manifest["param_counts"]
    assert (
        sum(v.numel() for k, v in model.state_dict().items() if k.startswith("encoder.")) == counts["encoder"]
    )
    assert (
        sum(v.numel() for k, v in model.state_dict().items() if k.startswith("decoder.")) == counts["decoder"]
    )
