"""What a trained model reports: its headline out-of-sample numbers (the agents' and the replay's)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from routes.schemas.values import EpochMs


class ModelMetricsOut(BaseModel):
    """The chosen candidate's pooled out-of-sample classification metrics, and its OOS signals
    traded after fees against buy and hold on the same bars (``backtest_*``)."""

    oos_accuracy: float | None = None
    oos_balanced_accuracy: float | None = None
    oos_auc: float | None = Field(default=None, description="None when the OOS rows hold one class only.")
    oos_log_loss: float | None = None
    oos_brier: float | None = None
    baseline_accuracy: float | None = Field(
        default=None, description="Each fold predicting its training majority class."
    )
    n_oos: int | None = None
    oos_up_rate: float | None = None
    backtest_total_return: float | None = None
    backtest_sharpe: float | None = None
    backtest_max_drawdown: float | None = None
    backtest_n_trades: int | None = None
    backtest_buy_and_hold_return: float | None = None
    backtest_exposure: float | None = None
    backtest_n_bars: int | None = None
    backtest_start_open_time: EpochMs | None = None
    backtest_end_open_time: EpochMs | None = None
    backtest_long_threshold: float | None = None
    backtest_fee_rate: float | None = None
