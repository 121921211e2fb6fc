"""utils/files.py: atomic replacement, no temp file left behind, the target untouched on failure."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path
from typing import IO, Any

import pytest

from utils.files import write_atomic, write_atomic_with


def test_write_atomic_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600  # mkstemp's mode: never readable by others


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.parquet"
    target.write_bytes(b"old")

    def half_then_fail(handle: IO[Any]) -> None:
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomic_with(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_a_text_writer_gets_a_text_handle_with_the_given_newline(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    write_atomic_with(
        target, lambda handle: csv.writer(handle).writerow(["é", 1]), encoding="utf-8", newline=""
    )
    assert target.read_bytes() == "é,1\r\n".encode()
