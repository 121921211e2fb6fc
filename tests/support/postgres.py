"""A throwaway PostgreSQL cluster for the suite: Debian's server binaries (installed by .ci/system-deps),
initdb into a temp folder, started on a free port of 127.0.0.1, one fresh database per test.

TEST_POSTGRES_URL, when set, names an existing server to use instead (a database per test is created on
it). Without either, the PostgreSQL tests skip with the reason, unless REQUIRE_SYSTEM_DEPS=1 (CI), which
makes that a failure."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

MISSING = "PostgreSQL's server is not installed (run .ci/system-deps, or set TEST_POSTGRES_URL)"


def skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(f"{reason}; REQUIRE_SYSTEM_DEPS=1 needs it")
    pytest.skip(reason)


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and the server refuse to run as root; Debian's package creates the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster in a new temp folder; yields the URL of its `postgres` database (trust auth,
    127.0.0.1); stops it and removes the folder after. Not under pytest's tmp folders: those are private
    to root, and the server runs as the postgres user."""
    given = os.environ.get("TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bin_dir = _binaries()
    if bin_dir is None:
        skip_or_fail(MISSING)
        raise AssertionError("unreachable")
    folder = Path(tempfile.mkdtemp(prefix="test-postgres-"))
    try:
        with _running(bin_dir, folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _running(bin_dir: Path, folder: Path) -> Iterator[str]:
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir(parents=True)
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = lambda *args: subprocess.run(  # noqa: E731
        _as_postgres([str(bin_dir / args[0]), *args[1:]]), check=True, capture_output=True, cwd=folder
    )
    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))  # a generated name, never user input
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
