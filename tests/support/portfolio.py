"""A paper portfolio of cash alone, at a given equity: for the tests of what reads only a portfolio's equity
and epoch (the daily loss limit, the equity the performance tracker records)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from mother_ai.orders import Portfolio

INITIAL = Decimal(10_000)


def cash_portfolio(equity: str, epoch: int = 1, when: datetime | None = None) -> Portfolio:
    """All in USDT, `equity` of it, the difference from 10,000 realised."""
    value = Decimal(equity)
    return Portfolio(
        mode="paper",
        quote_asset="USDT",
        balances={"USDT": value},
        positions=[],
        equity=value,
        realised_pnl=value - INITIAL,
        unrealised_pnl=Decimal(0),
        initial_balance=INITIAL,
        epoch=epoch,
        halted=False,
        stale=False,
        as_of=when or datetime(2025, 3, 2, tzinfo=UTC),
    )
