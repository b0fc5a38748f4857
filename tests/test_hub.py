"""Hub downloads through a local Hugging Face cache (no network), error mapping and vidtok's cache paths."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from vidtok_cli import hub
from vidtok_cli.errors import CheckpointError, WeightsUnavailableError

REPO = "owner/vidtok-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PAYLOAD = b"pretend checkpoint bytes\n" * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline, whatever the environment says."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def make_hf_cache(root: Path, filename: str = "vidtok_kl.ckpt", data: bytes = PAYLOAD) -> Path:
    """A Hugging Face hub cache laid out like the real one: blobs/<sha256>, snapshots/<commit>/<file> symlink."""
    repo_dir = root / ("models--" + REPO.replace("/", "--"))
    blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    pointer = repo_dir / "snapshots" / COMMIT / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (some Windows setups): the hub copies instead
        pointer.write_bytes(data)
    return pointer


def _single_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg
    assert "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------
# download() from the local cache
# ------------------------------------------------------------------------------------------


def test_download_finds_cached_file_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pointer = make_hf_cache(tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    path = hub.download(REPO, "vidtok_kl.ckpt")
    assert path.read_bytes() == PAYLOAD
    assert os.path.realpath(path) == os.path.realpath(pointer)
    assert hub.file_sha256(path) == PAYLOAD_SHA


def test_download_explicit_cache_dir_and_commit_revision(tmp_path: Path) -> None:
    make_hf_cache(tmp_path / "hf", filename="sub/dir/model.ckpt")
    path = hub.download(REPO, "sub/dir/model.ckpt", COMMIT, cache_dir=tmp_path / "hf")
    assert path.read_bytes() == PAYLOAD
    path = hub.download(REPO, "sub/dir/model.ckpt", None, cache_dir=tmp_path / "hf")  # None means main
    assert path.read_bytes() == PAYLOAD


def test_download_verifies_sha256(tmp_path: Path) -> None:
    make_hf_cache(tmp_path / "hf")
    path = hub.download(REPO, "vidtok_kl.ckpt", sha256=PAYLOAD_SHA.upper(), cache_dir=tmp_path / "hf")
    assert path.read_bytes() == PAYLOAD

    wrong = "f" * 64
    with pytest.raises(CheckpointError) as info:
        hub.download(REPO, "vidtok_kl.ckpt", sha256=wrong, cache_dir=tmp_path / "hf")
    msg = _single_line(info.value)
    assert wrong in msg and PAYLOAD_SHA in msg

    with pytest.raises(CheckpointError):
        hub.download(REPO, "vidtok_kl.ckpt", sha256="not-a-sha", cache_dir=tmp_path / "hf")


def test_sha256_is_streamed_from_content_not_blob_name(tmp_path: Path) -> None:
    """A corrupted blob keeps its name; verification must read the bytes."""
    pointer = make_hf_cache(tmp_path / "hf")
    Path(os.path.realpath(pointer)).write_bytes(b"corrupted")
    with pytest.raises(CheckpointError):
        hub.download(REPO, "vidtok_kl.ckpt", sha256=PAYLOAD_SHA, cache_dir=tmp_path / "hf")


@pytest.mark.parametrize(
    "repo, filename",
    [(REPO, "missing.ckpt"), ("owner/not-cached", "model.ckpt")],
)
def test_missing_file_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: str, filename: str
) -> None:
    make_hf_cache(tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError) as info:
        hub.download(repo, filename, what="weights for vidtok-test")
    msg = _single_line(info.value)
    assert "not in the local" in msg and "cannot be reached" in msg
    assert f"{repo}/{filename}" in msg
    assert msg.startswith("weights for vidtok-test ")


def test_offline_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set after huggingface_hub was imported still means: no network."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    seen: dict = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise hf_errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(WeightsUnavailableError):
        hub.download(REPO, "x.ckpt", cache_dir=tmp_path)
    assert seen["local_files_only"] is True

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "_hub_reachable", lambda: True)
    with pytest.raises(WeightsUnavailableError):
        hub.download(REPO, "x.ckpt", cache_dir=tmp_path)
    assert seen["local_files_only"] is False

    # an unreachable Hub falls back to the cache at once instead of retrying for half a minute
    monkeypatch.setattr(hub, "_hub_reachable", lambda: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        hub.download(REPO, "x.ckpt", cache_dir=tmp_path)
    assert seen["local_files_only"] is True


def test_download_in_subprocess_with_env_only(tmp_path: Path) -> None:
    """A fresh process where HF_HUB_OFFLINE / HF_HUB_CACHE are set before huggingface_hub is imported."""
    make_hf_cache(tmp_path / "hf")
    code = (
        "from vidtok_cli.hub import download\n"
        f"p = download({REPO!r}, 'vidtok_kl.ckpt', sha256={PAYLOAD_SHA!r})\n"
        "print(p.stat().st_size)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hf"))
    env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(PAYLOAD))


# ------------------------------------------------------------------------------------------
# Error mapping (hf_hub_download replaced: no network is touched)
# ------------------------------------------------------------------------------------------


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(
        status, request=httpx2.Request("GET", "https://huggingface.co/owner/repo/resolve/main/f")
    )


@pytest.mark.parametrize(
    "error, expected",
    [
        (lambda: hf_errors.LocalEntryNotFoundError("x"), "cannot be reached"),
        (lambda: hf_errors.OfflineModeIsEnabled("x"), "cannot be reached"),
        (lambda: httpx2.ConnectError("Name or service not known"), "cannot be reached"),
        (lambda: httpx2.ReadTimeout("timed out"), "cannot be reached"),
        (lambda: ConnectionResetError("reset"), "cannot be reached"),
        (lambda: hf_errors.RepositoryNotFoundError("404", response=_response(404)), "not found"),
        (lambda: hf_errors.GatedRepoError("403", response=_response(403)), "gated"),
        (lambda: hf_errors.RevisionNotFoundError("404", response=_response(404)), "revision"),
        (lambda: hf_errors.RemoteEntryNotFoundError("404", response=_response(404)), "not found"),
        (lambda: hf_errors.HfHubHTTPError("boom\nline two", response=_response(503)), "HTTP 503"),
        (lambda: hf_errors.HFValidationError("Repo id must be in the form"), "invalid Hub reference"),
        (lambda: OSError(28, "No space left on device"), "No space left"),
        (lambda: RuntimeError("weird\nmultiline"), "RuntimeError"),
    ],
)
def test_error_mapping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error, expected: str) -> None:
    def fake(**kwargs):
        raise error()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(WeightsUnavailableError) as info:
        hub.download(REPO, "f.ckpt", cache_dir=tmp_path)
    msg = _single_line(info.value)
    assert expected in msg
    assert f"{REPO}/f.ckpt" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_keyboard_interrupt_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fake(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(KeyboardInterrupt):
        hub.download(REPO, "f.ckpt", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# References, cache paths, hashes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("hf://owner/repo/model.ckpt", ("owner/repo", "model.ckpt", "main")),
        ("hf://owner/repo/path/to/file.ckpt", ("owner/repo", "path/to/file.ckpt", "main")),
        ("hf://owner/repo/path/file.ckpt@v1.1", ("owner/repo", "path/file.ckpt", "v1.1")),
        ("hf://owner/repo/file.ckpt@" + COMMIT, ("owner/repo", "file.ckpt", COMMIT)),
        (
            "hf://microsoft/VidTok/checkpoints/vidtok_kl_causal_488_4chn.ckpt",
            ("microsoft/VidTok", "checkpoints/vidtok_kl_causal_488_4chn.ckpt", "main"),
        ),
        ("hf://owner/repo", None),
        ("hf://owner/repo/", None),
        ("hf://owner/repo/file.ckpt@", None),
        ("hf://owner//file.ckpt", None),
        ("hf://owner/repo/../file.ckpt", None),
        ("owner/repo/file.ckpt", None),
        ("https://huggingface.co/owner/repo/file.ckpt", None),
        ("./model.ckpt", None),
        ("vidtok-kl-causal-488-4chn", None),
        ("", None),
    ],
)
def test_parse_hub_ref(ref: str, expected) -> None:
    assert hub.parse_hub_ref(ref) == expected


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDTOK_CACHE", str(tmp_path / "vc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "vc"
    monkeypatch.delenv("VIDTOK_CACHE")
    assert hub.cache_dir() == tmp_path / "xdg" / "vidtok"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "vidtok"


def test_converted_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDTOK_CACHE", str(tmp_path))
    p = hub.converted_path(PAYLOAD_SHA, "vidtok-kl-causal-488-4chn")
    assert p == tmp_path / "converted" / f"vidtok-kl-causal-488-4chn-{PAYLOAD_SHA[:16]}.safetensors"
    assert hub.converted_path(PAYLOAD_SHA, "../evil/name").parent == tmp_path / "converted"
    with pytest.raises(ValueError):
        hub.converted_path("xyz", "name")


def test_file_sha256(tmp_path: Path) -> None:
    pointer = make_hf_cache(tmp_path / "hf")
    assert hub.file_sha256(pointer) == PAYLOAD_SHA
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"abc")
    assert hub.file_sha256(plain) == hashlib.sha256(b"abc").hexdigest()


def test_no_heavy_imports() -> None:
    """hub.py alone (without whatever vidtok_cli/__init__.py may import) imports neither torch nor the hub."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('vidtok_cli')\n"
        f"pkg.__path__ = [{str(root / 'vidtok_cli')!r}]\n"
        "sys.modules['vidtok_cli'] = pkg\n"
        "import vidtok_cli.hub\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'huggingface_hub' not in sys.modules, 'huggingface_hub imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
