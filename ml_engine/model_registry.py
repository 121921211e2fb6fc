"""Trained model artifacts: saved with joblib beside a metadata JSON, registered by sha256, and
loaded only when registered and intact.

joblib files are pickles, and unpickling runs code. So a file is loaded only if the database has
a row for exactly that symbol and version, the file sits inside the models root, and its bytes
hash to the registered sha256; the bytes that were hashed are the bytes that get unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import ModelVersion
from db.storage import transaction
from utils.crash import crash_point
from utils.errors import Conflict, NotFound
from utils.files import write_atomic
from utils.recovery import Repair, swept
from utils.symbols import is_symbol

_VERSION = re.compile(r"^[0-9]{8}T[0-9]{6}[0-9]{6}Z$")


@dataclass(frozen=True, slots=True)
class SavedModel:
    symbol: str
    version: str
    path: Path
    sha256: str
    metadata: dict[str, Any]


def _check_symbol(symbol: str) -> None:
    if not is_symbol(symbol):
        raise ValueError(f"invalid symbol {symbol!r}")


def save_model(
    sessions: sessionmaker[Session],
    root: Path,
    symbol: str,
    model: Any,
    *,
    interval: str,
    horizon: int,
    metrics: dict[str, Any],
    metadata: dict[str, Any],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_register: Callable[[Session, SavedModel], None] | None = None,
) -> SavedModel:
    """Write `<root>/<SYMBOL>/<version>.joblib` and `<version>.json`, then register the row.

    The files come first (the rule in ``utils.recovery``: rows point to complete files), written
    atomically; if registering fails they are removed, and if the process dies before the commit
    ``reconcile_artifacts`` removes them at the next start (an unregistered file is never loaded).
    `on_register(session, saved)` runs in the registering transaction, so what must commit with the
    model (its activation, the training job's end) commits with it or not at all.
    """
    _check_symbol(symbol)
    stamp = now().astimezone(UTC)
    version = stamp.strftime("%Y%m%dT%H%M%S%fZ")
    folder = root / symbol
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    blob = buffer.getvalue()
    digest = hashlib.sha256(blob).hexdigest()
    artifact = folder / f"{version}.joblib"
    meta_path = folder / f"{version}.json"
    if artifact.exists() or get_version(sessions, symbol, version) is not None:
        raise Conflict(f"Model version {version} of {symbol} already exists.", code="model_exists")
    full_meta = {
        **metadata,
        "symbol": symbol,
        "version": version,
        "sha256": digest,
        "interval": interval,
        "horizon": horizon,
        "metrics": metrics,
        "trained_at": stamp.isoformat(),
    }
    write_atomic(artifact, blob)
    write_atomic(meta_path, json.dumps(full_meta, indent=2, sort_keys=True, default=str).encode())
    crash_point("model_files_written")
    saved = SavedModel(symbol, version, artifact, digest, full_meta)
    try:
        with transaction(sessions) as session:
            session.add(
                ModelVersion(
                    symbol=symbol,
                    version=version,
                    path=f"{symbol}/{version}.joblib",
                    sha256=digest,
                    interval=interval,
                    horizon=horizon,
                    metrics=metrics,
                    trained_at=stamp,
                )
            )
            if on_register is not None:
                session.flush()
                on_register(session, saved)
    except IntegrityError:
        artifact.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise Conflict(f"Model version {version} of {symbol} already exists.", code="model_exists") from None
    except Exception:
        artifact.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise
    return saved


def load_model(
    sessions: sessionmaker[Session], root: Path, symbol: str, version: str
) -> tuple[Any, ModelVersion]:
    """The unpickled model of a registered version, after verifying its checksum."""
    _check_symbol(symbol)
    if not _VERSION.match(version):
        raise NotFound(f"No model version {version!r} for {symbol}.", code="model_not_found")
    row = get_version(sessions, symbol, version)
    if row is None:
        raise NotFound(f"No model version {version!r} for {symbol}.", code="model_not_found")
    path = (root / row.path).resolve()
    if root.resolve() not in path.parents:
        raise Conflict(
            "A registered model path points outside the models folder; refusing to load it.",
            code="model_path_invalid",
        )
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise Conflict(
            f"The artifact of {symbol} {version} is missing on disk.", code="model_missing"
        ) from None
    if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), row.sha256):
        raise Conflict(
            f"The artifact of {symbol} {version} does not match its registered checksum; it changed after "
            "training and will not be loaded.",
            code="model_checksum_mismatch",
        )
    return joblib.load(io.BytesIO(blob)), row


def read_metadata(root: Path, row: ModelVersion) -> dict[str, Any] | None:
    """The metadata JSON beside a registered artifact (``<version>.json``: the training report, for
    people), or None when it is missing, unreadable, outside the models folder, or written for another
    artifact (its sha256 differs from the registered one). JSON only: parsing it runs no code."""
    base = root.resolve()
    path = (base / row.path).with_suffix(".json").resolve()
    if base not in path.parents:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256", row.sha256) != row.sha256:
        return None
    return data


def get_version(sessions: sessionmaker[Session], symbol: str, version: str) -> ModelVersion | None:
    with sessions() as session:
        return session.scalars(
            select(ModelVersion).where(ModelVersion.symbol == symbol, ModelVersion.version == version)
        ).first()


def list_versions(sessions: sessionmaker[Session], symbol: str) -> Sequence[ModelVersion]:
    with sessions() as session:
        return session.scalars(
            select(ModelVersion).where(ModelVersion.symbol == symbol).order_by(ModelVersion.trained_at.desc())
        ).all()


def reconcile_artifacts(
    sessions: sessionmaker[Session], root: Path, training: Callable[[str], bool]
) -> list[Repair]:
    """Remove model files no registry row points to (a training killed between writing its files and
    registering them), and temp files of killed writers. Symbols for which `training(symbol)` is true
    are skipped: a training in flight writes its files just before it registers them."""
    repairs: list[Repair] = []
    if not root.is_dir():
        return repairs
    with sessions() as session:
        registered = {
            (row.symbol, row.version)
            for row in session.execute(select(ModelVersion.symbol, ModelVersion.version))
        }
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_symbol(p.name)):
        if training(folder.name):
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".joblib", ".json") or not _VERSION.match(path.stem):
                continue
            if (folder.name, path.stem) not in registered:
                path.unlink(missing_ok=True)
                repairs.append(
                    Repair("model_file", f"{folder.name}/{path.name}", "removed: no registered model has it")
                )
    return repairs + swept(root)
