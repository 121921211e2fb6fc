"""Walk-forward windows (backtester/optimize/windows.py): the layout rules checked over a table of
configurations, one layout worked out by hand, and the impossible requests."""

from __future__ import annotations

import itertools
import math

import pytest

from backtester.optimize.windows import MAX_WINDOWS, Window, walk_forward_windows

# (n_bars, n_windows, mode, in_sample, out_of_sample, gap)
CONFIGS = [
    (100, 3, "rolling", None, None, 0),
    (100, 3, "anchored", None, None, 0),
    (100, 3, "rolling", None, None, 2),
    (101, 4, "anchored", None, None, 5),
    (1000, 5, "rolling", 300, None, 0),
    (1000, 5, "anchored", 300, None, 10),
    (1000, 5, "rolling", None, 100, 3),
    (1000, 5, "anchored", None, 100, 0),
    (1000, 7, "rolling", 250, 90, 1),  # 1000 - 250 - 1 - 7·90 = 119 bars unused at the start
    (1000, 7, "anchored", 250, 90, 1),  # ... which the first anchored in-sample takes
    (1000, 4, "rolling", 0.5, 0.1, 0),
    (997, 6, "anchored", 0.3, None, 4),
    (2, 1, "rolling", None, None, 0),
    (60, MAX_WINDOWS, "rolling", 10, 1, 0),
    (10_000, 1, "anchored", None, 0.25, 24),
]


def _bars(length: int | float | None, n_bars: int) -> int | None:
    if length is None:
        return None
    return length if isinstance(length, int) else math.floor(length * n_bars)


@pytest.mark.parametrize(("n_bars", "n_windows", "mode", "in_sample", "out_of_sample", "gap"), CONFIGS)
def test_window_layout_rules(n_bars, n_windows, mode, in_sample, out_of_sample, gap) -> None:
    ws = walk_forward_windows(
        n_bars, n_windows, mode=mode, in_sample=in_sample, out_of_sample=out_of_sample, gap=gap
    )
    assert len(ws) == n_windows
    assert [w.index for w in ws] == list(range(n_windows))
    for w in ws:
        assert isinstance(w, Window)
        assert 0 <= w.is_start < w.is_end  # at least one in-sample bar
        assert w.oos_start < w.oos_end <= n_bars  # at least one out-of-sample bar
        assert w.oos_start - w.is_end == w.gap == gap  # the purge, and no overlap with its own OOS
    # OOS windows: equal, adjacent, chronological, ending at the last bar.
    assert ws[-1].oos_end == n_bars
    assert all(a.oos_end == b.oos_start for a, b in itertools.pairwise(ws))
    assert len({w.oos_bars for w in ws}) == 1
    # Requested lengths are honoured.
    oos = _bars(out_of_sample, n_bars)
    if oos is not None:
        assert ws[0].oos_bars == oos
    is_len = _bars(in_sample, n_bars)
    if mode == "anchored":
        assert all(w.is_start == 0 for w in ws)
        assert all(a.is_end < b.is_end for a, b in itertools.pairwise(ws))  # expanding
        if is_len is not None:
            assert ws[0].is_bars >= is_len
    else:
        assert len({w.is_bars for w in ws}) == 1  # rolling: constant length
        assert all(a.is_start < b.is_start for a, b in itertools.pairwise(ws))
        if is_len is not None:
            assert ws[0].is_bars == is_len
    # With both lengths left to the splitter, the first window starts at bar 0: every bar is used.
    if in_sample is None and out_of_sample is None:
        assert ws[0].is_start == 0
        assert ws[0].is_bars + gap + n_windows * ws[0].oos_bars == n_bars
        assert ws[0].oos_bars == (n_bars - gap) // (n_windows + 1)


def test_window_layout_by_hand() -> None:
    # 100 bars, 3 windows, gap 2: OOS = (100 - 2) // 4 = 24 bars, the OOS windows are [28, 52), [52, 76),
    # [76, 100); IS = 100 - 2 - 3·24 = 26 bars ending 2 bars before each OOS start.
    assert walk_forward_windows(100, 3, gap=2) == (
        Window(0, 0, 26, 28, 52),
        Window(1, 24, 50, 52, 76),
        Window(2, 48, 74, 76, 100),
    )
    # Anchored, IS 0.5 of 100 = 50 bars, gap 2: OOS = (100 - 50 - 2) // 3 = 16 bars from bar 52.
    assert walk_forward_windows(100, 3, mode="anchored", in_sample=0.5, gap=2) == (
        Window(0, 0, 50, 52, 68),
        Window(1, 0, 66, 68, 84),
        Window(2, 0, 82, 84, 100),
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 1), {}, "n_bars must be an integer >= 2"),
        ((100.0, 2), {}, "n_bars must be an integer"),
        ((100, 0), {}, "n_windows must be an integer >= 1"),
        ((100, True), {}, "n_windows must be an integer"),
        ((10_000, MAX_WINDOWS + 1), {}, f"at most {MAX_WINDOWS}"),
        ((100, 2), {"gap": -1}, "gap must be an integer >= 0"),
        ((100, 2), {"mode": "expanding"}, "mode must be"),
        ((100, 2), {"in_sample": 0}, "at least 1 bar"),
        ((100, 2), {"in_sample": 1.0}, "float in \\(0, 1\\)"),
        ((100, 2), {"out_of_sample": -0.2}, "float in \\(0, 1\\)"),
        ((100, 2), {"out_of_sample": math.nan}, "float in \\(0, 1\\)"),
        ((100, 2), {"in_sample": True}, "number of bars or a fraction"),
        ((100, 2), {"in_sample": 0.001}, "too few bars"),  # floor(0.1) = 0 bars
        ((10, 5), {"in_sample": 6}, "too few bars"),  # leaves 4 bars for 5 OOS windows
        ((10, 5), {"out_of_sample": 2}, "too few bars"),  # leaves no in-sample
        ((100, 2), {"in_sample": 60, "out_of_sample": 20, "gap": 1}, "need at least 101 bars"),
        ((5, 3), {"gap": 3}, "too few bars"),
    ],
)
def test_impossible_requests_are_rejected(args, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward_windows(*args, **kwargs)
