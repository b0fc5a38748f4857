"""Format-1.0 golden files (tests/data/golden_v1_0, written by the release before 1.1) still decode to the
same frames: frame count, audio packet count and the frames themselves (make_golden.py made them).

``expected.json`` holds the sha256 of every frame the release decoded; ``frames.npz`` holds those frames
(checked against the hashes), so a decode may differ from them by float rounding in the model (a pixel
value off by one, on a tiny fraction of pixels) but not by anything the file format decides."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest

from vidtok_cli import codec
from vidtok_cli.vtok import VtokReader

from .helpers import VIDTOK_REF, fixture_config

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_v1_0"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
FSQ_FIXTURE = "vidtok_fsq_causal_488_262144"


@pytest.fixture(scope="module")
def fsq_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official-format FSQ fixture converted to safetensors, as make_golden.py converted it."""
    from vidtok_cli.loading import convert_checkpoint

    ckpt = VIDTOK_REF / FSQ_FIXTURE / "model.ckpt"
    if not ckpt.is_file():
        pytest.fail(f"{ckpt} is missing: the golden FSQ file needs ../shared/reference")
    out = tmp_path_factory.mktemp("golden") / f"{FSQ_FIXTURE}.safetensors"
    convert_checkpoint(ckpt, out, config=fixture_config(FSQ_FIXTURE))
    return out


def _png_frames(folder: Path) -> list[np.ndarray]:
    frames = []
    for p in sorted(folder.glob("*.png")):
        with av.open(str(p)) as c:
            frames.append(next(c.decode(video=0)).to_ndarray(format="rgb24"))
    return frames


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_golden_file_decodes_to_the_same_frames(stem: str, tmp_path: Path, request: pytest.FixtureRequest):
    want = EXPECTED[stem]
    path = GOLDEN / f"{stem}.vtok"
    weights = request.getfixturevalue("fsq_weights") if want["mode"] == "tokens" else None
    out = tmp_path / f"{stem}_png"
    codec.decode_file(path, out, weights=weights, fmt="png", device="cpu")
    frames = _png_frames(out)
    assert len(frames) == want["frames"]
    assert frames[0].shape[:2] == (want["height"], want["width"])
    released = np.load(GOLDEN / "frames.npz")[stem]
    hashes = [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in released]
    assert hashes == want["frame_sha256"]  # frames.npz holds the release's frames
    diff = np.abs(np.stack(frames).astype(np.int16) - released.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    r = VtokReader(path)
    assert r.header["mode"] == want["mode"]
    assert len(list(r.audio_packets())) == want["audio_packets"]
