"""Decoding finds the weights a .vtok file was made with, offline: --weights, the local weights index,
the path in the header, then the zoo (bug 4a)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from vidtok_cli import codec, hub
from vidtok_cli.errors import ModelNotFoundError, VidtokError
from vidtok_cli.loading import convert_checkpoint, load_for_file
from vidtok_cli.vtok import VtokReader

from .helpers import VIDTOK_REF, assert_one_line_error, fixture_config, make_video, run

KL_FIXTURE = "vidtok_kl_causal_488_4chn"


@pytest.fixture
def vidtok_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """vidtok's cache directory (and so the weights index) of the test's own."""
    d = tmp_path / "vidtok-cache"
    monkeypatch.setenv("VIDTOK_CACHE", str(d))
    return d


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- the index


def test_index_records_and_finds_a_file(vidtok_cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 100)
    assert hub.find_weights(_sha(f.read_bytes())) is None  # no index yet
    hub.record_weights(f)
    assert hub.index_path().parent == vidtok_cache
    assert hub.find_weights(_sha(f.read_bytes())).resolve() == f.resolve()
    assert not list(vidtok_cache.glob("*.tmp"))


def test_index_rehashes_a_touched_file_and_drops_a_changed_or_missing_one(
    vidtok_cache: Path, tmp_path: Path
) -> None:
    f = tmp_path / "w.bin"
    data = b"weights" * 100
    f.write_bytes(data)
    hub.record_weights(f, _sha(data))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same content, new mtime: re-hashed, kept
    assert hub.find_weights(_sha(data)).resolve() == f.resolve()
    f.write_bytes(b"W" + data[1:])  # same size, other content
    assert hub.find_weights(_sha(data)) is None
    assert _sha(data) not in json.loads(hub.index_path().read_text())
    hub.record_weights(f)
    f.unlink()
    assert hub.find_weights(_sha(b"W" + data[1:])) is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_corrupt_index_is_empty_and_gets_replaced(vidtok_cache: Path, tmp_path: Path, content: str) -> None:
    vidtok_cache.mkdir()
    hub.index_path().write_text(content)
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 10)
    assert hub.find_weights(_sha(b"x" * 10)) is None
    hub.record_weights(f)
    assert hub.find_weights(_sha(b"x" * 10)).resolve() == f.resolve()


def test_unwritable_cache_does_not_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VIDTOK_CACHE", str(blocker / "cache"))  # a directory under a file
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    hub.record_weights(f)
    assert hub.find_weights(_sha(b"x")) is None


# ----------------------------------------------------------------------------- decode, offline


@pytest.fixture
def encoded(hf_offline: Path, vidtok_cache: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(kl.safetensors, v.vtok): the KL fixture converted to ./kl.safetensors, a clip encoded with it
    by the command line, given the weights as a relative path."""
    ckpt = VIDTOK_REF / KL_FIXTURE / "model.ckpt"
    if not ckpt.is_file():
        pytest.fail(f"{ckpt} is missing: this test needs ../shared/reference")
    work = tmp_path / "work"
    work.mkdir()
    weights = convert_checkpoint(ckpt, work / "kl.safetensors", config=fixture_config(KL_FIXTURE))
    assert hub.find_weights(hub.file_sha256(weights)) is None  # the Python API records nothing: encode does
    make_video(work / "v.mp4", n=9, w=32, h=24, fps=25)
    proc = run("encode", "v.mp4", "-o", "v.vtok", "--model", "./kl.safetensors", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return weights, work / "v.vtok"


def test_decode_offline_finds_the_local_weights(encoded: tuple[Path, Path], tmp_path: Path) -> None:
    weights, vt = encoded
    header = VtokReader(vt).header
    assert Path(header["weights_file"]).resolve() == weights.resolve()
    assert hub.find_weights(header["model"]["sha256"]).resolve() == weights.resolve()
    out = tmp_path / "out.mp4"
    proc = run("decode", str(vt), "-o", str(out), "-q", cwd=tmp_path)  # another directory, no --weights
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_decode_without_the_weights_names_the_option(encoded: tuple[Path, Path], tmp_path: Path) -> None:
    weights, vt = encoded
    weights.rename(weights.with_name("renamed.safetensors"))  # the index and the header point to nothing
    out = tmp_path / "out.mp4"
    err = assert_one_line_error(run("decode", str(vt), "-o", str(out), cwd=tmp_path))
    assert "--weights PATH" in err and "v.vtok" in err
    assert not out.exists()
    with pytest.raises(ModelNotFoundError, match="--weights PATH"):
        codec.decode_file(vt, out, device="cpu")
    summary = codec.decode_file(vt, out, weights=weights.with_name("renamed.safetensors"), device="cpu")
    assert summary["frames"] == 9


def test_the_index_wins_over_the_header_path(encoded: tuple[Path, Path], tmp_path: Path) -> None:
    weights, vt = encoded
    header = VtokReader(vt).header
    copy = tmp_path / "elsewhere" / "copy.safetensors"
    copy.parent.mkdir()
    shutil.copy(weights, copy)
    hub.record_weights(copy)
    m = load_for_file(
        header["model"]["card"],
        header["model"]["sha256"],
        header["weights_file"],
        header["weights_reference"],
    )
    assert m.weights_path.resolve() == copy.resolve()
    copy.unlink()  # a stale index entry: the header path is next
    m = load_for_file(
        header["model"]["card"],
        header["model"]["sha256"],
        header["weights_file"],
        header["weights_reference"],
    )
    assert m.weights_path.resolve() == weights.resolve()


def test_a_zoo_card_name_offline_is_found_through_the_index(encoded: tuple[Path, Path]) -> None:
    """The reported case: the header names a zoo card whose weights are on the Hub, and the Hub is out
    of reach; the index has the file."""
    weights, vt = encoded
    sha = VtokReader(vt).header["model"]["sha256"]
    card = "vidtok-kl-causal-488-4chn"
    m = load_for_file(card, sha, None, card)
    assert m.weights_path.resolve() == weights.resolve()
    weights.unlink()
    with pytest.raises(VidtokError, match="--weights PATH") as e:
        load_for_file(card, sha, str(weights), card, where="v.vtok")
    assert "\n" not in str(e.value) and card in str(e.value)


def test_convert_command_records_its_output(vidtok_cache: Path, tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from vidtok_cli.cli.app import load_commands

    ckpt = VIDTOK_REF / KL_FIXTURE / "model.ckpt"
    if not ckpt.is_file():
        pytest.fail(f"{ckpt} is missing: this test needs ../shared/reference")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(fixture_config(KL_FIXTURE)))
    out = tmp_path / "kl.safetensors"
    result = CliRunner().invoke(load_commands(), ["convert", str(ckpt), "-o", str(out), "-c", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    assert hub.find_weights(hub.file_sha256(out)).resolve() == out.resolve()
