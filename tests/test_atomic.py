"""Tests of vidtok_cli.atomic: outputs appear complete or not at all, and never clobber without force."""

from __future__ import annotations

import os

import pytest

from vidtok_cli import atomic
from vidtok_cli.errors import UsageError


def test_write_text_and_bytes(tmp_path):
    out = tmp_path / "a.json"
    assert atomic.write_text(out, "hello\n") == out
    assert out.read_text() == "hello\n"
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        atomic.write_text(out, "other")
    with pytest.raises(UsageError, match="exists"):
        atomic.write_bytes(out, b"other", error=UsageError)
    assert out.read_text() == "hello\n"
    atomic.write_bytes(out, b"new", force=True)
    assert out.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.json"]


def test_missing_parent(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        atomic.write_text(tmp_path / "no" / "x.txt", "x", error=UsageError)
    atomic.write_text(tmp_path / "no" / "x.txt", "x", make_parents=True)
    assert (tmp_path / "no" / "x.txt").read_text() == "x"


def test_atomic_path_keeps_the_extension_and_cleans_up(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(out) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".")
            assert not tmp.exists()  # not pre-created
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic.atomic_path(out) as tmp:
        tmp.write_bytes(b"whole")
        assert not out.exists()
    assert out.read_bytes() == b"whole"


def test_commit_does_not_clobber_a_file_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "x.bin"
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(out) as tmp:
            tmp.write_bytes(b"mine")
            out.write_bytes(b"theirs")
    assert out.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["x.bin"]


def test_directories_replace_an_older_one(tmp_path):
    final = tmp_path / "step_000001"
    with atomic.atomic_path(final, directory=True) as tmp:
        assert tmp.is_dir()
        (tmp / "a.txt").write_text("1")
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(final, directory=True) as tmp:
            pass
    with atomic.atomic_path(final, directory=True, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(final)) == ["b.txt"]
    assert os.listdir(tmp_path) == ["step_000001"]
