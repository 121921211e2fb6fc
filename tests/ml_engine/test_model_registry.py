"""ml_engine/model_registry.py: only registered, intact artifacts are ever unpickled."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy.orm import Session, sessionmaker

from db import storage
from ml_engine import model_registry
from utils.errors import Conflict, NotFound


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    storage.upgrade_to_head(engine)
    return storage.make_session_factory(engine)


def fitted() -> LogisticRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return LogisticRegression().fit(x, x[:, 0] > 0)


def save(
    sessions: sessionmaker[Session], root: Path, when: datetime | None = None
) -> model_registry.SavedModel:
    return model_registry.save_model(
        sessions,
        root,
        "BTCUSDT",
        fitted(),
        interval="1h",
        horizon=4,
        metrics={"oos_auc": 0.61},
        metadata={"features": ["a", "b", "c"]},
        now=lambda: when or datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )


def test_save_then_load_round_trip(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    saved = save(sessions, tmp_path)
    assert saved.path == tmp_path / "BTCUSDT" / f"{saved.version}.joblib"
    meta = json.loads(saved.path.with_suffix(".json").read_text())
    assert meta["sha256"] == saved.sha256
    assert meta["features"] == ["a", "b", "c"]
    model, row = model_registry.load_model(sessions, tmp_path, "BTCUSDT", saved.version)
    x = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert model.predict(x).tolist() == fitted().predict(x).tolist()
    assert row.metrics == {"oos_auc": 0.61}
    assert [v.version for v in model_registry.list_versions(sessions, "BTCUSDT")] == [saved.version]


def test_a_tampered_artifact_is_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    saved = save(sessions, tmp_path)
    joblib.dump({"evil": True}, saved.path)  # same path, different bytes
    with pytest.raises(Conflict) as err:
        model_registry.load_model(sessions, tmp_path, "BTCUSDT", saved.version)
    assert err.value.code == "model_checksum_mismatch"


class TouchOnUnpickle:
    """A pickle whose unpickling runs code: it creates `marker` (pathlib's own Path.touch, so nothing of
    this module is needed to load it). Harmless, but observable: a stand-in for a malicious artifact."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[Path], None], tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_tampered_artifact_is_refused_before_it_is_unpickled(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    root = tmp_path / "models"
    saved = save(sessions, root)
    # The payload is live: unpickled on its own, it runs and leaves its marker.
    control = tmp_path / "control-ran"
    joblib.dump(TouchOnUnpickle(control), tmp_path / "control.joblib")
    joblib.load(tmp_path / "control.joblib")
    assert control.exists()
    # The same payload replaces the registered artifact; the database keeps the original checksum.
    marker = tmp_path / "payload-ran"
    joblib.dump(TouchOnUnpickle(marker), saved.path, compress=3)
    row = model_registry.get_version(sessions, "BTCUSDT", saved.version)
    assert row is not None and row.sha256 == saved.sha256
    with pytest.raises(Conflict) as err:
        model_registry.load_model(sessions, root, "BTCUSDT", saved.version)
    assert err.value.code == "model_checksum_mismatch"
    assert not marker.exists(), "the tampered artifact was unpickled before its checksum was checked"


def test_an_unregistered_file_is_never_loaded(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    (tmp_path / "BTCUSDT").mkdir()
    joblib.dump(fitted(), tmp_path / "BTCUSDT" / "20260101T000000000000Z.joblib")
    with pytest.raises(NotFound):
        model_registry.load_model(sessions, tmp_path, "BTCUSDT", "20260101T000000000000Z")


@pytest.mark.parametrize("version", ["../../etc/passwd", "20260101T000000000000Z.joblib", "latest", ""])
def test_version_strings_cannot_reach_other_paths(
    sessions: sessionmaker[Session], tmp_path: Path, version: str
) -> None:
    with pytest.raises(NotFound):
        model_registry.load_model(sessions, tmp_path, "BTCUSDT", version)


def test_a_missing_artifact_is_a_clear_error(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    saved = save(sessions, tmp_path)
    saved.path.unlink()
    with pytest.raises(Conflict) as err:
        model_registry.load_model(sessions, tmp_path, "BTCUSDT", saved.version)
    assert err.value.code == "model_missing"


def test_same_version_twice_leaves_the_first_intact(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    first = save(sessions, tmp_path)
    with pytest.raises(Conflict):
        save(sessions, tmp_path)
    model, _ = model_registry.load_model(sessions, tmp_path, "BTCUSDT", first.version)
    assert hasattr(model, "predict_proba")
