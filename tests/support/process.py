"""The real server as its own process (`python -m uvicorn main:app`), for tests that kill it: a crash point
(utils/crash.py) ends it with os._exit mid-request, and the next start must repair what it left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from tests.support.server import wait_until
from tests.support.settings import API_KEY
from utils.crash import EXIT_CODE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENDED: tuple[str, ...] = ("done", "failed", "cancelled")  # a job's final states: queued and running are not


def install_env(path: Path, **overrides: object) -> dict[str, str]:
    """The environment of an offline install in `path`, as make_settings lays it out."""
    values: dict[str, object] = {
        "DATABASE_URL": f"sqlite:///{path / 'test.db'}",
        "API_KEY": API_KEY,
        "DATA_DIR": path / "data",
        "ENV_FILE_PATH": path / ".env",
        "MODELS_DIR": path / "models",
        "STRATEGIES_DIR": path / "strategies",
        "TRADE_LOG_DIR": path / "logs",
        "TRADE_EXPORT_DIR": path / "exports",
        "OFFLINE": "true",
        "BINANCE_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }
    values.update({key.upper(): value for key, value in overrides.items()})
    return {key: str(value) for key, value in values.items()}


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)

    def wait_for_crash(self, timeout: float = 60) -> None:
        """Wait until the process exited at its crash point (any other end fails the test)."""
        code = self.process.wait(timeout)
        assert code == EXIT_CODE, f"the server ended with {code}, not at its crash point:\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def server_process(env: Mapping[str, str], log: Path) -> Iterator[ServerProcess]:
    """Start the server with `env` (on top of PATH and the like), wait until it answers, stop it after."""
    with server_processes(env, [log]) as (server,):
        yield server


@contextmanager
def server_processes(env: Mapping[str, str], logs: list[Path]) -> Iterator[list[ServerProcess]]:
    """Start one server per log file at the same moment (so they race through start-up, as `uvicorn
    --workers N` does), all with `env`; wait until each answers; stop them all after."""
    full_env = _child_env(env)
    servers: list[ServerProcess] = []
    try:
        for log in logs:
            port = _free_port()
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
                    cwd=PROJECT_ROOT,
                    env=full_env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            servers.append(ServerProcess(f"http://127.0.0.1:{port}", process, log))
        for server in servers:
            wait_until(partial(_answers, server), timeout=120, what=f"the server to start\n{server.tail()}")
        yield servers
    finally:
        for server in servers:
            _stop(server.process)


def run_to_crash(
    module: str, args: list[str], env: Mapping[str, str], log: Path, timeout: float = 120
) -> None:
    """Run ``python -m module args`` with `env` and wait until it dies at its crash point (any other end,
    or none within `timeout`, fails the test; its output goes to `log`)."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            env=_child_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        code = process.wait(timeout)
    finally:
        _stop(process)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    assert code == EXIT_CODE, f"{module} ended with {code}, not at its crash point:\n{tail}"


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` on top of the few variables a Python process needs (PATH and the like), never this one's
    own settings variables."""
    full_env = {key: value for key, value in os.environ.items() if not key.isupper() or key in _KEEP}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(PROJECT_ROOT)
    return full_env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


_KEEP = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV", "NUMBA_CACHE_DIR"}


def _answers(server: ServerProcess) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"the server exited with {server.process.returncode}:\n{server.tail()}")
    try:
        return httpx.get(f"{server.url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
