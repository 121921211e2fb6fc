"""Strategy optimisation as a client sends and reads it: the request, and the stored result with its
trials, statistics (deflated Sharpe ratio, probability of backtest overfitting, neighbourhood heatmap),
verdict and walk-forward windows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from backtester.optimize.search import MAX_TRIALS, MAX_TRIALS_PER_ROUND, TRIALS_PER_ROUND
from backtester.optimize.service import Objective
from backtester.optimize.windows import MAX_WINDOWS
from routes.common import MetricsOut, Symbol
from routes.schemas.values import EpochMs, StrategyRefIn, source_field
from strategy_engine.spec import Tunable
from utils.intervals import Interval
from utils.market_data.candles import DataSource

Number = StrictInt | StrictFloat
VerdictLevel = Literal["credible", "doubtful", "likely_overfit"]


# The request's own fields are typed strictly and unknown keys refused: "5" for n_trials or true for a
# window's length is a mistake, and a misspelt constraint (min_tradez) would silently turn it off.
_STRICT = ConfigDict(extra="forbid", strict=True)


class ConstraintsIn(BaseModel):
    model_config = _STRICT

    min_trades: int = Field(
        default=0, ge=0, le=1_000_000, description="Trials with fewer closed trades are infeasible."
    )
    max_drawdown: float | None = Field(
        default=None, gt=0, le=1, description="Trials whose max drawdown is deeper than this are infeasible."
    )


class WalkForwardIn(BaseModel):
    model_config = _STRICT

    mode: Literal["rolling", "anchored"] = Field(
        default="rolling", description="rolling: in-sample windows of equal length; anchored: all from bar 0."
    )
    windows: int = Field(default=4, ge=1, le=MAX_WINDOWS)
    in_sample: int | float | None = Field(
        default=None, description="Bars (an integer) or a fraction of all bars; default: as long as fits."
    )
    out_of_sample: int | float | None = Field(default=None, description="Bars or a fraction of all bars.")
    gap: int = Field(
        default=0, ge=0, description="Bars left out between each in-sample and out-of-sample window."
    )


class OptimizeBody(BaseModel):
    symbol: Symbol
    interval: Interval = "1h"
    strategy: StrategyRefIn = Field(
        description="A built-in name (with `space`), a saved strategy's id, or an inline spec; a JSON "
        "strategy's own `parameters` are the search space."
    )
    params: dict[str, Number] = Field(
        default_factory=dict, max_length=32, description="A built-in's fixed parameters."
    )
    space: dict[str, Tunable] | None = Field(
        default=None,
        max_length=8,
        description="A built-in's tunable parameters, in the spec's format: int/float with low, high, step, "
        "or choice.",
    )
    start: int | str | None = Field(default=None, description="Epoch ms or ISO-8601; default: all stored.")
    end: int | str | None = Field(default=None, description="Epoch ms or ISO-8601; default: now.")
    objective: Objective = Field(
        default="sharpe", description="The metric to optimise (max_drawdown is minimised)."
    )
    n_trials: int = Field(default=100, ge=1, le=MAX_TRIALS, description="Per walk-forward window.")
    sampler: Literal["tpe", "grid"] = "tpe"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    trials_per_round: int = Field(
        default=TRIALS_PER_ROUND,
        ge=1,
        le=MAX_TRIALS_PER_ROUND,
        description="Trials asked per round and run at once (TPE learns between rounds). It, not the number "
        "of workers, decides the trials a seed gives: more keeps more workers busy.",
    )
    constraints: ConstraintsIn = Field(default_factory=ConstraintsIn)
    walk_forward: WalkForwardIn | None = None
    initial_capital: float = Field(default=10_000.0, gt=0, le=1e12)
    fee_rate: float = Field(default=0.001, ge=0, lt=1)
    slippage_bps: float = Field(default=0.0, ge=0, lt=10_000)

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTCUSDT",
                    "interval": "1h",
                    "strategy": "sma_crossover",
                    "space": {
                        "fast": {"type": "int", "low": 5, "high": 50, "step": 5},
                        "slow": {"type": "int", "low": 60, "high": 200, "step": 20},
                    },
                    "objective": "sharpe",
                    "n_trials": 50,
                    "constraints": {"min_trades": 10},
                    "walk_forward": {"mode": "rolling", "windows": 4},
                }
            ]
        },
    )


class TrialOut(BaseModel):
    number: int
    values: dict[str, int | float] = Field(description="The parameter values of this trial.")
    objective: float | None = Field(description="The objective's value; null when undefined (e.g. no trade).")
    feasible: bool = Field(description="Defined and within the constraints.")
    n_trades: int | None
    error: str | None = Field(description="Why the strategy refused these values, if it did.")


class WinnerOut(TrialOut):
    metrics: MetricsOut | None


class SpreadOut(BaseModel):
    count: int
    n_undefined: int
    best: float | None
    worst: float | None
    q1: float | None
    median: float | None
    q3: float | None
    mean: float | None
    std: float | None


class DeflatedSharpeOut(BaseModel):
    dsr: float | None = Field(
        description="Probability that the winner's true Sharpe ratio beats the best of N luck."
    )
    psr: float | None
    sharpe_per_bar: float | None
    expected_max_sharpe: float | None = Field(
        description="Per bar: what the best of the trials reaches by luck."
    )
    n_trials: float
    n_obs: int
    skewness: float | None
    kurtosis: float | None
    reason: str | None


class PBOOut(BaseModel):
    pbo: float = Field(
        description="Share of in-sample/out-of-sample splits where the winner is below the median."
    )
    n_combinations: int
    n_blocks: int
    prob_oos_loss: float | None
    degradation_slope: float | None


class NeighbourhoodOut(BaseModel):
    """The objective around the winner, as a heatmap: z[row for y][column for x], null where not run."""

    x_param: str
    y_param: str | None
    x_values: list[float]
    y_values: list[float | None]
    z: list[list[float | None]]
    winner_metric: float | None
    mean_ratio: float | None
    min_ratio: float | None
    shape: Literal["plateau", "spike", "undetermined"]


class StatisticsOut(BaseModel):
    spread: SpreadOut
    deflated_sharpe: DeflatedSharpeOut | None
    pbo: PBOOut | None
    pbo_unavailable: str | None
    neighbourhood: NeighbourhoodOut | None


class VerdictOut(BaseModel):
    level: VerdictLevel
    reasons: list[str]


class CurvePointOut(BaseModel):
    time: EpochMs
    equity: float
    drawdown: float


class SpanOut(BaseModel):
    start_time: EpochMs
    end_time: EpochMs
    bars: int


class WindowOut(BaseModel):
    index: int
    in_sample: SpanOut
    out_of_sample: SpanOut
    trials: int
    winner: WinnerOut | None
    oos_metrics: MetricsOut | None
    statistics: StatisticsOut
    verdict: VerdictOut


class ParamStabilityOut(BaseModel):
    winners: list[int | float]
    distinct: int
    relative_spread: float | None = Field(description="Std of the winners / the parameter's range.")


class StabilityOut(BaseModel):
    parameters: dict[str, ParamStabilityOut]
    modal_share: float | None = Field(description="Share of windows whose winner is the most common one.")
    stable: bool


class StitchedMetricsOut(BaseModel):
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    max_drawdown_duration: int | None
    calmar: float | None
    n_trades: int
    buy_and_hold_return: float | None
    final_equity: float


class WalkForwardOut(BaseModel):
    mode: Literal["rolling", "anchored"]
    windows: list[WindowOut]
    oos_metrics: StitchedMetricsOut | None = Field(description="Of the stitched out-of-sample curve.")
    oos_sharpe_per_bar: float | None
    stability: StabilityOut


class OptimizationOut(BaseModel):
    id: str
    job_id: str
    created_at: EpochMs
    symbol: str
    interval: Interval
    strategy: str
    strategy_kind: Literal["builtin", "saved", "inline"]
    strategy_id: int | None
    strategy_version: int | None
    kind: Literal["search", "walk_forward"]
    objective: Objective
    direction: Literal["maximize", "minimize"]
    n_trials: int
    n_bars: int
    start_time: EpochMs
    end_time: EpochMs
    source: DataSource = source_field()
    winner: WinnerOut | None = Field(description="In walk-forward: the last window's winner (to trade now).")
    trials: list[TrialOut] = Field(description="Every trial; in walk-forward, the last window's.")
    statistics: StatisticsOut | None = Field(
        description="The search's; in walk-forward, the last window's (each window has its own)."
    )
    verdict: VerdictOut
    equity_curve: list[CurvePointOut] | None = Field(
        description="The winner's equity over all bars; in walk-forward, the stitched out-of-sample curve."
    )
    walk_forward: WalkForwardOut | None


class OptimizationSummaryOut(BaseModel):
    id: str
    job_id: str
    created_at: EpochMs
    symbol: str
    interval: Interval
    strategy: str
    kind: Literal["search", "walk_forward"]
    n_trials: int
    verdict: VerdictLevel


class OptimizationList(BaseModel):
    total: int
    limit: int
    offset: int
    optimizations: list[OptimizationSummaryOut]
