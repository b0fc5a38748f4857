"""Paths and helpers for the reference data in ../shared/reference (produced by the official code)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(os.environ.get("VIDTOK_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REFERENCE = SHARED / "reference"
VIDTOK_REF = REFERENCE / "vidtok"
MANIFESTS = REFERENCE / "manifests"

needs_reference = pytest.mark.skipif(not VIDTOK_REF.is_dir(), reason="../shared/reference is not present")


def fixture_names() -> list[str]:
    """Names of the official-format fixtures (one folder each with model.ckpt, config.json, io.*)."""
    if not VIDTOK_REF.is_dir():
        return []
    return sorted(p.name for p in VIDTOK_REF.iterdir() if (p / "model.ckpt").is_file())


def fixture_config(name: str) -> dict[str, Any]:
    """The fixture's architecture as the official YAML structure (model.params.*_config)."""
    c = json.loads((VIDTOK_REF / name / "config.json").read_text())
    reg = {"target": c["regularizer"]["target"], "params": c["regularizer"].get("params", {})}
    return {
        "model": {
            "target": c["engine_target"],
            "params": {
                "encoder_config": c["encoder"],
                "decoder_config": {
                    "target": c["decoder"]["target"],
                    "params": "${model.params.encoder_config.params}",
                },
                "regularizer_config": reg,
            },
        }
    }


def fixture_io(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, io.json) of a fixture."""
    from safetensors.torch import load_file

    return load_file(VIDTOK_REF / name / "io.safetensors"), json.loads(
        (VIDTOK_REF / name / "io.json").read_text()
    )
