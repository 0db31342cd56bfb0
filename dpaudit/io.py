"""Atomic file output: write to a temporary file in the target's folder, then rename.

A run interrupted mid-write leaves either the old file or none, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use for writers that want a file name (``torch.save``, ``matplotlib.savefig``).
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise FileNotFoundError(2, "output folder does not exist", str(parent))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _plain_mode(tmp_path)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def check_writable(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Refuse, before any long work, an output file that could not be written.

    The file's folder must exist and accept a new file (checked by creating and removing a
    temporary file there, which catches read-only mounts and pseudo file systems such as
    /proc), and ``path`` must not be a folder. Returns ``path`` as a :class:`Path`.
    Raises :class:`~dpaudit.errors.OutputError` with one readable line otherwise.
    """
    from dpaudit.errors import OutputError

    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} {target}: folder {parent} does not exist")
    _probe_folder(parent, f"{what} {target}")
    return target


def check_output_dir(path: str | os.PathLike[str], what: str = "report folder") -> Path:
    """Refuse, before any long work, a folder that files could not be written into.

    An existing folder must accept new files; a missing one must be creatable (its parent
    exists and accepts new entries). Nothing is created here. Returns ``path`` as a Path.
    """
    from dpaudit.errors import OutputError

    d = Path(path)
    if d.exists() and not d.is_dir():
        raise OutputError(f"{what} {d} exists and is not a folder")
    probe = d if d.is_dir() else (d.parent if str(d.parent) else Path("."))
    if not probe.is_dir():
        raise OutputError(f"cannot create {what} {d}: folder {probe} does not exist")
    _probe_folder(probe, f"{what} {d}")
    return d


def _probe_folder(folder: Path, label: str) -> None:
    from dpaudit.errors import OutputError

    try:
        fd, tmp = tempfile.mkstemp(prefix=".dpaudit-write-check.", dir=folder)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"cannot write {label}: folder {folder} does not accept new files ({reason})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """All-or-nothing output of several files.

    Yields one temporary path per target (beside it, same folder); when the block succeeds
    every temporary file is renamed onto its target, otherwise all of them are removed and no
    target is touched. Folders of the targets must exist (see :func:`check_writable`).
    A crash between two renames (power loss) can still leave a subset; within one process
    run, an error while *producing* any of the files leaves none of them.
    """
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for t in targets:
            parent = t.parent if str(t.parent) else Path(".")
            if not parent.exists():
                raise FileNotFoundError(2, "output folder does not exist", str(parent))
            fd, name = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp", dir=parent)
            os.close(fd)
            _plain_mode(Path(name))
            tmps.append(Path(name))
        yield list(tmps)
        for tmp_path, t in zip(tmps, targets):
            os.replace(tmp_path, t)
    finally:
        for tmp_path in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()


@contextlib.contextmanager
def atomic_folder(directory: str | os.PathLike[str], names: Sequence[str]) -> Iterator[list[Path]]:
    """All-or-nothing output of the files ``names`` into ``directory`` (a report folder).

    The folder is created if missing (its parent must exist: see :func:`check_output_dir`);
    yields one temporary path per name, as :func:`atomic_outputs`. If the block fails, no
    file is written and a folder created here is removed again.
    """
    d = Path(directory)
    created = not d.exists()
    d.mkdir(exist_ok=True)
    try:
        with atomic_outputs([d / n for n in names]) as tmps:
            yield tmps
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _plain_mode(path: Path) -> None:
    """mkstemp creates 0600; give the file the mode a plain open() would (0666 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` to plain JSON types.

    Non-finite floats become ``None`` (JSON has no inf/nan); numpy and torch scalars become
    Python numbers (via ``.item()``); tuples become lists; dict keys become strings; any other
    object becomes its ``str``.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    item = getattr(obj, "item", None)
    if callable(item):  # numpy / torch scalars
        try:
            return to_jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(obj)


def dumps_json(obj: Any) -> str:
    """``json.dumps`` of :func:`to_jsonable` (indented, keys in insertion order)."""
    return json.dumps(to_jsonable(obj), indent=2)
