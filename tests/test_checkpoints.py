"""Safe checkpoint reading (vidtok_cli.checkpoints) on the reference fixtures and on hostile files."""

from __future__ import annotations

import enum
import functools
import os
import pathlib
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from vidtok_cli import checkpoints as ck
from vidtok_cli.errors import CheckpointError, UnsafeCheckpointError

from .helpers import VIDTOK_REF, require_reference

REF = VIDTOK_REF
CONFIGS = [
    "vidtok_kl_causal_488_4chn",
    "vidtok_fsq_causal_488_262144",
    "vidtok_kl_noncausal_488_4chn",
    "vidtok_kl_causal_488_4chn_v1_1",
]
MALICIOUS = REF / "malicious.ckpt"
MARKER = Path("/tmp/VIDTOK_PWNED")


def _fixture(config: str) -> Path:
    return require_reference(REF / config / "model.ckpt")


def _single_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ------------------------------------------------------------------------------------------
# Reference fixtures
# ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("reference")
@pytest.mark.parametrize("config", CONFIGS)
def test_fixture_checkpoint_reads_only_encoder_decoder(config: str) -> None:
    path = _fixture(config)
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    expected = [k for k in raw if k.startswith(("encoder.", "decoder."))]
    assert any(k.startswith("loss.") for k in raw)  # the fixture does carry loss.* to drop

    state, meta = ck.read_state_dict(path)

    assert sorted(state) == sorted(expected)
    assert len(state) == len(expected)
    assert all(k.startswith(("encoder.", "decoder.")) for k in state)
    assert any(k.startswith("encoder.") for k in state) and any(k.startswith("decoder.") for k in state)
    assert meta["format"] == "lightning"
    assert meta["pytorch-lightning_version"] == raw_version(path)
    assert all(isinstance(v, str) for v in meta.values())
    for key, tensor in state.items():
        assert tensor.dtype == torch.float16 == raw[key].dtype
        assert tensor.is_contiguous()
        assert not tensor.requires_grad
        # owns exactly its own bytes: not a view of the mmap, a shared or a stride-0 storage
        assert tensor.storage_offset() == 0
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        assert torch.equal(tensor, raw[key])


def raw_version(path: Path) -> str:
    return str(torch.load(path, map_location="cpu", weights_only=True)["pytorch-lightning_version"])


@pytest.fixture
def torch_load_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Keyword arguments of every torch.load call made during the test."""
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.mark.usefixtures("reference")
def test_tried_weights_only_load_first(torch_load_calls: list[dict]) -> None:
    calls = torch_load_calls
    ck.read_state_dict(_fixture(CONFIGS[0]))
    assert calls, "torch.load was not used"
    assert calls[0]["weights_only"] is True
    assert str(calls[0]["map_location"]) == "cpu"
    assert all(c.get("weights_only") is True for c in calls)


# ------------------------------------------------------------------------------------------
# Malicious and unknown globals
# ------------------------------------------------------------------------------------------


def test_malicious_checkpoint_refused_without_running_code(torch_load_calls: list[dict]) -> None:
    require_reference(MALICIOUS)
    calls = torch_load_calls
    if MARKER.exists():
        MARKER.unlink()
    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_state_dict(MALICIOUS)
    msg = _single_line(info.value)
    assert "malicious.ckpt" in msg
    assert "builtins.exec" in msg
    assert not MARKER.exists()
    # exactly one attempt, weights-only; the placeholder retry never happens for a dangerous global
    assert len(calls) == 1 and calls[0]["weights_only"] is True
    assert isinstance(info.value, CheckpointError)


def _save_with_ghost_module(obj_factory, path: Path, module_name: str) -> None:
    """torch.save an object made of classes living in a module that exists only while saving."""
    ghost = types.ModuleType(module_name)
    sys.modules[module_name] = ghost
    try:
        torch.save(obj_factory(ghost), path)
    finally:
        del sys.modules[module_name]


SIDE_EFFECTS: list[str] = []


def _record_side_effect(*args):  # would run if a loader called a pickled reduce function
    SIDE_EFFECTS.append("called")
    return args


class _Reducing:
    def __reduce__(self):
        return (_record_side_effect, ("boom",))


def test_harmless_unknown_globals_load_through_placeholders(tmp_path: Path) -> None:
    module_name = "vidtok_ghost_module_for_tests"

    def build(ghost: types.ModuleType) -> dict:
        class Cfg:
            def __init__(self) -> None:
                self.lr = 1e-4
                self.nested = {"a": [1, 2, 3]}

            def __setstate__(self, state):  # would run if the real class were used
                SIDE_EFFECTS.append("setstate")
                self.__dict__.update(state)

        class Stage(enum.Enum):
            FIT = "fit"

        for cls in (Cfg, Stage):
            cls.__module__ = module_name
            cls.__qualname__ = cls.__name__
            setattr(ghost, cls.__name__, cls)
        state_dict = {
            "encoder.conv.weight": torch.randn(4, 3, dtype=torch.float16),
            "decoder.conv.weight": torch.randn(3, 4, dtype=torch.float16),
            "loss.logvar": torch.zeros(()),
        }
        return {
            "epoch": 1,
            "global_step": 10,
            "pytorch-lightning_version": "2.2.4",
            "state_dict": state_dict,
            "hyper_parameters": {
                "cfg": Cfg(),
                "stage": Stage.FIT,
                "path": pathlib.PosixPath("/data/videos"),
                "reducing": _Reducing(),
            },
        }

    path = tmp_path / "harmless.ckpt"
    _save_with_ghost_module(build, path, module_name)
    assert module_name not in sys.modules
    unknown = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert f"{module_name}.Cfg" in unknown and "pathlib.PosixPath" in unknown
    assert f"{__name__}._record_side_effect" in unknown
    with pytest.raises(Exception):  # noqa: B017 - plain weights-only load refuses it
        torch.load(path, map_location="cpu", weights_only=True)

    SIDE_EFFECTS.clear()
    state, meta = ck.read_state_dict(path)

    assert sorted(state) == ["decoder.conv.weight", "encoder.conv.weight"]
    assert state["encoder.conv.weight"].dtype == torch.float16
    assert SIDE_EFFECTS == []  # neither the reduce function nor __setstate__ ran
    assert module_name not in sys.modules  # nothing was imported
    assert f"{module_name}.Cfg" in meta["placeholders"]
    assert meta["format"] == "lightning"
    # torch 2.13 accepts (object, "module.Name") tuples in safe_globals; none of ours stays allowlisted
    for entry in torch.serialization.get_safe_globals():
        obj = entry[0] if isinstance(entry, tuple) else entry
        assert not (isinstance(obj, type) and issubclass(obj, ck.InertGlobal))


def test_placeholders_record_arguments_and_state(tmp_path: Path) -> None:
    path = tmp_path / "p.ckpt"
    torch.save(
        {
            "state_dict": {"encoder.w": torch.ones(1), "decoder.w": torch.ones(1)},
            "p": pathlib.PosixPath("/a/b"),
        },
        path,
    )
    obj, replaced = ck._load_pickled(path, "zip")
    assert replaced == ["pathlib.PosixPath"]
    placeholder = obj["p"]
    assert isinstance(placeholder, ck.InertGlobal)
    assert not isinstance(placeholder, pathlib.PurePath)
    assert placeholder.vidtok_global == "pathlib.PosixPath"
    assert placeholder.args == ("/", "a", "b")


@pytest.mark.parametrize(
    "payload, name",
    [
        (os.system, "system"),
        (functools.partial(print, "x"), "functools.partial"),
        (subprocess.Popen, "Popen"),  # pickled under its Python 2 name, commands.Popen
        (eval, "builtins.eval"),
    ],
)
def test_dangerous_globals_refused(tmp_path: Path, payload, name: str) -> None:
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.ones(1), "decoder.w": torch.ones(1)}, "x": payload}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_state_dict(path)
    msg = _single_line(info.value)
    assert "bad.ckpt" in msg and name in msg


@pytest.mark.parametrize(
    "name, dangerous",
    [
        ("builtins.exec", True),
        ("builtins.eval", True),
        ("builtins.getattr", True),
        ("__builtin__.exec", True),
        ("os.system", True),
        ("posix.system", True),
        ("nt.system", True),
        ("subprocess.Popen", True),
        ("functools.partial", True),
        ("importlib.import_module", True),
        ("runpy.run_path", True),
        ("pickle.loads", True),
        ("socket.socket", True),
        ("commands.getoutput", True),
        ("cPickle.loads", True),
        ("copy_reg._reconstructor", True),
        ("ctypes.CDLL", True),
        ("torch.storage._load_from_bytes", True),
        ("torch.jit.load", True),
        ("somepkg.utils.load", True),
        ("somepkg.__builtins__.x", True),
        ("builtins.dict", False),
        ("builtins.object", False),
        ("pathlib.PosixPath", False),
        ("omegaconf.dictconfig.DictConfig", False),
        ("omegaconf.base.ContainerMetadata", False),
        ("typing.Any", False),
        ("lightning.fabric.utilities.enums.LightningEnum", False),
        ("numpy.dtype", False),
        ("__main__.MyConfig", False),
        ("not a name", True),
    ],
)
def test_is_dangerous_global(name: str, dangerous: bool) -> None:
    assert ck.is_dangerous_global(name) is dangerous


# ------------------------------------------------------------------------------------------
# Broken and unsuitable files
# ------------------------------------------------------------------------------------------


def _expect_checkpoint_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        ck.read_state_dict(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    msg = _single_line(info.value)
    assert path.name in msg
    return msg


@pytest.mark.usefixtures("reference")
def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = _fixture(CONFIGS[0]).read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    _expect_checkpoint_error(path)


def test_text_file_renamed_ckpt(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("this is not a checkpoint\n")
    assert "not a PyTorch checkpoint" in _expect_checkpoint_error(path)


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = tmp_path / "nodata.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\0" * 16)
    assert "data.pkl" in _expect_checkpoint_error(path)


def test_empty_missing_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert "empty" in _expect_checkpoint_error(empty)
    assert "no such file" in _expect_checkpoint_error(tmp_path / "missing.ckpt")
    folder = tmp_path / "folder.ckpt"
    folder.mkdir()
    assert "directory" in _expect_checkpoint_error(folder)


def test_training_checkpoint_without_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "nostate.ckpt"
    torch.save(
        {"epoch": 1, "global_step": 2, "pytorch-lightning_version": "2.2.4", "optimizer_states": []}, path
    )
    assert "state_dict" in _expect_checkpoint_error(path)


def test_non_tensor_in_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "nontensor.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.ones(1), "decoder.w": [1.0, 2.0]}}, path)
    assert "decoder.w" in _expect_checkpoint_error(path)


def test_missing_encoder_or_decoder(tmp_path: Path) -> None:
    path = tmp_path / "noenc.ckpt"
    torch.save({"state_dict": {"decoder.w": torch.ones(1), "loss.w": torch.ones(1)}}, path)
    assert "encoder." in _expect_checkpoint_error(path)


def test_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    assert "list" in _expect_checkpoint_error(path)


def test_bare_state_dict_with_views_and_other_prefixes(tmp_path: Path) -> None:
    base = torch.arange(12, dtype=torch.float32)
    state = {
        "encoder.a": base[:6].view(2, 3),
        "encoder.b": base[6:].view(3, 2).t(),  # non-contiguous view of the same storage
        "decoder.c": torch.ones(2, dtype=torch.bfloat16),
        "model_ema.decay": torch.tensor(0.99),
        "loss.d": torch.zeros(3).expand(4, 3),
        "regularizer.x": torch.ones(1),
    }
    path = tmp_path / "bare.pth"
    torch.save(state, path)
    out, meta = ck.read_state_dict(path)
    assert meta == {"format": "state_dict"}
    assert sorted(out) == ["decoder.c", "encoder.a", "encoder.b"]
    assert out["decoder.c"].dtype == torch.bfloat16
    assert torch.equal(out["encoder.b"], base[6:].view(3, 2).t())
    assert out["encoder.b"].is_contiguous()
    assert out["encoder.a"].untyped_storage().data_ptr() != out["encoder.b"].untyped_storage().data_ptr()

    everything, _ = ck.read_state_dict(path, prefixes=None)
    assert sorted(everything) == ["decoder.c", "encoder.a", "encoder.b", "regularizer.x"]


# ------------------------------------------------------------------------------------------
# safetensors
# ------------------------------------------------------------------------------------------


def _small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "encoder.conv.weight": torch.randn(4, 3, 3, generator=g).half(),
        "encoder.conv.bias": torch.randn(4, generator=g),
        "decoder.conv.weight": torch.randn(3, 4, generator=g).t(),  # non-contiguous
        "decoder.idx": torch.arange(5),
    }


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = _small_state()
    state["loss.logvar"] = torch.zeros(())
    meta = {
        ck.META_FORMAT_VERSION: ck.FORMAT_VERSION,
        ck.META_CONFIG: '{"z_channels": 4}',
        ck.META_SOURCE_SHA256: "0" * 64,
        ck.META_SOURCE_FILE: "model.ckpt",
    }
    path = tmp_path / "sub" / "model.safetensors"
    ck.save_safetensors(state, path, meta)
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]  # no temp file left

    out, out_meta = ck.read_state_dict(path)
    assert out_meta == meta
    assert ck.read_safetensors_metadata(path) == meta
    assert sorted(out) == sorted(k for k in state if not k.startswith("loss."))
    for key, tensor in out.items():
        assert tensor.dtype == state[key].dtype
        assert torch.equal(tensor, state[key])


def test_safetensors_with_shared_storage(tmp_path: Path) -> None:
    base = torch.arange(8, dtype=torch.float32)
    state = {"encoder.a": base[:4], "decoder.b": base[4:], "decoder.c": base[:4]}
    path = tmp_path / "shared.safetensors"
    ck.save_safetensors(state, path, {})
    out, _ = ck.read_state_dict(path)
    assert all(torch.equal(out[k], state[k]) for k in state)


def test_save_safetensors_non_tensor_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError) as info:
        ck.save_safetensors({"encoder.a": torch.ones(1), "decoder.b": [1, 2]}, path, {})
    assert "decoder.b" in _single_line(info.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError):
        ck.save_safetensors({"encoder.a": torch.ones(1)}, path, {"n": 1})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_save_safetensors_is_atomic_when_the_writer_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    path = tmp_path / "out.safetensors"
    ck.save_safetensors({"encoder.a": torch.ones(2)}, path, {"v": "old"})
    before = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    with pytest.raises(CheckpointError) as info:
        ck.save_safetensors({"encoder.a": torch.zeros(2)}, path, {"v": "new"})
    assert "No space left" in _single_line(info.value)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]  # temp file removed


def test_read_safetensors_metadata_reads_header_only(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    ck.save_safetensors({"encoder.a": torch.ones(64, 64)}, path, {"vidtok.format_version": "1"})
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('vidtok_cli')\n"  # skip vidtok_cli/__init__.py and its imports
        f"pkg.__path__ = [{str(root / 'vidtok_cli')!r}]\n"
        "sys.modules['vidtok_cli'] = pkg\n"
        "from vidtok_cli.checkpoints import read_safetensors_metadata\n"
        f"meta = read_safetensors_metadata({str(path)!r})\n"
        "assert meta == {'vidtok.format_version': '1'}, meta\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'safetensors.torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_read_safetensors_metadata_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"garbage that is not safetensors")
    with pytest.raises(CheckpointError) as info:
        ck.read_safetensors_metadata(path)
    assert "bad.safetensors" in _single_line(info.value)
    assert "bad.safetensors" in _expect_checkpoint_error(path)


def test_sha256_file(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert ck.sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointError):
        ck.sha256_file(tmp_path / "missing")


def test_metadata_key_constants() -> None:
    assert ck.META_FORMAT_VERSION == "vidtok.format_version"
    assert ck.META_CONFIG == "vidtok.config"
    assert ck.META_CARD == "vidtok.card"
    assert ck.META_SOURCE_SHA256 == "vidtok.source_sha256"
    assert ck.META_SOURCE_FILE == "vidtok.source_file"
    assert ck.FORMAT_VERSION == "1"
