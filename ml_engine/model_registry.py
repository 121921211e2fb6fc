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
from utils.errors import Conflict, NotFound
from utils.files import write_atomic
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
) -> SavedModel:
    """Write `<root>/<SYMBOL>/<version>.joblib` and `<version>.json`, then register the row.

    Files are written to temp names and renamed; if registering fails they are removed, so a
    crash never leaves a registered row without its file (an unregistered file is never loaded).
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
    except IntegrityError:
        artifact.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise Conflict(f"Model version {version} of {symbol} already exists.", code="model_exists") from None
    except Exception:
        artifact.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise
    return SavedModel(symbol, version, artifact, digest, full_meta)


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
