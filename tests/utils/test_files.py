"""utils/files.py: atomic replacement, no temp file left behind, the target untouched on failure."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path
from typing import IO, Any

import pytest

from utils.files import sweep_temp_files, write_atomic, write_atomic_with


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


def test_sweep_removes_only_temp_files_of_dead_writers(tmp_path: Path) -> None:
    live_pid, dead_pid = os.getpid(), 4_194_999  # above Linux's largest pid
    (tmp_path / "BTCUSDT").mkdir()
    dead = tmp_path / "BTCUSDT" / f".1h.parquet.{dead_pid}~x1y2.tmp"
    dead_export = tmp_path / f".trades.csv.{dead_pid}~a1.partial"
    live = tmp_path / "BTCUSDT" / f".1h.parquet.{live_pid}~x1y2.tmp"
    unrelated = [tmp_path / ".env", tmp_path / "BTCUSDT" / "1h.parquet", tmp_path / f".notes.{dead_pid}.txt"]
    for path in (dead, dead_export, live, *unrelated):
        path.write_text("x")
    assert sorted(sweep_temp_files(tmp_path)) == sorted([dead, dead_export])
    assert live.exists() and all(path.exists() for path in unrelated)


def test_the_temp_files_write_atomic_makes_are_the_ones_the_sweep_knows(tmp_path: Path) -> None:
    names: list[str] = []

    def die(handle: IO[Any]) -> None:
        names.extend(p.name for p in tmp_path.iterdir())
        raise KeyboardInterrupt  # as if the process died here (a real kill also skips the clean-up)

    with pytest.raises(KeyboardInterrupt):
        write_atomic_with(tmp_path / "file.bin", die)
    (name,) = names
    assert name.startswith(f".file.bin.{os.getpid()}~") and name.endswith(".tmp")
    left = tmp_path / name.replace(f".{os.getpid()}~", ".4194999~")  # the same file of a dead writer
    left.write_text("x")
    (tmp_path / name).write_text("x")  # and of this, running, process
    assert sweep_temp_files(tmp_path) == [left]
    assert (tmp_path / name).exists()
