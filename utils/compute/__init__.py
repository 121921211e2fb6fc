"""Where research work runs: one `Compute` interface over a local process pool and a Dask distributed cluster.

Sweeps, optimisation trials and walk-forward windows are many independent calls `fn(shared, item)` over the
same large input (the candles) and a small item each (one parameter combination). `make_compute` picks the
backend: a Dask cluster when COMPUTE_SCHEDULER names its scheduler, else a pool of local processes.

Both backends keep the same promises, so a caller never knows which one ran its work:
- `shared` crosses to each worker once per `map` call (scattered), never once per task; passing the very
  same object to the next call (an optimiser's batches) reuses what the workers hold already, so `shared`
  is read-only: never change it in place between calls;
- results come back in the order of the items, and equal a one-process run bit for bit (pickled floats);
- the first exception `fn` raises propagates, and the outstanding tasks are cancelled;
- `should_stop` is polled while waiting: True cancels what is outstanding and raises `ComputeCancelled`;
- a worker process that dies loses no result: its tasks run again on the others (a fresh local pool, or
  the cluster's remaining workers), so `map` still returns every one.

`fn`, the items and `shared` are pickled: `fn` must be a module-level function (or a `functools.partial` of
one) of a module the workers can import, which for a cluster means this project's code on each worker's
PYTHONPATH (see the README). `distributed` is an extra (requirements-distributed.txt) imported only when a
scheduler is configured.
"""

from __future__ import annotations

import importlib.util

from utils.compute.base import Compute, ComputeCancelled, ComputeStatus
from utils.compute.cluster import CLUSTER_ENV, DaskCompute
from utils.compute.pool import ALLOCATOR_ENV, LocalCompute, tune_allocator
from utils.errors import ComputeUnavailable

__all__ = [
    "ALLOCATOR_ENV",
    "CLUSTER_ENV",
    "Compute",
    "ComputeCancelled",
    "ComputeStatus",
    "ComputeUnavailable",
    "DaskCompute",
    "LocalCompute",
    "make_compute",
    "tune_allocator",
]


def make_compute(scheduler: str | None, local_workers: int, *, direct_to_workers: bool = True) -> Compute:
    """A Dask cluster's client when `scheduler` names one (COMPUTE_SCHEDULER), else a local process pool.

    Neither connects nor starts a process here: the first `map` does, so the app starts as fast with either.
    A scheduler without the `distributed` package installed is refused at once (at start-up), with the fix.
    """
    if scheduler:
        if importlib.util.find_spec("distributed") is None:
            raise ComputeUnavailable(
                f"COMPUTE_SCHEDULER is set ({scheduler}) but the Dask 'distributed' package is not "
                "installed: pip install -r requirements-distributed.txt, or unset COMPUTE_SCHEDULER to run "
                "on local processes.",
                code="compute_unavailable",
            )
        return DaskCompute(scheduler, direct_to_workers=direct_to_workers)
    return LocalCompute(local_workers)
