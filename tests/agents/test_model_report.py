"""agents/model_report.py without a browser: a model trained before trainings recorded diagnostics still gets
a page that says what it lacks, and the metadata beside an artifact is read only inside the models folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from agents.model_report import build_report
from db.models import ModelVersion
from ml_engine.model_registry import read_metadata
from utils.reports.document import Chart, Table, Text

METRICS = {
    "oos_accuracy": 0.51,
    "oos_auc": 0.52,
    "oos_log_loss": 0.69,
    "n_oos": 1200,
    "backtest_total_return": 0.1,
}


def _row(path: str = "BTCUSDT/20260101T000000000000Z.joblib") -> ModelVersion:
    return ModelVersion(
        symbol="BTCUSDT",
        version="20260101T000000000000Z",
        path=path,
        sha256="ab" * 32,
        interval="1h",
        horizon=4,
        metrics=METRICS,
        trained_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_an_older_model_says_what_it_lacks_and_shows_what_it_has() -> None:
    metadata = {"data_source": "file", "report": {"chosen": "logreg", "metrics": METRICS, "candidates": []}}
    report = build_report(_row(), metadata, active=True, now_ms=0)
    assert not report.title.startswith("[SAMPLE DATA]") and report.warning is None
    warnings = [
        b.text for s in report.sections for b in s.blocks if isinstance(b, Text) and b.tone == "warning"
    ]
    assert any("POST /api/agents/BTCUSDT/train" in w for w in warnings)
    assert not [b for s in report.sections for b in s.blocks if isinstance(b, Chart)]
    metrics = next(
        b for s in report.sections for b in s.blocks if isinstance(b, Table) and b.key == "metrics"
    )
    assert metrics.rows[2][:2] == ("AUC", "0.52") and metrics.rows[0][1] == "51.00%"


def test_a_model_without_its_metadata_file_still_reports_the_registrys_numbers(tmp_path: Path) -> None:
    assert read_metadata(tmp_path, _row()) is None
    report = build_report(_row(), None, active=False, now_ms=0)
    metrics = next(
        b for s in report.sections for b in s.blocks if isinstance(b, Table) and b.key == "metrics"
    )
    assert metrics.rows[0][1] == "51.00%"
    texts = [b.text for s in report.sections for b in s.blocks if isinstance(b, Text)]
    assert any("metadata file is missing" in t for t in texts)


def test_metadata_is_read_beside_the_artifact_and_never_outside_the_models_folder(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "BTCUSDT").mkdir(parents=True)
    (models / "BTCUSDT" / "20260101T000000000000Z.json").write_text(json.dumps({"data_source": "sample"}))
    (tmp_path / "secret.json").write_text(json.dumps({"data_source": "outside"}))
    assert read_metadata(models, _row()) == {"data_source": "sample"}
    assert read_metadata(models, _row("../secret.joblib")) is None
    (models / "BTCUSDT" / "20260101T000000000000Z.json").write_text("not json")
    assert read_metadata(models, _row()) is None
    # Metadata written for another artifact (a copied or stale file) is not shown as this model's.
    own, other = {"sha256": "ab" * 32, "data_source": "file"}, {"sha256": "cd" * 32, "data_source": "file"}
    (models / "BTCUSDT" / "20260101T000000000000Z.json").write_text(json.dumps(own))
    assert read_metadata(models, _row()) == own
    (models / "BTCUSDT" / "20260101T000000000000Z.json").write_text(json.dumps(other))
    assert read_metadata(models, _row()) is None
