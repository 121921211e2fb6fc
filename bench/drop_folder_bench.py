"""What a rejected drop-folder file costs a candles request.

Writes a 200,000-line Binance kline CSV into DATA_DIR whose last row is impossible (high below
close), so it is parsed to the end and rejected, then times GET /api/binance/candles for its series
through the real app (TestClient, offline, sample data). Target (issue "a read path that only
reads"): the request costs the same as with no such file; the file is parsed at start-up only.
Run: .venv/bin/python bench/drop_folder_bench.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from main import create_app
from tests.support.http import AUTH
from tests.support.settings import make_settings

HOUR = 3_600_000
ROWS = 200_000
REQUESTS = 10


def rejected_csv(rows: int) -> str:
    """Binance 12-column klines, 1h apart, ending well before now; the last row's high is too low."""
    start = (time.time_ns() // 1_000_000 // HOUR - rows - 24) * HOUR
    lines = [
        f"{start + i * HOUR},100.0,101.0,99.0,100.5,10.0,{start + (i + 1) * HOUR - 1},1000.0,5,5.0,500.0,0"
        for i in range(rows)
    ]
    t = start + (rows - 1) * HOUR
    lines[-1] = f"{t},100.0,100.2,99.0,100.5,10.0,{t + HOUR - 1},1000.0,5,5.0,500.0,0"
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp))
        settings.data_dir.mkdir(parents=True)
        big = settings.data_dir / "BTCUSDT-1h-rejected.csv"
        big.write_text(rejected_csv(ROWS))
        size = big.stat().st_size
        started = time.perf_counter()
        with TestClient(create_app(settings)) as client:
            startup_s = time.perf_counter() - started
            params = {"symbol": "BTCUSDT", "interval": "1h", "limit": 500}
            times = []
            for _ in range(REQUESTS):
                t = time.perf_counter()
                response = client.get("/api/binance/candles", params=params, headers=AUTH)
                times.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
                assert response.json()["source"] == "sample"
            health = client.get("/api/health").json()
    print(
        f"GET /api/binance/candles (BTCUSDT 1h, limit 500) with a rejected {ROWS:,}-line CSV "
        f"({size / 1e6:.1f} MB) in DATA_DIR, {REQUESTS} requests"
    )
    print(f"start-up (lifespan) {startup_s:.2f} s")
    print(
        f"median {statistics.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms, "
        f"max {max(times) * 1000:.1f} ms"
    )
    print(f"health data_files: {health.get('data_files', '(not reported)')}")


if __name__ == "__main__":
    main()
