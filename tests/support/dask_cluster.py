"""A real local Dask distributed cluster for tests and benches: a scheduler and workers as separate processes
on 127.0.0.1 (the `dask scheduler` and `dask worker` programs of requirements-distributed.txt), each worker
under its nanny, as a cluster one points COMPUTE_SCHEDULER at would run them.

Without the `distributed` package the tests that need a cluster skip with the reason, unless
REQUIRE_SYSTEM_DEPS=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from utils.compute import ALLOCATOR_ENV, CLUSTER_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MISSING = "Dask's distributed is not installed (pip install -r requirements-distributed.txt)"
_START_TIMEOUT_S = 90.0  # a worker imports numpy and friends under the nanny: seconds on a loaded 2-core CI


def distributed_missing() -> str | None:
    """Why a cluster cannot start here, or None."""
    return MISSING if importlib.util.find_spec("distributed") is None else None


@dataclass
class DaskCluster:
    address: str
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait_for_workers(self, n: int, timeout: float = _START_TIMEOUT_S) -> None:
        """Block until `n` workers are connected to the scheduler (after a start, or a worker's restart)."""
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        """Each connected worker's address and the pid of its process (the nanny's child)."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            pids: dict[str, int] = client.run(os.getpid)
            return pids

    def logs(self) -> str:
        paths = sorted(self.folder.glob("*.log"))
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}" for path in paths)


@contextmanager
def dask_cluster(
    n_workers: int = 2, *, memory_limit: str = "1GB", settings: dict[str, str] | None = None
) -> Iterator[DaskCluster]:
    """Start a scheduler and `n_workers` single-threaded workers; yield once all are connected; stop every
    process after (each runs in its own process group, so the nannies' worker processes go too).
    `settings`: Dask environment variables over the README's (CLUSTER_ENV), for a cluster run otherwise."""
    reason = distributed_missing()
    if reason is not None:
        raise RuntimeError(reason)
    folder = Path(tempfile.mkdtemp(prefix="test-dask-"))
    port = _free_port()
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", folder)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),  # the workers import this project's code
        # The allocator settings the README gives cluster workers (the nannies set them in each worker).
        "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr(ALLOCATOR_ENV),
        **CLUSTER_ENV,  # the README's scheduler and worker settings
        **(settings or {}),
    }
    try:
        cluster.processes.append(
            _start(
                [
                    "distributed.cli.dask_scheduler",
                    "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                ],
                folder / "scheduler.log",
                env,
            )
        )
        for i in range(n_workers):
            cluster.processes.append(
                _start(
                    [
                        "distributed.cli.dask_worker", cluster.address,
                        "--host", "127.0.0.1", "--nthreads", "1", "--memory-limit", memory_limit,
                        "--no-dashboard", "--name", f"worker-{i}",
                        "--local-directory", str(folder / f"worker-{i}"),
                        # Workers whose scheduler is gone (a test process killed hard) end by themselves.
                        "--death-timeout", "60",
                    ],
                    folder / f"worker-{i}.log",
                    env,
                )
            )
        try:
            cluster.wait_for_workers(n_workers)
        except Exception as exc:
            raise AssertionError(f"the Dask cluster did not start: {exc}\n{cluster.logs()}") from exc
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops the nanny's children too
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    group = process.pid  # the group leader's pid (start_new_session)
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(20)
    # The nanny's worker process may outlive its nanny by a moment: nothing of the group may survive.
    deadline = time.monotonic() + 10
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    if process.poll() is None:
        process.wait(10)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
