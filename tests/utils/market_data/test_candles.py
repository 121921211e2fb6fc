"""utils/market_data/candles.py: the candle store keeps series unique, ascending, atomic, and reports gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.candles import store_rows
from utils.intervals import next_open_time
from utils.market_data.candles import CandleStore, Gap, find_gaps

HOUR = 3_600_000


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    return CandleStore(tmp_path / "store")


def test_merge_keeps_one_candle_per_open_time_and_the_newest_wins(store: CandleStore) -> None:
    assert store.merge("binance", "BTCUSDT", "1h", store_rows([0, HOUR, 2 * HOUR])) == 3
    assert store.merge("binance", "BTCUSDT", "1h", store_rows([2 * HOUR, HOUR * 4, HOUR * 3], 200.0)) == 2
    candles = store.load("binance", "BTCUSDT", "1h")
    assert candles.open_time.tolist() == [0, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR]
    assert candles.close.tolist() == [100.0, 100.0, 200.0, 200.0, 200.0]
    assert candles.open_time.dtype == np.int64


def test_load_filters_by_open_time_inclusive(store: CandleStore) -> None:
    store.merge("file", "BTCUSDT", "1h", store_rows([i * HOUR for i in range(10)]))
    assert store.load("file", "BTCUSDT", "1h", 2 * HOUR, 5 * HOUR).open_time.tolist() == [
        2 * HOUR,
        3 * HOUR,
        4 * HOUR,
        5 * HOUR,
    ]
    assert len(store.load("file", "BTCUSDT", "1h", 20 * HOUR)) == 0
    assert len(store.load("file", "ETHUSDT", "1h")) == 0


def test_partitions_and_month_interval_never_collide(store: CandleStore) -> None:
    store.merge("binance", "BTCUSDT", "1m", store_rows([0]))
    store.merge("binance", "BTCUSDT", "1M", store_rows([0, 2_678_400_000]))
    store.merge("sample", "BTCUSDT", "1m", store_rows([0, 60_000, 120_000]))
    assert len(store.load("binance", "BTCUSDT", "1m")) == 1
    assert len(store.load("binance", "BTCUSDT", "1M")) == 2
    assert len(store.load("sample", "BTCUSDT", "1m")) == 3
    assert (
        store.path("binance", "BTCUSDT", "1M").name.lower()
        != store.path("binance", "BTCUSDT", "1m").name.lower()
    )


def test_metadata_travels_with_the_data(store: CandleStore) -> None:
    store.merge("binance", "BTCUSDT", "1h", store_rows([0]), lambda meta: {**meta, "coverage": [[0, HOUR]]})
    store.merge("binance", "BTCUSDT", "1h", store_rows([HOUR]))
    assert store.meta("binance", "BTCUSDT", "1h") == {"coverage": [[0, HOUR]]}


def test_a_failed_write_leaves_the_previous_file_intact(store: CandleStore) -> None:
    store.merge("binance", "BTCUSDT", "1h", store_rows([0, HOUR]))

    def explode(meta: dict) -> dict:
        raise RuntimeError("crash between read and write")

    with pytest.raises(RuntimeError):
        store.merge("binance", "BTCUSDT", "1h", store_rows([2 * HOUR]), explode)
    assert store.load("binance", "BTCUSDT", "1h").open_time.tolist() == [0, HOUR]
    assert [p.name for p in store.path("binance", "BTCUSDT", "1h").parent.iterdir()] == ["1h.parquet"]


def test_unknown_partition_is_refused(store: CandleStore) -> None:
    with pytest.raises(ValueError, match="partition"):
        store.path("../../etc", "BTCUSDT", "1h")  # type: ignore[arg-type]  # deliberately not a Partition


@pytest.mark.parametrize(
    ("times", "interval", "gaps"),
    [
        ([0, HOUR, 2 * HOUR], "1h", []),
        ([0, HOUR, 4 * HOUR], "1h", [Gap(HOUR, 4 * HOUR, 2)]),
        ([0, 3 * HOUR, 4 * HOUR, 6 * HOUR], "1h", [Gap(0, 3 * HOUR, 2), Gap(4 * HOUR, 6 * HOUR, 1)]),
        ([0], "1h", []),
    ],
)
def test_gaps_are_reported_not_filled(times: list[int], interval: str, gaps: list[Gap]) -> None:
    assert find_gaps(np.array(times, dtype=np.int64), interval) == gaps


def test_month_gaps_count_calendar_months() -> None:
    jan = 1_704_067_200_000  # 2024-01-01
    feb = next_open_time(jan, "1M")
    may = next_open_time(next_open_time(next_open_time(feb, "1M"), "1M"), "1M")
    assert find_gaps(np.array([jan, feb, may], dtype=np.int64), "1M") == [Gap(feb, may, 2)]


def test_a_read_sees_every_write_whoever_made_it(store: CandleStore, tmp_path: Path) -> None:
    """Reads are served from decoded tables in memory; a write by this store or by another one on the
    same folder (another process) is seen by the next read, even one that keeps the file's size."""
    other = CandleStore(tmp_path / "store")
    store.merge("binance", "BTCUSDT", "1h", store_rows([0, HOUR, 2 * HOUR], 100.0))
    assert store.load("binance", "BTCUSDT", "1h").close.tolist() == [100.0] * 3
    assert store.load("binance", "BTCUSDT", "1h").close.tolist() == [100.0] * 3  # from memory
    store.merge("binance", "BTCUSDT", "1h", store_rows([HOUR], 150.0))
    assert store.load("binance", "BTCUSDT", "1h").close.tolist() == [100.0, 150.0, 100.0]
    other.merge("binance", "BTCUSDT", "1h", store_rows([HOUR], 175.0))  # same rows, same size
    assert store.load("binance", "BTCUSDT", "1h").close.tolist() == [100.0, 175.0, 100.0]
    meta = store.meta("binance", "BTCUSDT", "1h")
    meta["edited"] = True  # a caller's copy: the stored metadata stays as it was
    assert "edited" not in store.meta("binance", "BTCUSDT", "1h")


def test_the_memory_kept_for_reads_is_bounded(tmp_path: Path) -> None:
    small = CandleStore(tmp_path / "store", cache_bytes=1)
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        small.merge("binance", symbol, "1h", store_rows([0, HOUR]))
        small.load("binance", symbol, "1h")
    assert len(small._cache) == 1, "only the latest series is kept over the limit"
    assert small.load("binance", "BTCUSDT", "1h").open_time.tolist() == [0, HOUR]
