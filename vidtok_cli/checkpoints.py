"""Safe reading of official VidTok checkpoints, and safetensors writing with vidtok metadata.

A Lightning ``.ckpt`` is a pickle.  It is never unpickled with full ``pickle``: the first attempt is
``torch.load(weights_only=True)``; a file that names other globals is refused when any of them could
run code, and otherwise read again with each such global replaced by an inert placeholder class
(so harmless objects in ``callbacks`` or ``hyper_parameters`` do not stop a genuine checkpoint).

torch and safetensors.torch are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_path
from .errors import CheckpointError, UnsafeCheckpointError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT_VERSION",
    "META_CARD",
    "META_CONFIG",
    "META_FORMAT_VERSION",
    "META_SOURCE_FILE",
    "META_SOURCE_SHA256",
    "MODEL_PREFIXES",
    "InertGlobal",
    "is_dangerous_global",
    "read_safetensors_metadata",
    "read_state_dict",
    "save_safetensors",
    "sha256_file",
]

# Metadata keys of a converted .safetensors file (all values are strings).
META_FORMAT_VERSION = "vidtok.format_version"
META_CONFIG = "vidtok.config"  # JSON of the architecture config dict
META_CARD = "vidtok.card"  # JSON of the model card (optional)
META_FAMILY = "vidtok.family"  # the model family (absent in files of 0.1: vidtok)
META_SOURCE_SHA256 = "vidtok.source_sha256"  # sha256 of the file it was converted from
META_SOURCE_FILE = "vidtok.source_file"  # name of the file it was converted from
FORMAT_VERSION = "1"

# State-dict prefixes that inference needs; everything else (loss.*, model_ema.*, ...) is dropped.
MODEL_PREFIXES: tuple[str, ...] = ("encoder.", "decoder.")

_BLOCK = 1 << 20

# --------------------------------------------------------------------------------------------
# Which pickle globals are refused outright.
# --------------------------------------------------------------------------------------------

# Top-level modules whose globals can run code, touch files, processes or the network, or build
# other callables.  A checkpoint that names any global from them is refused.
_DANGEROUS_MODULES = frozenset(
    """
    builtins __builtin__ os posix nt posixpath ntpath genericpath sys subprocess _posixsubprocess
    shutil importlib imp runpy pkgutil zipimport pickle _pickle cPickle pickletools copyreg copy_reg
    marshal shelve dbm socket ssl select selectors asyncio code codeop ctypes _ctypes cffi types functools
    operator io _io pty tty termios fcntl resource signal mmap multiprocessing concurrent threading _thread
    webbrowser tempfile glob fileinput linecache pdb bdb timeit trace tracemalloc cProfile profile inspect
    gc site sysconfig distutils setuptools pip ensurepip venv zipfile tarfile gzip bz2 lzma zlib urllib
    http ftplib smtplib telnetlib poplib imaplib xmlrpc email requests httpx httpx2 urllib3 aiohttp
    sqlite3 platform getpass dill cloudpickle joblib yaml ruamel jinja2 IPython numexpr
    """.split()
)

# torch sub-packages that load or compile code (torch.load, torch.jit.load, torch.hub.load, ...).
_DANGEROUS_TORCH_PREFIXES = (
    "torch.serialization",
    "torch.storage",
    "torch.hub",
    "torch.jit",
    "torch._C",
    "torch.ops",
    "torch._ops",
    "torch.utils.cpp_extension",
    "torch.package",
    "torch._dynamo",
    "torch._inductor",
    "torch.compiler",
    "torch.export",
    "torch.library",
    "torch.distributed",
    "torch.multiprocessing",
)

# Names that are code execution, I/O or attribute access in whatever module they appear.
_DANGEROUS_NAMES = frozenset(
    """
    exec eval compile execfile __import__ import_module reload load loads load_module _load_from_bytes
    getattr setattr delattr attrgetter methodcaller globals locals vars input breakpoint open system popen
    Popen run call check_call check_output getoutput getstatusoutput spawn fork kill remove unlink rmtree
    rmdir rename replace write write_text write_bytes urlopen urlretrieve request get post put apply
    partial partialmethod reduce __reduce__ __reduce_ex__ __setstate__ __getattribute__ __getattr__
    __call__ __new__ __init__ __class__ __subclasses__ __globals__ __builtins__ __code__
    """.split()
)

# Harmless builtin types (omegaconf pickles, for instance, name builtins.dict / builtins.object).
# They are still replaced by placeholders, never looked up.
_HARMLESS_BUILTINS = frozenset(
    "dict list tuple set frozenset int float complex str bytes bytearray bool object slice range NoneType".split()
)

_GLOBAL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def is_dangerous_global(full_name: str) -> bool:
    """True when a pickle global ("module.Name") could run code, do I/O or build other callables."""
    if not _GLOBAL_NAME.match(full_name):
        return True  # odd spellings are not worth the risk
    module, _, name = full_name.rpartition(".")
    # Python 2 spellings (commands.Popen, __builtin__.eval, cPickle.loads) are judged under both names.
    py3 = _compat_pickle.NAME_MAPPING.get((module, name))
    if py3 is None and module.split(".", 1)[0] in _compat_pickle.IMPORT_MAPPING:
        head, _, rest = module.partition(".")
        py3 = (_compat_pickle.IMPORT_MAPPING[head] + (f".{rest}" if rest else ""), name)
    if py3 is not None and py3 != (module, name) and _is_dangerous(*py3):
        return True
    return _is_dangerous(module, name)


def _is_dangerous(module: str, name: str) -> bool:
    top = module.split(".", 1)[0]
    if top in ("builtins", "__builtin__") and module == top and name in _HARMLESS_BUILTINS:
        return False
    if top in _DANGEROUS_MODULES:
        return True
    if top.startswith("_") and top != "__main__":
        return True  # private C modules (_io, _thread, _posixsubprocess, ...)
    if top == "torch" and any(module == p or module.startswith(p + ".") for p in _DANGEROUS_TORCH_PREFIXES):
        return True
    if name in _DANGEROUS_NAMES or name.startswith(("exec", "spawn", "popen", "system")):
        return True
    return any(
        part.startswith("__") and part.endswith("__") and part != "__main__" for part in module.split(".")
    )


class InertGlobal:
    """Stand-in for a pickle global that is not allowlisted: it records its arguments and state, nothing else.

    Subclasses are made per global name by :func:`_placeholder_for`; ``vidtok_global`` holds that name.
    """

    vidtok_global = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertGlobal:
        obj = object.__new__(cls)
        obj.__dict__["args"] = args
        obj.__dict__["kwargs"] = kwargs
        obj.__dict__["state"] = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<inert {self.vidtok_global} args={len(self.args)}>"


def _placeholder_for(full_name: str) -> type[InertGlobal]:
    short = full_name.rpartition(".")[2] or "Global"
    return type(short, (InertGlobal,), {"vidtok_global": full_name, "__module__": __name__})


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
    """A single-line, ANSI-free summary of an exception message."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = " ".join(line.strip() for line in text.strip().splitlines()[:1]) or type(exc).__name__
    cut = text.find(". This is an internal")  # torch's zip reader boilerplate
    if cut > 0:
        text = text[:cut]
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _unpickling_reason(exc: BaseException) -> str:
    """The useful part of torch's weights-only UnpicklingError (not its advice to load unsafely)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().splitlines()[0]
        return _one_line(reason.split(". Please use", 1)[0])
    return _one_line(text)


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot read checkpoint {path}: {problem}")


def _sniff(path: Path) -> str:
    """'zip', 'safetensors', 'pickle', 'empty' or 'other', from the first bytes of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except IsADirectoryError as e:
        raise _fail(path, "it is a directory") from e
    except FileNotFoundError as e:
        raise _fail(path, "no such file") from e
    except OSError as e:
        raise _fail(path, _one_line(e)) from e
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    if not head:
        return "empty"
    if head[:1] == b"\x80":
        return "pickle"  # legacy (pre-zip) torch.save format, or a bare pickle
    return "other"


def _torch_load(path: Path, mmap: bool) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _load_pickled(path: Path, kind: str) -> tuple[Any, list[str]]:
    """Unpickle a torch checkpoint without running code; returns (object, replaced globals)."""
    import pickle

    import torch

    mmap = kind == "zip"  # lazy: optimizer states of a big training checkpoint are never read
    try:
        return _torch_load(path, mmap), []
    except pickle.UnpicklingError as e:
        first_error: Exception = e
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, KeyError, EOFError, ValueError...
        if kind != "zip":
            raise _fail(path, f"not a readable PyTorch checkpoint ({_one_line(e)})") from e
        raise _fail(path, _one_line(e)) from e

    if kind != "zip":
        # Legacy (pre-zip) files cannot be scanned for globals without unpickling; refuse them.
        raise _fail(
            path, f"refused by the weights-only unpickler: {_unpickling_reason(first_error)}"
        ) from None
    try:
        unknown = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as e:  # noqa: BLE001
        raise _fail(path, _unpickling_reason(first_error)) from e
    if not unknown:
        raise _fail(path, _unpickling_reason(first_error)) from None

    dangerous = [g for g in unknown if is_dangerous_global(g)]
    if dangerous:
        raise UnsafeCheckpointError(
            f"refusing checkpoint {path}: its pickle references {', '.join(dangerous)}, which can run code; "
            "it was not unpickled (load checkpoints only from sources you trust)"
        )
    placeholders = [(_placeholder_for(name), name) for name in unknown]
    try:
        with torch.serialization.safe_globals(placeholders):
            obj = _torch_load(path, mmap)
    except Exception as e:  # noqa: BLE001
        raise _fail(
            path, f"{_one_line(e)} (after replacing {', '.join(unknown)} by inert placeholders)"
        ) from e
    return obj, unknown


def _own_copy(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor with storage of its own (not a view of an mmap, a shared or stride-0 storage)."""
    import torch

    out = torch.empty(tuple(t.shape), dtype=t.dtype, device="cpu")
    out.copy_(t.detach())
    return out


def _select(
    path: Path,
    state: Mapping[Any, Any],
    prefixes: tuple[str, ...] | None,
    *,
    copy: bool,
    all_keys: list[Any] | None = None,
) -> dict[str, torch.Tensor]:
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if prefixes is None:
            if key.startswith(("loss.", "model_ema.")):
                continue
        elif not key.startswith(prefixes):
            continue
        if not isinstance(value, torch.Tensor):
            raise _fail(path, f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
            raise _fail(
                path, f"state_dict entry {key!r} is not a dense tensor ({value.layout}, {value.device})"
            )
        out[key] = _own_copy(value) if copy else value.detach().contiguous()
    if prefixes is None:
        if not out:
            raise _fail(path, "no model weights in its state_dict")
    else:
        for p in prefixes:
            if not any(k.startswith(p) for k in out):
                names = state.keys() if all_keys is None else all_keys
                present = sorted({str(k).split(".", 1)[0] for k in names})[:8]
                raise _fail(
                    path,
                    f"no '{p}*' weights in its state_dict (top-level names: {', '.join(present) or 'none'})",
                )
    return out


def _read_torch(
    path: Path, kind: str, prefixes: tuple[str, ...] | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    obj, replaced = _load_pickled(path, kind)
    if not isinstance(obj, Mapping):
        raise _fail(path, f"it holds a {type(obj).__name__}, not a dict")
    meta: dict[str, str]
    if "state_dict" in obj:
        state = obj["state_dict"]
        if "pytorch-lightning_version" in obj:
            meta = {"format": "lightning", "pytorch-lightning_version": str(obj["pytorch-lightning_version"])}
            for k in ("epoch", "global_step"):
                if isinstance(obj.get(k), int):
                    meta[k] = str(obj[k])
        else:
            meta = {"format": "checkpoint"}
        if not isinstance(state, Mapping):
            raise _fail(path, f"its state_dict is a {type(state).__name__}, not a dict")
    elif any(k in obj for k in ("pytorch-lightning_version", "optimizer_states", "global_step", "epoch")):
        raise _fail(path, "it is a training checkpoint without a state_dict")
    else:
        state = obj
        meta = {"format": "state_dict"}
    if replaced:
        meta["placeholders"] = ",".join(replaced)
    return _select(path, state, prefixes, copy=True), meta


def _read_safetensors(
    path: Path, prefixes: tuple[str, ...] | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            if prefixes is None:
                wanted = [k for k in keys if not k.startswith(("loss.", "model_ema."))]
            else:
                wanted = [k for k in keys if k.startswith(prefixes)]
            state = {k: f.get_tensor(k) for k in wanted}
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise _fail(path, f"not a valid safetensors file ({_one_line(e)})") from e
    return _select(path, state, prefixes, copy=False, all_keys=keys), meta


def read_state_dict(
    path: str | os.PathLike[str], *, prefixes: tuple[str, ...] | None = MODEL_PREFIXES
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the model weights of a Lightning .ckpt, a bare state-dict file or a .safetensors file.

    Returns (tensors, metadata).  Only keys starting with one of ``prefixes`` are kept (default
    ``encoder.`` and ``decoder.``; ``None`` keeps everything except ``loss.*`` and ``model_ema.*``, as
    VidTwin needs its other top-level modules).  Tensors keep their stored dtype, are contiguous
    and own their storage.  Metadata is the safetensors header metadata, or a small description of
    a pickled checkpoint (``format``, ``pytorch-lightning_version``, ...).

    Raises UnsafeCheckpointError for a pickle that would run code, CheckpointError for any other
    unreadable or unsuitable file; messages are one line and name the file.
    """
    p = Path(path)
    kind = _sniff(p)
    if kind == "empty":
        raise _fail(p, "the file is empty")
    if kind == "safetensors" or (kind == "other" and p.suffix.lower() == ".safetensors"):
        return _read_safetensors(p, prefixes)
    if kind == "other":
        raise _fail(p, "not a PyTorch checkpoint or safetensors file (unrecognised content)")
    return _read_torch(p, kind, prefixes)


# --------------------------------------------------------------------------------------------
# Hashing and safetensors output
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
    except OSError as e:
        raise CheckpointError(f"cannot hash {path}: {_one_line(e)}") from e
    return h.hexdigest()


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str]
) -> None:
    """Write tensors and string metadata to a .safetensors file atomically (the file appears complete or not at all)."""
    import torch

    p = Path(path)
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise CheckpointError(f"cannot write {p}: key {k!r} is not a string")
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"cannot write {p}: {k!r} is a {type(v).__name__}, not a tensor")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise CheckpointError(f"cannot write {p}: metadata {k!r} must map a string to a string")

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        whole = t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if not whole or (t.numel() and storage.data_ptr() in seen):
            t = _own_copy(t)
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        tensors[k] = t

    from safetensors.torch import save_file

    try:
        with atomic_path(p, force=True, make_parents=True) as tmp:
            save_file(tensors, str(tmp), metadata=dict(metadata))
    except Exception as e:
        raise CheckpointError(f"cannot write {p}: {_one_line(e)}") from e


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a .safetensors file, read from its header only."""
    from safetensors import safe_open

    try:
        # framework="numpy": reading the header needs neither torch nor the tensor data.
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read safetensors header of {path}: {_one_line(e)}") from e
