"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The new content goes to a temp file in the target's folder (``.<name>.<random><suffix>``, created
0600 by ``mkstemp``), is flushed and fsynced, then ``os.replace``s the target; the folder is fsynced
so the rename itself survives a crash. On any error the temp file is removed and the target is
untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_atomic", "write_atomic_with"]


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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


def _fsync_folder(folder: Path) -> None:
    # Makes the rename durable; some platforms and file systems cannot open or fsync a folder.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
