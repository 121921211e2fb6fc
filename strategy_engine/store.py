"""Saved strategies: human-readable JSON files under storage/strategies/<SYMBOL>/<slug>.json plus
database rows with every version.

Names become slugs of [a-z0-9-] only and the file path is built from the validated symbol and the
slug, then checked to stay inside the root, so no name can reach another path.

The rows are the record and the file shows the latest version (the rule in ``utils.recovery``): a save
commits the rows, then replaces the file atomically; a rename removes the old file only after the new one
is written; a delete removes the file after the commit. A crash between the two leaves a file behind its
rows, an orphan, or a retired name, and ``reconcile`` (run at start-up) rewrites or removes those files.
Writers are serialised in-process (SQLite allows one writer anyway) and the database's unique keys guard
against a second process.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import StrategyRecord, StrategyVersion, utcnow
from db.storage import transaction
from strategy_engine.spec import StrategySpec
from utils.crash import crash_point
from utils.errors import Conflict, InvalidInput, NotFound
from utils.files import write_atomic
from utils.recovery import Repair, swept
from utils.symbols import is_symbol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SavedStrategy:
    id: int
    name: str
    slug: str
    symbol: str
    interval: str
    version: int  # the version returned
    latest_version: int
    spec: dict[str, Any]
    health: dict[str, Any] | None
    health_score: int | None  # of the latest version
    created_at: Any
    updated_at: Any


def slugify(name: str) -> str:
    """Lower-case ASCII letters, digits and single dashes; never empty, never a path."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].strip("-")
    if not slug:
        raise InvalidInput("The strategy name needs at least one letter or digit.", details={"path": "name"})
    return slug


class StrategyStore:
    def __init__(self, sessions: sessionmaker[Session], root: Path) -> None:
        self.sessions = sessions
        self.root = root
        # Writes of this store one at a time: a row and its file change together. The app builds one
        # store (create_app), so this lock is the process's; it is not a module global.
        self._write_lock = threading.Lock()

    def path(self, symbol: str, slug: str) -> Path:
        if not is_symbol(symbol) or slugify(slug) != slug:
            raise InvalidInput("Invalid symbol or slug.")
        path = (self.root / symbol / f"{slug}.json").resolve()
        if self.root.resolve() not in path.parents:
            raise InvalidInput("The strategy path would leave the strategies folder.")
        return path

    # --- writes -----------------------------------------------------------------------------------

    def create(self, spec: StrategySpec, health: dict[str, Any] | None) -> SavedStrategy:
        slug = slugify(spec.name)
        with self._write_lock:
            record = self._create_rows(spec, health, slug)
            crash_point("strategy_committed")
            self._write_file(record, spec.to_dict(), health)
        return self.get(record.id)

    def _create_rows(self, spec: StrategySpec, health: dict[str, Any] | None, slug: str) -> StrategyRecord:
        with _unique_name(spec), transaction(self.sessions) as session:
            exists = _named(session, spec.symbol, slug)
            if exists is not None:
                raise Conflict(
                    f"A {spec.symbol} strategy named like {spec.name!r} already exists "
                    f"(id {exists}); update that one instead.",
                    code="strategy_exists",
                    details={"id": exists},
                )
            record = StrategyRecord(
                name=spec.name,
                slug=slug,
                symbol=spec.symbol,
                interval=spec.interval,
                version=1,
                health_score=_score(health),
            )
            session.add(record)
            session.flush()
            session.add(StrategyVersion(strategy_id=record.id, version=1, spec=spec.to_dict(), health=health))
        return record

    def update(self, strategy_id: int, spec: StrategySpec, health: dict[str, Any] | None) -> SavedStrategy:
        retired: list[Path] = []
        with self._write_lock:
            with _unique_name(spec), transaction(self.sessions) as session:
                record = self._update_rows(session, strategy_id, spec, health, retired)
            crash_point("strategy_committed")
            self._write_file(record, spec.to_dict(), health)
            crash_point("strategy_renamed")
            for path in retired:  # a renamed strategy's old file goes once the new one is written
                path.unlink(missing_ok=True)
        return self.get(strategy_id, record.version)  # the version this call saved, not a later one

    def _update_rows(
        self,
        session: Session,
        strategy_id: int,
        spec: StrategySpec,
        health: dict[str, Any] | None,
        retired: list[Path],
    ) -> StrategyRecord:
        record = session.get(StrategyRecord, strategy_id, with_for_update=True)
        if record is None:
            raise _not_found(strategy_id)
        slug = slugify(spec.name)
        if slug != record.slug:  # renamed: the file follows the name, and the name must stay unique
            taken = _named(session, record.symbol, slug)
            if taken is not None:
                raise Conflict(
                    f"Another {record.symbol} strategy (id {taken}) is already named like {spec.name!r}.",
                    code="strategy_exists",
                    details={"id": taken},
                )
            retired.append(self.path(record.symbol, record.slug))
            record.slug = slug
        if spec.symbol != record.symbol:
            raise InvalidInput(
                f"This strategy trades {record.symbol}; save a {spec.symbol} version as a new strategy.",
                details={"path": "symbol"},
            )
        record.version += 1
        record.name = spec.name
        record.interval = spec.interval
        record.health_score = _score(health)
        record.updated_at = utcnow()
        session.add(
            StrategyVersion(strategy_id=record.id, version=record.version, spec=spec.to_dict(), health=health)
        )
        session.flush()
        return record

    def delete(self, strategy_id: int) -> None:
        with self._write_lock:
            with transaction(self.sessions) as session:
                record = session.get(StrategyRecord, strategy_id)
                if record is None:
                    raise _not_found(strategy_id)
                path = self.path(record.symbol, record.slug)
                session.execute(delete(StrategyVersion).where(StrategyVersion.strategy_id == strategy_id))
                session.delete(record)
            # Only after the commit: a failed delete must leave both the rows and the file.
            path.unlink(missing_ok=True)

    # --- reconciliation ---------------------------------------------------------------------------

    def reconcile(self) -> list[Repair]:
        """Bring the files back into agreement with the rows (after a crash between a commit and a file
        write): rewrite missing or stale files, remove files no strategy has (orphans, retired names) and
        temp files of dead writers. Returns what it changed."""
        repairs: list[Repair] = []
        with self._write_lock:
            expected: set[Path] = set()
            for saved in self.list():
                path = self.path(saved.symbol, saved.slug)
                expected.add(path)
                if _file_shows(path, saved):
                    continue
                action = "rewritten from its row" if path.exists() else "written: its row had no file"
                with self.sessions() as session:
                    record = session.get(StrategyRecord, saved.id)
                    assert record is not None
                self._write_file(record, saved.spec, saved.health)
                repairs.append(Repair("strategy_file", self._relative(path), action))
            for path in self._strategy_files():
                if path.resolve() not in expected:
                    path.unlink(missing_ok=True)
                    repairs.append(
                        Repair("strategy_file", self._relative(path), "removed: no saved strategy has it")
                    )
            repairs += swept(self.root)
        return repairs

    def _strategy_files(self) -> list[Path]:
        """Files named as this store names them (``<SYMBOL>/<slug>.json``); anything else in the folder
        (the shipped ``examples/``, a user's notes) is not the store's and is never touched."""
        if not self.root.is_dir():
            return []
        return sorted(
            path
            for folder in self.root.iterdir()
            if folder.is_dir() and is_symbol(folder.name)
            for path in folder.glob("*.json")
            if re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", path.stem)
        )

    def _relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return path.name

    def _write_file(
        self, record: StrategyRecord, spec: dict[str, Any], health: dict[str, Any] | None
    ) -> None:
        """Write the latest version's file (after its rows committed). A failure here loses nothing: the
        rows are the record, and the next start-up writes the file from them."""
        path = self.path(record.symbol, record.slug)
        document = {
            "id": record.id,
            "name": record.name,
            "slug": record.slug,
            "version": record.version,
            "updated_at": (record.updated_at or utcnow()).isoformat(),
            "spec": spec,
            "health": health,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8"))
        except OSError:
            log.exception("strategy %s is saved, but its file %s could not be written", record.id, path)

    # --- reads ------------------------------------------------------------------------------------

    def get(self, strategy_id: int, version: int | None = None) -> SavedStrategy:
        with self.sessions() as session:
            record = session.get(StrategyRecord, strategy_id)
            if record is None:
                raise _not_found(strategy_id)
            wanted = record.version if version is None else version
            row = session.get(StrategyVersion, (strategy_id, wanted))
            if row is None:
                raise NotFound(
                    f"Strategy {strategy_id} has versions 1 to {record.version}; "
                    f"there is no version {wanted}.",
                    code="version_not_found",
                )
            return _saved(record, row)

    def list(self) -> Sequence[SavedStrategy]:
        with self.sessions() as session:
            rows = session.execute(
                select(StrategyRecord, StrategyVersion)
                .join(
                    StrategyVersion,
                    (StrategyVersion.strategy_id == StrategyRecord.id)
                    & (StrategyVersion.version == StrategyRecord.version),
                )
                .order_by(StrategyRecord.id)
            ).all()
            return [_saved(record, version) for record, version in rows]


def _named(session: Session, symbol: str, slug: str) -> int | None:
    """The id of the `symbol` strategy whose name has this slug, if there is one."""
    return session.scalars(
        select(StrategyRecord.id).where(StrategyRecord.symbol == symbol, StrategyRecord.slug == slug)
    ).first()


@contextmanager
def _unique_name(spec: StrategySpec) -> Iterator[None]:
    """Around a save's transaction: a unique-key race (a second writer took the name) is the same
    Conflict as the check before it."""
    try:
        yield
    except IntegrityError:
        raise Conflict(
            f"A {spec.symbol} strategy named like {spec.name!r} already exists.",
            code="strategy_exists",
        ) from None


def _file_shows(path: Path, saved: SavedStrategy) -> bool:
    """Whether the file at `path` shows exactly the latest version of `saved`."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and (
        document.get("id"),
        document.get("slug"),
        document.get("version"),
        document.get("spec"),
        document.get("health"),
    ) == (saved.id, saved.slug, saved.version, saved.spec, saved.health)


def _saved(record: StrategyRecord, row: StrategyVersion) -> SavedStrategy:
    return SavedStrategy(
        id=record.id,
        name=record.name,
        slug=record.slug,
        symbol=record.symbol,
        interval=record.interval,
        version=row.version,
        latest_version=record.version,
        spec=row.spec,
        health=row.health,
        health_score=record.health_score,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _score(health: dict[str, Any] | None) -> int | None:
    return None if health is None else int(health["score"])


def _not_found(strategy_id: int) -> NotFound:
    return NotFound(f"No saved strategy with id {strategy_id}.", code="strategy_not_found")
