"""The report renderer's pieces without a browser: downsampling keeps every extreme (table-driven), merged
candles are the longer interval's candles, and a page is one self-contained file that says when it
downsampled, carries its own policy and cannot be broken out of by its text."""

from __future__ import annotations

import base64
import gzip
import html
import re
from pathlib import Path

import numpy as np
import plotly
import pytest

from utils.reports.document import Bars, Candles, Chart, Column, Line, Markers, Panel, Report, Section, Table
from utils.reports.downsample import bar_buckets, bucket_size, event_indices, minmax_indices, ohlc_buckets
from utils.reports.render import CSP, Limits, figure_json, render_html

RNG = np.random.default_rng(3)
WALK = np.cumsum(RNG.normal(0, 1, 100_003))
SPIKE = np.zeros(10_000)
SPIKE[4_321] = -50.0  # a one-bar crash: a drawdown's bottom
SPIKE[7_777] = 30.0
WITH_NAN = np.where(np.arange(5_000) % 1_000 < 300, np.nan, np.sin(np.arange(5_000) / 50.0))


@pytest.mark.parametrize(
    ("name", "values", "buckets"),
    [
        ("random walk", WALK, 2_000),
        ("one-bar spikes", SPIKE, 100),
        ("fewer points than buckets", WALK[:50], 2_000),
        ("two buckets", WALK[:1_001], 2),
        ("one bucket", WALK[:999], 1),
        ("NaN stretches", WITH_NAN, 40),
    ],
)
def test_minmax_keeps_every_buckets_extremes_and_both_ends(
    name: str, values: np.ndarray, buckets: int
) -> None:
    idx = minmax_indices(values, buckets)
    n = values.shape[0]
    size = bucket_size(n, buckets)
    assert idx[0] == 0 and idx[-1] == n - 1, name
    assert np.all(np.diff(idx) > 0), "positions ascending, none twice"
    assert len(idx) <= 2 * min(n, buckets) + 2
    kept = values[idx]
    assert np.nanmin(kept) == np.nanmin(values) and np.nanmax(kept) == np.nanmax(values)
    for start in range(0, n, size):
        block = values[start : start + size]
        inside = kept[(idx >= start) & (idx < start + size)]
        if np.isfinite(block).any():
            assert np.nanmin(inside) == np.nanmin(block) and np.nanmax(inside) == np.nanmax(block)
        else:
            assert inside.size >= 1 and np.isnan(inside).all(), "an all-NaN stretch keeps its break"


def test_a_drawdowns_bottom_survives_heavy_downsampling() -> None:
    equity = 10_000 * np.exp(np.cumsum(RNG.normal(0, 0.001, 1_000_000)))
    equity[654_321] = equity[654_320] * 0.5  # a one-bar halving
    drawdown = 1 - equity / np.maximum.accumulate(equity)
    idx = minmax_indices(-drawdown, 2_000)
    assert 654_321 in idx and len(idx) <= 4_002
    assert drawdown[idx].max() == drawdown.max()


@pytest.mark.parametrize(("n", "buckets"), [(10, 3), (1_000, 7), (12, 12), (5, 100)])
def test_merged_candles_are_the_longer_intervals_candles(n: int, buckets: int) -> None:
    t = np.arange(n, dtype=np.int64) * 60_000
    close = 100 + np.cumsum(RNG.normal(0, 1, n))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) + 1, np.minimum(open_, close) - 1
    x, o, h, lo, c, size = ohlc_buckets(t, open_, high, low, close, buckets)
    assert size == bucket_size(n, buckets) and len(x) == -(-n // size) <= buckets
    for k, start in enumerate(range(0, n, size)):
        stop = min(start + size, n)
        assert x[k] == t[start] and o[k] == open_[start] and c[k] == close[stop - 1]
        assert h[k] == high[start:stop].max() and lo[k] == low[start:stop].min()
    volume = RNG.uniform(1, 2, n)
    bx, summed, _starts, _ = bar_buckets(t, volume, buckets, "sum")
    assert np.array_equal(bx, x) and np.isclose(summed.sum(), volume.sum())
    _, largest, _, _ = bar_buckets(t, volume, buckets, "max")
    assert largest.max() == volume.max()


@pytest.mark.parametrize(
    ("n", "most", "expect_all"),
    [(10, 500, True), (500, 500, True), (27_480, 500, False), (3_000, 10, False)],
)
def test_events_keep_each_stretchs_lowest_and_highest(n: int, most: int, expect_all: bool) -> None:
    x = np.sort(RNG.uniform(0, 1e9, n))
    y = RNG.normal(0, 1, n)
    idx = event_indices(x, y, most)
    assert len(idx) <= max(most, n if expect_all else most)
    assert (len(idx) == n) is expect_all
    assert y.argmin() in idx and y.argmax() in idx
    assert np.all(np.diff(idx) > 0)


def _report(n: int, title: str = "A report") -> Report:
    t = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    close = 100 + np.cumsum(RNG.normal(0, 0.1, n))
    chart = Chart(
        "price",
        "Price",
        (
            Panel(
                (
                    Candles("X", t, close, close + 1, close - 1, close),
                    Line("close", t, close),
                    Markers("entry", t[::7], close[::7], tuple("e" for _ in t[::7]), "triangle-up"),
                ),
            ),
            Panel((Bars("volume", t, np.ones(n), up=np.ones(n, dtype=bool)),)),
        ),
    )
    table = Table("rows", "Rows", (Column("a"), Column("b", numeric=True)), (("<b>x</b>", "1"),))
    return Report("backtest", "id1", title, "sub", (Section("S", (chart, table)),))


def test_a_page_is_self_contained_with_its_own_policy_and_the_library_once() -> None:
    page = render_html(_report(100))
    assert page.count('id="plotly-gz"') == 1
    assert f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">' in page
    assert "default-src 'none'" in CSP and "connect-src" not in CSP  # default-src 'none' covers fetches
    refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert refs and all(ref.startswith("#section-") or ref == "data:," for ref in refs), refs
    packed = re.search(r'id="plotly-gz">([^<]+)<', page)
    assert packed is not None
    library = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert gzip.decompress(base64.b64decode(packed.group(1))) == library.read_bytes()
    assert '<figure class="chart" id="chart-price" data-chart="price" data-downsampled="false">' in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # table cells are text, never markup


def test_text_cannot_close_the_script_that_holds_a_figure() -> None:
    page = render_html(_report(10, title="</script><script>alert(1)</script>"))
    assert "<script>alert(1)" not in page
    assert page.count("</script>") == page.count("<script")


def test_a_page_says_when_and_how_it_downsampled() -> None:
    limits = Limits(candles=50, line_buckets=50, markers=20)
    small = render_html(_report(40), limits)
    assert 'data-downsampled="false"' in small and "Downsampled" not in small
    large = render_html(_report(5_000), limits)
    assert 'data-downsampled="true"' in large
    assert "Candles X: 5,000 drawn as 50 (each merges up to 100" in large
    assert "close: 5,000 points drawn as" in large and "entry: 20 of 715" in large
    figure = figure_json(_report(5_000).sections[0].blocks[0], limits)  # type: ignore[arg-type]
    candles, line, markers, volume = figure["data"]
    assert candles["type"] == "candlestick" and line["type"] == "scatter" and volume["type"] == "bar"
    assert len(markers["text"]) == 20 and markers["x"]["dtype"] == "f8"  # times as a typed array


def test_chart_and_table_keys_are_unique_in_a_report() -> None:
    chart = Chart("same", "A", (Panel((Line("l", np.arange(3), np.arange(3)),)),))
    with pytest.raises(ValueError, match="unique"):
        Report("backtest", "x", "t", "s", (Section("S", (chart, chart)),))
