"""Trade and decision logs: size-rotated JSON lines under TRADE_LOG_DIR, and CSV exports of orders.

Each event is one line ``{"ts": ISO-8601 UTC, "kind": kind, "data": payload}`` in ``<kind>s.jsonl``
(``ts`` read from the app's clock, as the orders' and decisions' own times are)
(``trades.jsonl``, ``decisions.jsonl``, ...). When a write would take a file past ``max_bytes`` the
file is rotated first (``trades.jsonl`` -> ``trades.jsonl.1`` -> ... -> ``.<backups>``, the oldest
dropped), so a line is never split across files. Writers sharing one TradeLog are serialised per file;
separate processes appending to one directory may interleave rotations, so run one writer process.

Secrets never reach a line: values under secret-looking keys are replaced by ``***`` and the
serialised line goes through the same redaction as the app's logs (known secret values and
signature/API-key patterns).
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import TRADING_MODES, TradeOrder, utc_at, utcnow
from utils.binance_api import wall_clock_ms
from utils.errors import InvalidInput
from utils.files import file_lock, write_atomic_with
from utils.jsonsafe import fixed_point, json_default
from utils.logger import redact
from utils.settings import StorageSettings

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SECRET_KEY = re.compile(
    r"(secret|password|passphrase|token|signature|api[_-]?key|authorization|trading_confirm)", re.I
)
_REDACTED = "***"
# Spreadsheets execute cells starting with these; text cells are prefixed with ' to stay text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "mode",
    "epoch",
    "client_order_id",
    "decision_id",
    "symbol",
    "side",
    "type",
    "status",
    "requested_quantity",
    "requested_quote_amount",
    "executed_quantity",
    "price",
    "quote_quantity",
    "fee",
    "fee_asset",
    "realised_pnl",
    "reference_price",
    "price_source",
    "reject_code",
    "reject_reason",
    "exchange_order_id",
)
_TEXT_COLUMNS = frozenset({"client_order_id", "decision_id", "reject_reason", "exchange_order_id"})


@dataclass
class TradeLog:
    """Appends events as JSON lines with size-based rotation; see the module docstring."""

    directory: Path
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    secrets: Iterable[str] = field(default_factory=tuple)
    clock: Callable[[], int] = wall_clock_ms  # epoch ms; create_app passes the app's (injectable) clock
    # One lock per log file, so this log's writers never rotate a file under each other; create_app
    # builds one TradeLog and shares it, since two objects on one directory would not share these.
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.backups < 1:
            raise ValueError("max_bytes must be positive and backups at least 1")
        self.directory = Path(self.directory)
        # Longest first, so a secret containing another one is replaced whole.
        self.secrets = tuple(sorted({s for s in self.secrets if len(s) >= 4}, key=len, reverse=True))

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, secrets: Iterable[str], *, clock: Callable[[], int] = wall_clock_ms
    ) -> TradeLog:
        """TRADE_LOG_DIR and its rotation; `secrets` are scrubbed from every line."""
        return cls(
            storage.trade_log_dir,
            max_bytes=storage.trade_log_max_bytes,
            backups=storage.trade_log_backups,
            secrets=secrets,
            clock=clock,
        )

    def path_for(self, kind: str) -> Path:
        if not KIND_PATTERN.fullmatch(kind):
            raise InvalidInput(
                f"Log kind must match {KIND_PATTERN.pattern}.", details={"field": "kind", "value": kind[:40]}
            )
        return self.directory / f"{kind}s.jsonl"

    def append_event(self, kind: str, payload: Mapping[str, Any]) -> Path:
        """Append one event (e.g. kind "decision") to ``<kind>s.jsonl``; returns that file's path."""
        path = self.path_for(kind)
        record = {
            "ts": utc_at(self.clock()).isoformat(timespec="milliseconds"),
            "kind": kind,
            "data": _scrub(payload),
        }
        line = redact(json.dumps(record, default=json_default, ensure_ascii=False), self.secrets)
        data = (line.replace("\n", " ") + "\n").encode("utf-8")
        with self._file_lock(kind):
            self.directory.mkdir(parents=True, exist_ok=True)
            # Other server processes of this host may log to the same folder: one rotates at a time,
            # and none appends to a file another is moving away.
            with file_lock(self.directory / f".{path.name}.lock"):
                self._append(path, data)
        return path

    def _append(self, path: Path, data: bytes) -> None:
        size = path.stat().st_size if path.exists() else 0
        if size and size + len(data) > self.max_bytes:
            self._rotate(path)
        with path.open("ab") as handle:
            handle.write(data)

    def append_trade(self, trade: Any) -> Path:
        """Append an order result (anything with ``to_dict()``, or a mapping) to ``trades.jsonl``."""
        payload = trade.to_dict() if hasattr(trade, "to_dict") else dict(trade)
        return self.append_event("trade", payload)

    def _file_lock(self, kind: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(kind, threading.Lock())

    def _rotate(self, path: Path) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))


def export_trades_csv(sessions: sessionmaker[Session], mode: str, directory: Path) -> Path:
    """Write every order of `mode` (all epochs, oldest first) as CSV into `directory`.

    The file name is generated (``trades-<mode>-<UTC time>-<random>.csv``), never taken from a
    caller, so an export can only ever land in the configured export folder. Decimals are written
    exactly as stored; the file appears atomically (written aside, then renamed)."""
    if mode not in TRADING_MODES:
        raise InvalidInput(f"mode must be one of {', '.join(TRADING_MODES)}.", details={"field": "mode"})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"trades-{mode}-{stamp}-{uuid.uuid4().hex[:8]}.csv"
    with sessions() as session:
        rows = session.scalars(
            select(TradeOrder).where(TradeOrder.mode == mode).order_by(TradeOrder.id)
        ).all()
        write_atomic_with(
            target, lambda handle: _write_csv(handle, rows), encoding="utf-8", newline="", suffix=".partial"
        )
    return target


def _write_csv(handle: IO[str], rows: Sequence[TradeOrder]) -> None:
    writer = csv.writer(handle)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(name, getattr(row, name)) for name in CSV_COLUMNS])


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if name in _TEXT_COLUMNS and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _scrub(value: Any) -> Any:
    """A copy of `value` with everything under a secret-looking key replaced by ***."""
    if isinstance(value, Mapping):
        return {
            str(key): (_REDACTED if _SECRET_KEY.search(str(key)) else _scrub(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    return value
