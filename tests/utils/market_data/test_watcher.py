"""The candle watcher on a real MarketData talking to the fake Binance: each closed candle of a watched
pair is published once, in order, only after its close and the grace period; history is never replayed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fakes.fake_binance import FakeBinance
from tests.support.http import AUTH, ctx_of
from utils.events import EventLog
from utils.market_data.watcher import DEFAULT_GRACE_MS, CandleWatcher, ClosedCandle

HOUR = 3_600_000


def test_closed_candles_are_published_once_in_order_after_their_close(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    ctx = ctx_of(online_client)
    t0 = fake_binance.now_ms  # on an hour boundary: the candle [t0 - 1h, t0) closes right now
    events = EventLog(lambda: fake_binance.now_ms)
    watcher = CandleWatcher(ctx.market, events, lambda: fake_binance.now_ms)
    watcher.watch([("BTCUSDT", "1h")])
    assert watcher.check() == 0, "watching starts now: no history"

    fake_binance.now_ms = t0 + DEFAULT_GRACE_MS - 1
    assert watcher.check() == 0, "within the grace period the closed candle is not asked for yet"
    fake_binance.now_ms = t0 + DEFAULT_GRACE_MS
    assert watcher.check() == 1
    fake_binance.now_ms = t0 + 3 * HOUR + DEFAULT_GRACE_MS  # three more closed
    assert watcher.check() == 3
    assert watcher.check() == 0, "each candle once"

    published = events.after(0)
    assert isinstance(published, list)
    candles = [e.payload for e in published]
    assert all(isinstance(c, ClosedCandle) for c in candles)
    assert [e.key for e in published] == ["BTCUSDT@1h"] * 4
    assert [c.open_time for c in candles if isinstance(c, ClosedCandle)] == [
        t0 - HOUR,
        t0,
        t0 + HOUR,
        t0 + 2 * HOUR,
    ]
    served = online_client.get(
        "/api/binance/candles",
        params={"symbol": "BTCUSDT", "interval": "1h", "start": t0 - HOUR, "limit": 4},
        headers=AUTH,
    ).json()["candles"]
    assert [
        {k: getattr(c, k) for k in ("open_time", "open", "high", "low", "close", "volume")}
        for c in candles
        if isinstance(c, ClosedCandle)
    ] == served


def test_a_pair_is_watched_while_any_stream_watches_it(
    online_client: TestClient, fake_binance: FakeBinance
) -> None:
    ctx = ctx_of(online_client)
    t0 = fake_binance.now_ms
    events = EventLog(lambda: fake_binance.now_ms)
    watcher = CandleWatcher(ctx.market, events, lambda: fake_binance.now_ms)
    pair = ("ETHUSDT", "1h")
    watcher.watch([pair])
    watcher.watch([pair])
    watcher.unwatch([pair])
    assert watcher.watched() == [pair]
    fake_binance.now_ms = t0 + HOUR + DEFAULT_GRACE_MS
    assert watcher.check() == 2
    watcher.unwatch([pair])
    assert watcher.watched() == []
    fake_binance.now_ms += 5 * HOUR
    assert watcher.check() == 0
    assert events.last_seq == 2
