"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The new content goes to a temp file in the target's folder (``.<name>.<pid>~<random><suffix>``, created
0600 by ``mkstemp``), is flushed and fsynced, then ``os.replace``s the target; the folder is fsynced
so the rename itself survives a crash. On any error the temp file is removed and the target is
untouched. A process killed mid-write leaves its temp file behind: ``sweep_temp_files`` removes those
whose writer (the pid in the name) is no longer running, so it never takes a live writer's file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TEMP_SUFFIXES", "sweep_temp_files", "write_atomic", "write_atomic_with"]

TEMP_SUFFIXES = (".tmp", ".partial")
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>[0-9]+)~[A-Za-z0-9_]+(?:\.tmp|\.partial)$")


def write_atomic(path: Path, data: bytes, *, suffix: str = ".tmp") -> None:
    """Replace `path` with `data` atomically (see the module docstring)."""
    write_atomic_with(path, lambda handle: handle.write(data), suffix=suffix)


def write_atomic_with(
    path: Path,
    write: Callable[[IO[Any]], object],
    *,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str = ".tmp",
) -> None:
    """Replace `path` atomically with what `write` writes into the open temp file: a binary handle,
    or a text one when `encoding` is given (`newline` as for ``open``). For writers that stream
    (pyarrow's ``write_table``, ``csv.writer``) rather than hand over bytes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}~", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w" if encoding else "wb", encoding=encoding, newline=newline) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_folder(path.parent)


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive ``flock`` on `path` (created if missing) until the block ends: a critical section
    across the processes of this host. BlockingIOError at once when held elsewhere and not `wait`. The
    kernel drops it when its holder dies, so a killed process never leaves it held."""
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(descriptor)  # closing drops the flock


def _fsync_folder(folder: Path) -> None:
    # Makes the rename durable; some platforms and file systems cannot open or fsync a folder.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def sweep_temp_files(root: Path) -> list[Path]:
    """Remove the temp files under `root` that writers killed mid-write left behind; returns them.

    Only names ``write_atomic`` makes are touched, and only when the process in the name is gone (a
    temp file of a running writer, in this process or another, stays)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in root.rglob(".*"):
        match = _TEMP_NAME.match(path.name)
        if match is None or not path.is_file() or _running(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True
