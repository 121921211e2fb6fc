"""What start-up reconciliation repaired, and the one rule that makes repairs possible.

The rule for the database and the files beside it:

1. The database is the record. A write is acknowledged only after its commit.
2. A file that *shows* rows (a strategy's JSON file, ``trades.jsonl``, ``decisions.jsonl``) is written
   after the commit and can always be rebuilt from the rows; a missing, stale or orphaned one is rewritten
   or removed.
3. A file that rows *point to* (a model artifact) is written completely before the commit of the row that
   registers it; a file no row points to is garbage and is removed.
4. Every file is replaced atomically (``utils.files``: temp file, fsync, rename, fsync of the folder); a
   crash leaves at most a temp file, which is swept once the process that wrote it is gone.
5. Work that spans the database and the outside world (an order sent to Binance) is written as PENDING
   first and reconciled afterwards by its client order id.

At start-up, before any request is served, each owner reconciles its part (candle store, strategies,
models, decisions, orders, trade logs) and returns ``Repair`` lines, which are logged as warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from utils.files import sweep_temp_files

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Repair:
    """One thing reconciliation changed: what kind of record, which one, and what was done."""

    kind: str  # "strategy_file", "model_artifact", "temp_file", "decision", "order", "trade_log", ...
    subject: str  # the file or record, e.g. "BTCUSDT/sma.json" or "decision 3fa2..."
    action: str  # e.g. "rewritten from its row", "removed: no row registers it"

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.action}"


def swept(root: Path) -> list[Repair]:
    """Sweep the temp files killed writers left under `root` (``utils.files.sweep_temp_files``), as repairs
    named relative to `root`."""
    return [
        Repair("temp_file", str(path.relative_to(root)), "removed: left by a killed writer")
        for path in sweep_temp_files(root)
    ]


def log_repairs(repairs: Iterable[Repair]) -> list[Repair]:
    """Log each repair as a warning (a repair means a previous process died mid-write); returns them."""
    done = list(repairs)
    for repair in done:
        log.warning("start-up repair: %s", repair)
    if done:
        log.warning("start-up reconciliation repaired %d thing(s)", len(done))
    return done
