"""Scratch memory for the indicators: ``BufferPool`` (arrays kept between calls, under a lock) and
``Workspace`` (what one call borrows from a pool); ``SCRATCH_POOL`` is the process's one pool."""

from __future__ import annotations

import threading

import numpy as np

from ml_engine.indicators.inputs import FloatArray


def _best_fit(buffers: list[FloatArray], size: int) -> FloatArray | None:
    """Remove and return the smallest buffer of at least ``size`` elements, None if there is none."""
    fits = [i for i, buf in enumerate(buffers) if buf.size >= size]
    return buffers.pop(min(fits, key=lambda i: buffers[i].size)) if fits else None


class BufferPool:
    """Scratch arrays kept between indicator calls, at most ``limit_bytes`` in total.

    Shared by all threads: a buffer is only ever lent to one call at a time, and the list is only
    touched under the pool's lock. Bounded in total, so a thread pool does not multiply the memory
    kept.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._buffers: list[FloatArray] = []
        self._lock = threading.Lock()

    def lend(self, size: int) -> FloatArray | None:
        """The smallest kept buffer of at least ``size`` elements, now the caller's; None if none fits."""
        with self._lock:
            return _best_fit(self._buffers, size)

    def keep(self, returned: list[FloatArray]) -> None:
        """Take ``returned`` back: of all buffers, the smallest are kept up to the byte limit."""
        with self._lock:
            kept: list[FloatArray] = []
            total = 0
            for buf in sorted(self._buffers + returned, key=lambda b: b.size):
                if total + buf.nbytes <= self.limit_bytes:
                    kept.append(buf)
                    total += buf.nbytes
            self._buffers = kept

    @property
    def nbytes(self) -> int:
        """Bytes currently kept."""
        with self._lock:
            return sum(buf.nbytes for buf in self._buffers)


# The pool every public indicator function draws from (see api._run).
SCRATCH_POOL = BufferPool(limit_bytes=64 * 2**20)


class Workspace:
    """Scratch arrays for one indicator call, recycled across calls through ``pool``.

    Multi-megabyte temporaries cost more than the arithmetic done on them: freed, they go back to
    the OS and the next call page-faults them in again (~1 ms per 8 MB on the reference machine,
    against ~0.15 ms for an add over them). So scratch comes from a pool that keeps at most
    64 MiB (``SCRATCH_POOL``). Outputs are always fresh arrays, never pool memory. Used as a
    context manager: on exit everything taken goes back to the pool.
    """

    def __init__(self, pool: BufferPool) -> None:
        self._pool = pool
        self._taken: list[FloatArray] = []
        self._spare: list[FloatArray] = []

    def take(self, size: int) -> FloatArray:
        """A scratch array of ``size`` elements with arbitrary contents."""
        buf = _best_fit(self._spare, size)
        if buf is None:
            buf = self._pool.lend(size)
        if buf is None:
            # Slack lets requests that differ by a few bars (n, n - 1, rounded up to blocks) share.
            buf = np.empty(size + size // 32 + 64)
        self._taken.append(buf)
        return buf[:size]

    def mark(self) -> int:
        return len(self._taken)

    def release(self, mark: int) -> None:
        """Everything taken since ``mark`` may be handed out again by this workspace."""
        self._spare.extend(self._taken[mark:])
        del self._taken[mark:]

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.keep(self._taken + self._spare)
        self._taken, self._spare = [], []
