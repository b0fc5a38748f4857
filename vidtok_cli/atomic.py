"""Atomic output: a file (or folder) appears at its final path complete, or not at all (stdlib only).

Everything is written under a temporary name beside the target (same file system, so the rename is
atomic), synced to disk, then renamed into place. An existing target is never replaced unless
``force``; without ``force`` the final step cannot clobber a file that appeared meanwhile (a hard link,
which fails on an existing name, where the file system has them). On any error the temporary file or
folder is removed. ``error`` (every function takes it) makes the exception a caller reports, from a
one-line message; it defaults to ``FileExistsError``.

    with atomic_path(out, force=force) as tmp:   # a path to create; its extension is the target's
        render(tmp)
    write_text(out, text, force=force)
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "commit", "discard", "refuse_existing", "temp_path", "write_bytes", "write_text"]

ErrorFactory = Callable[[str], BaseException]


def temp_path(target: str | os.PathLike[str]) -> Path:
    """A fresh name beside ``target`` that keeps its extension (muxers and plotters choose the format by
    it): ``.{stem}.{random}.partial{suffix}``. Not created, so a file made there gets the usual umask
    permissions."""
    target = Path(target)
    while True:
        tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.partial{target.suffix}")
        if not os.path.lexists(tmp):
            return tmp


def refuse_existing(
    target: str | os.PathLike[str], force: bool = False, error: ErrorFactory = FileExistsError
) -> None:
    """Raise ``error`` when ``target`` exists and ``force`` is not set."""
    if not force and os.path.lexists(target):
        raise error(f"{target} exists; pass --force to overwrite it")


def discard(tmp: str | os.PathLike[str]) -> None:
    """Remove a temporary file or folder; nothing when it is already gone."""
    p = Path(tmp)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


def _sync(path: Path) -> None:
    files = [path] if not path.is_dir() else [f for f in sorted(path.rglob("*")) if f.is_file()]
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def commit(
    tmp: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    force: bool = False,
    error: ErrorFactory = FileExistsError,
) -> None:
    """Sync ``tmp`` (a file, or every file in a folder) and rename it to ``target``.

    Without ``force`` an existing ``target`` is left alone: ``tmp`` is removed and ``error`` raised.
    With ``force`` a file is replaced atomically; an old folder is moved aside, replaced, then deleted.
    ``tmp`` is removed when anything fails.
    """
    tmp, target = Path(tmp), Path(target)
    try:
        _sync(tmp)
        if tmp.is_dir():
            _commit_dir(tmp, target, force, error)
        elif force:
            os.replace(tmp, target)
        else:
            _commit_file(tmp, target, error)
    except BaseException:
        discard(tmp)
        raise


def _commit_file(tmp: Path, target: Path, error: ErrorFactory) -> None:
    try:
        os.link(tmp, target)  # fails if target exists: no race between the check and the rename
    except FileExistsError:
        refuse_existing(target, False, error)
        raise  # pragma: no cover - a dangling name that lexists() no longer sees
    except OSError:  # file systems without hard links
        refuse_existing(target, False, error)
        os.replace(tmp, target)
        return
    tmp.unlink()


def _commit_dir(tmp: Path, target: Path, force: bool, error: ErrorFactory) -> None:
    refuse_existing(target, force, error)
    old = None
    if os.path.lexists(target):
        old = temp_path(target.with_name(target.name + ".old"))
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        discard(old)


@contextmanager
def atomic_path(
    target: str | os.PathLike[str],
    *,
    force: bool = False,
    error: ErrorFactory = FileExistsError,
    directory: bool = False,
    make_parents: bool = False,
) -> Iterator[Path]:
    """A temporary path to write ``target`` under; committed (see ``commit``) when the block ends cleanly,
    removed when it raises.

    ``directory``: the temporary path is an (empty) folder to fill, instead of a name to create a file at.
    ``make_parents``: create missing parent folders, instead of raising ``error``.
    """
    target = Path(target)
    refuse_existing(target, force, error)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise error(f"{target}: directory {target.parent} does not exist")
    tmp = temp_path(target)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, target, force=force, error=error)


def write_bytes(
    target: str | os.PathLike[str],
    data: bytes,
    *,
    force: bool = False,
    error: ErrorFactory = FileExistsError,
    make_parents: bool = False,
) -> Path:
    """Write ``data`` to ``target`` atomically; returns ``target`` as a Path."""
    with atomic_path(target, force=force, error=error, make_parents=make_parents) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
    return Path(target)


def write_text(
    target: str | os.PathLike[str],
    text: str,
    *,
    force: bool = False,
    error: ErrorFactory = FileExistsError,
    make_parents: bool = False,
    encoding: str = "utf-8",
) -> Path:
    """Write ``text`` to ``target`` atomically; returns ``target`` as a Path."""
    return write_bytes(target, text.encode(encoding), force=force, error=error, make_parents=make_parents)
