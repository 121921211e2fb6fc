"""backtester/optimize/search.py on the real local compute backend (spawned worker processes) and Optuna's
RDB storage on a real SQLite file: luck is flagged on a random walk, a planted trend survives walk-forward
out of sample, studies resume, constraints hold, and out-of-sample scoring never sees the future."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backtester.optimize import search as S
from backtester.optimize import service
from backtester.optimize import walk_forward as W
from backtester.optimize.windows import walk_forward_windows
from backtester.runner import BacktestConfig
from strategy_engine.spec import IntTunable
from tests.support.candles import make_candles, random_candles
from utils.compute import Compute, make_compute

SPACE = {
    "fast": IntTunable(type="int", low=4, high=40, step=4),
    "slow": IntTunable(type="int", low=50, high=150, step=10),
}


@pytest.fixture(scope="module")
def compute() -> Iterator[Compute]:
    backend = make_compute(None, 2)
    yield backend
    backend.close()


class Recording:
    """The real compute backend, remembering the items of each map call."""

    def __init__(self, inner: Compute) -> None:
        self.inner = inner
        self.calls: list[list[S.TrialInput]] = []

    @property
    def workers(self) -> int:
        return self.inner.workers

    def map(self, fn: Any, items: Sequence[Any], shared: Any, **options: Any) -> list[Any]:
        self.calls.append(list(items))
        return self.inner.map(fn, items, shared, **options)


def _storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _search(
    compute: S.Mapper, shared: S.Shared, tmp_path: Path, name: str, **overrides: object
) -> S.SearchResult:
    options: dict[str, object] = {
        "start": 0,
        "end": len(shared.candles),
        "n_trials": 40,
        "sampler": "tpe",
        "direction": "maximize",
        "constraints": S.Constraints(min_trades=5),
        "storage": _storage(tmp_path),
        "study_name": name,
        "seed": 7,
    }
    options.update(overrides)
    return S.search(compute, shared, SPACE, **options)  # type: ignore[arg-type]


def test_on_a_random_walk_the_best_trial_looks_good_yet_is_flagged(compute: Compute, tmp_path: Path) -> None:
    candles = random_candles(6_000, seed=11)  # no drift: any edge found is luck
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(fee_rate=0.0), "sharpe")
    result = _search(compute, shared, tmp_path, "walk", n_trials=60)
    assert result.winner is not None
    assert result.winner.objective is not None and result.winner.objective > 0.5, "in sample it looks good"
    scored = S.evaluate_keeping_equity(shared, S.TrialInput(result.winner.values, 0, len(candles)))
    assert scored.equity is not None
    returns = np.expm1(S._log_returns(scored.equity, 10_000.0))
    summary = S.search_stats(result, returns, [], SPACE)
    assert summary.dsr is not None and summary.dsr.dsr is not None and summary.dsr.dsr < 0.95
    assert summary.pbo is not None and summary.pbo.pbo >= 0.5
    assert summary.verdict.level != "credible"
    assert summary.spread.count == 60 and summary.spread.best == pytest.approx(result.winner.objective)


def test_a_planted_trend_keeps_a_positive_out_of_sample_result(compute: Compute, tmp_path: Path) -> None:
    # A steady uptrend with noise: a trend follower should earn out of sample in every window.
    candles = random_candles(6_000, seed=5, drift=0.0015, vol=0.01)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(fee_rate=0.0005), "sharpe")
    windows = walk_forward_windows(len(candles), 3, mode="rolling")
    results = W.run_windows(
        compute,
        shared,
        shared.recipe,
        SPACE,
        windows,
        study_prefix="trend",
        n_trials=16,
        sampler="tpe",
        direction="maximize",
        constraints=S.Constraints(min_trades=5),
        storage=_storage(tmp_path),
        seed=7,
    )
    assert all(w.search.winner is not None for w in results)
    equity, times, metrics = W.stitch(shared, results)
    assert metrics is not None and metrics["total_return"] > 0 and metrics["sharpe"] > 0
    assert len(equity) == sum(w.oos_bars for w in windows) and np.all(np.diff(times) > 0)
    assert all((w.oos.metrics or {})["total_return"] > 0 for w in results if w.oos is not None)


def test_out_of_sample_scoring_never_reads_past_its_window(compute: Compute, tmp_path: Path) -> None:
    """Changing every bar after the out-of-sample window changes nothing of its score; changing the bars
    before it (the lead the indicators read) may."""
    base = random_candles(3_000, seed=2, drift=0.0005)
    close = base.close.copy()
    close[2_000:] *= np.linspace(1.0, 3.0, 1_000)  # a different future
    future = make_candles(close)
    values: dict[str, float] = {"fast": 8, "slow": 60}
    item = S.TrialInput(values, 1_500, 2_000, lead=61)
    a = S.evaluate_keeping_equity(
        S.Shared(base, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe"), item
    )
    b = S.evaluate_keeping_equity(
        S.Shared(future, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe"), item
    )
    assert a.equity is not None and b.equity is not None and len(a.equity) == 500
    assert np.array_equal(a.equity, b.equity) and a.metrics == b.metrics


def test_an_interrupted_study_resumes_from_the_trials_already_told(compute: Compute, tmp_path: Path) -> None:
    import optuna

    candles = random_candles(3_000, seed=3)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe")
    first = _search(compute, shared, tmp_path, "resume", n_trials=8)
    # A process died holding a trial it had asked for: it must not count, nor block the study.
    study = optuna.load_study(study_name="resume", storage=_storage(tmp_path))
    study.ask()
    again = _search(compute, shared, tmp_path, "resume", n_trials=20)
    assert len(again.trials) == 20
    assert [t.values for t in again.trials[:8]] == [t.values for t in first.trials]
    assert [t.objective for t in again.trials[:8]] == [t.objective for t in first.trials], (
        "re-scored the same"
    )
    states = [t.state for t in optuna.load_study(study_name="resume", storage=_storage(tmp_path)).trials]
    assert states.count(optuna.trial.TrialState.RUNNING) == 0
    assert states.count(optuna.trial.TrialState.FAIL) >= 1, "the abandoned trial was failed"


def test_searches_run_together_find_what_each_finds_alone(compute: Compute, tmp_path: Path) -> None:
    """Walk-forward windows share the workers (one map per round over every study); each study must
    still see its own asks and tells in order, so the results are those of searching it alone. One of
    the studies is resumed, so it takes a re-scoring step the others do not."""
    candles = random_candles(4_000, seed=5)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe")
    slices = [(0, 2_000), (1_000, 3_000), (2_000, 4_000)]
    for folder in ("alone", "together"):
        (tmp_path / folder).mkdir()
        _search(compute, shared, tmp_path / folder, "w1", start=1_000, end=3_000, n_trials=5)
    alone = [
        _search(compute, shared, tmp_path / "alone", f"w{i}", start=a, end=b, n_trials=12)
        for i, (a, b) in enumerate(slices)
    ]
    seen = Recording(compute)
    together = S.search_many(
        seen,
        shared,
        SPACE,
        [S.Slice(a, b, f"w{i}") for i, (a, b) in enumerate(slices)],
        n_trials=12,
        sampler="tpe",
        direction="maximize",
        constraints=S.Constraints(min_trades=5),
        storage=_storage(tmp_path / "together"),
        seed=7,
    )
    for one, other in zip(alone, together, strict=True):
        assert [(t.values, t.objective) for t in one.trials] == [
            (t.values, t.objective) for t in other.trials
        ]
        assert one.winner == other.winner
    assert all(len(r.trials) == 12 for r in together)
    # Every round evaluates the three studies' trials in one map: the resumed one's re-scoring first.
    slices_of = [sorted({(item.start, item.end) for item in items}) for items in seen.calls]
    assert slices_of[0] == sorted(slices) and len(seen.calls[0]) == 2 * S.TRIALS_PER_ROUND + 5
    assert all(s == sorted(slices) for s in slices_of[:2])
    assert [t.objective for t in alone[0].trials] != [t.objective for t in alone[2].trials], "slices differ"


class Serial:
    """Trials evaluated in this process, one after the other, under any claimed number of workers."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.calls: list[int] = []

    def map(self, fn: Any, items: Sequence[Any], shared: Any, **_options: Any) -> list[Any]:
        self.calls.append(len(items))
        return [fn(shared, item) for item in items]


@pytest.mark.parametrize("per_round", [S.TRIALS_PER_ROUND, 3])
def test_a_search_gives_the_same_trials_on_any_number_of_workers(
    compute: Compute, tmp_path: Path, per_round: int
) -> None:
    candles = random_candles(3_000, seed=8)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe")
    runs = {}
    mappers: list[tuple[str, S.Mapper]] = [("pool of 2", compute), ("1", Serial(1)), ("7", Serial(7))]
    for label, mapper in mappers:
        (tmp_path / label).mkdir()
        runs[label] = _search(
            mapper,
            shared,
            tmp_path / label,
            "same",
            n_trials=20,
            trials_per_round=per_round,
        )
        if isinstance(mapper, Serial):
            full, rest = divmod(20, per_round)
            assert mapper.calls == [per_round] * full + ([rest] if rest else []), (
                "rounds of the request's size"
            )
    first = [(t.values, t.objective) for t in runs["pool of 2"].trials]
    assert len(first) == 20 and len({str(v) for v, _ in first}) > 1
    for label in ("1", "7"):
        assert [(t.values, t.objective) for t in runs[label].trials] == first, label
        assert runs[label].winner == runs["pool of 2"].winner


def test_a_repeated_trial_counts_once_in_the_deflated_sharpe_ratio_and_pbo() -> None:
    rng = np.random.default_rng(3)
    returns = {n: rng.normal(0.0005 * n, 0.01, 400) for n in range(4)}

    def trial(number: int, fast: int) -> S.Trial:
        r = returns[fast]
        return S.Trial(
            number, {"fast": fast}, float(r.mean() / r.std()), {}, True, float(r.mean() / r.std()), None
        )

    once = [trial(n, n) for n in range(4)]
    again = [*once, trial(4, 3), trial(5, 3), trial(6, 1)]  # TPE asking known values again
    space = {"fast": IntTunable(type="int", low=0, high=3)}
    summaries = [
        S.search_stats(
            S.SearchResult(
                trials, trials[3], {t.number: np.log1p(returns[int(t.values["fast"])]) for t in trials}
            ),
            returns[3],
            [],
            space,
        )
        for trials in (once, again)
    ]
    first, repeated = summaries
    assert (
        first.dsr is not None
        and repeated.dsr is not None
        and first.dsr.n_trials == repeated.dsr.n_trials == 4
    )
    assert repeated.dsr.dsr == first.dsr.dsr and repeated.pbo == first.pbo
    assert repeated.spread.count == 7, "the spread still describes every trial run"
    assert "best of 4 trials" in " ".join(repeated.verdict.reasons)


def test_the_winner_meets_the_constraints(compute: Compute, tmp_path: Path) -> None:
    candles = random_candles(3_000, seed=4)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "total_return")
    result = _search(
        compute, shared, tmp_path, "constrained", n_trials=24, constraints=S.Constraints(min_trades=30)
    )
    feasible = [t for t in result.trials if t.feasible]
    assert all((t.metrics or {})["n_trades"] >= 30 for t in feasible)
    assert any(not t.feasible for t in result.trials), "the constraint must bind to mean anything"
    if result.winner is not None:
        assert result.winner.feasible
        assert result.winner.objective == max(t.objective or -1e9 for t in feasible)


def test_a_grid_search_visits_every_combination_once(compute: Compute, tmp_path: Path) -> None:
    candles = random_candles(2_000, seed=6)
    shared = S.Shared(candles, S.Recipe(builtin="sma_crossover"), BacktestConfig(), "sharpe")
    small = {
        "fast": IntTunable(type="int", low=5, high=15, step=5),
        "slow": IntTunable(type="int", low=50, high=70, step=10),
    }
    result = S.search(
        compute,
        shared,
        small,
        start=0,
        end=len(candles),
        n_trials=9,
        sampler="grid",
        direction="maximize",
        constraints=S.Constraints(),
        storage=_storage(tmp_path),
        study_name="grid",
        seed=0,
    )
    combos = sorted((t.values["fast"], t.values["slow"]) for t in result.trials)
    assert combos == [(f, s) for f in (5, 10, 15) for s in (50, 60, 70)]


def test_neighbour_values_stay_inside_the_space() -> None:
    got = S.neighbour_values({"fast": 4, "slow": 100}, SPACE, ["fast", "slow"])
    assert sorted((v["fast"], v["slow"]) for v in got) == [
        (4, 90),
        (4, 110),
        (8, 90),
        (8, 100),
        (8, 110),
    ]


def test_objectives_and_directions_are_one_vocabulary() -> None:
    assert set(service.OBJECTIVES) >= {"sharpe", "max_drawdown", "final_equity"}
    request = service.OptimizeRequest(
        strategy="sma_crossover",
        symbol="BTCUSDT",
        interval="1h",
        start_ms=None,
        end_ms=None,
        objective="max_drawdown",
    )
    assert request.direction == "minimize"
    assert service.OptimizeRequest.from_dict(request.to_dict()) == request
