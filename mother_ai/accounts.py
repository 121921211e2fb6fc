"""Account records in the database: the write transaction every order runs in, the locked account,
balance and position rows of one mode, orders by client order id, and positions marked at current prices.

Why ``run_write`` looks the way it does: the in-process lock ``WriteLocks.orders`` serialises this
process's writers (threads queue on a lock instead of spinning on SQLite's busy handler); on SQLite the
transaction starts with ``BEGIN IMMEDIATE`` (``db.storage.transaction``), taking the write lock up front.
On PostgreSQL the mode's account row is read with ``SELECT ... FOR UPDATE`` first, serialising writers of
one mode across processes, and the balance and position rows are locked the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import TradeOrder, TradingAccount, TradingBalance, TradingPosition
from db.storage import transaction
from mother_ai.orders import (
    PENDING,
    OrderRequest,
    OrderResult,
    PositionView,
    check_mode,
    plain,
    position_view,
    price_decimal,
    stored_mode,
    stored_side,
)
from mother_ai.trade_log import TradeLog
from utils.errors import AppError
from utils.exchange import SymbolFilters
from utils.market_data.market import MarketData

log = logging.getLogger(__name__)
T = TypeVar("T")


def get_order(sessions: sessionmaker[Session], mode: str, client_order_id: str) -> OrderResult | None:
    check_mode(mode)
    with sessions() as session:
        row = find_order(session, mode, client_order_id)
        return order_result(row) if row is not None else None


def list_orders(
    sessions: sessionmaker[Session],
    mode: str,
    *,
    limit: int = 100,
    offset: int = 0,
    symbol: str | None = None,
    epoch: int | None = None,
    side: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    newest_first: bool = True,
) -> tuple[list[OrderResult], int]:
    """Orders of one mode (newest first unless told otherwise) with start_ms <= created <= end_ms,
    and how many match in total."""
    check_mode(mode)
    conditions = [TradeOrder.mode == mode]
    if symbol is not None:
        conditions.append(TradeOrder.symbol == symbol)
    if epoch is not None:
        conditions.append(TradeOrder.epoch == epoch)
    if side is not None:
        conditions.append(TradeOrder.side == side)
    if start_ms is not None:
        conditions.append(TradeOrder.created_at >= datetime.fromtimestamp(start_ms / 1000, tz=UTC))
    if end_ms is not None:
        conditions.append(TradeOrder.created_at <= datetime.fromtimestamp(end_ms / 1000, tz=UTC))
    order = TradeOrder.id.desc() if newest_first else TradeOrder.id.asc()
    with sessions() as session:
        rows = session.scalars(
            select(TradeOrder).where(*conditions).order_by(order).limit(limit).offset(offset)
        ).all()
        total = session.scalar(select(func.count()).select_from(TradeOrder).where(*conditions)) or 0
        return [order_result(row) for row in rows], int(total)


def run_write(
    sessions: sessionmaker[Session], lock: threading.Lock, work: Callable[[Session], T], attempts: int = 3
) -> T:
    """Run `work` in one write transaction (see the module docstring for why it looks like this).
    A UNIQUE violation means another process won a race; `work` re-reads and answers from it."""
    for attempt in range(1, attempts + 1):
        try:
            with lock, transaction(sessions) as session:
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
            log.info("write conflicted with a concurrent writer; retrying (attempt %d)", attempt)
    raise AssertionError("unreachable")


def lock_account(
    session: Session, mode: str, quote_asset: str, initial: Decimal | None, now: datetime
) -> TradingAccount:
    account = session.get(TradingAccount, mode, with_for_update=True)
    if account is None:
        account = TradingAccount(
            mode=mode,
            quote_asset=quote_asset,
            initial_balance=initial or Decimal(0),
            epoch=1,
            created_at=now,
        )
        session.add(account)
        if mode == "paper" and initial:
            session.add(TradingBalance(mode=mode, asset=quote_asset, amount=initial, updated_at=now))
        session.flush()
    return account


def lock_balances(
    session: Session, mode: str, assets: Iterable[str], now: datetime
) -> dict[str, TradingBalance]:
    wanted = list(dict.fromkeys(assets))
    rows = session.scalars(
        select(TradingBalance)
        .where(TradingBalance.mode == mode, TradingBalance.asset.in_(wanted))
        .with_for_update()
    ).all()
    found = {row.asset: row for row in rows}
    for asset in wanted:
        if asset not in found:
            # Not added to the session yet: a rejected order must not leave empty balance rows.
            found[asset] = TradingBalance(mode=mode, asset=asset, amount=Decimal(0), updated_at=now)
    return found


def lock_position(session: Session, mode: str, filters: SymbolFilters, now: datetime) -> TradingPosition:
    position = session.get(TradingPosition, (mode, filters.symbol), with_for_update=True)
    if position is None:
        zero = Decimal(0)
        position = TradingPosition(
            mode=mode,
            symbol=filters.symbol,
            base_asset=filters.base_asset,
            quote_asset=filters.quote_asset,
            quantity=zero,
            cost_basis=zero,
            avg_entry_price=zero,
            realised_pnl=zero,
            updated_at=now,
        )
        session.add(position)
    return position


def balance_rows(session: Session, mode: str) -> list[TradingBalance]:
    return list(
        session.scalars(
            select(TradingBalance).where(TradingBalance.mode == mode).order_by(TradingBalance.asset)
        )
    )


def position_rows(session: Session, mode: str) -> list[TradingPosition]:
    return list(
        session.scalars(
            select(TradingPosition).where(TradingPosition.mode == mode).order_by(TradingPosition.symbol)
        )
    )


def mark_position(market: MarketData, position: TradingPosition) -> PositionView:
    mark: Decimal | None = None
    source: str | None = None
    stale = False
    if position.quantity > 0:
        priced = price_or_none(market, position.symbol)
        if priced is None:
            stale = True
        else:
            mark, source, stale = priced
    return position_view(
        position.symbol, position.base_asset, position.quote_asset, position, mark, source, stale
    )


def price_or_none(market: MarketData, symbol: str) -> tuple[Decimal, str, bool] | None:
    try:
        answer = market.price(symbol)
    except AppError:
        return None
    return price_decimal(answer.price), answer.source, answer.stale


def find_order(session: Session, mode: str, client_order_id: str) -> TradeOrder | None:
    return session.scalar(
        select(TradeOrder).where(TradeOrder.mode == mode, TradeOrder.client_order_id == client_order_id)
    )


def delete_order(session: Session, order_id: int) -> None:
    session.execute(delete(TradeOrder).where(TradeOrder.id == order_id, TradeOrder.status == PENDING))


def order_row(mode: str, request: OrderRequest, epoch: int, now: datetime) -> TradeOrder:
    zero = Decimal(0)
    return TradeOrder(
        mode=mode,
        client_order_id=request.client_order_id,
        symbol=request.symbol,
        side=request.side,
        type="MARKET",
        status=PENDING,
        requested_quantity=request.quantity,
        requested_quote_amount=request.quote_amount,
        executed_quantity=zero,
        quote_quantity=zero,
        fee=zero,
        realised_pnl=zero,
        decision_id=request.decision_id,
        candle_open_time=request.candle_open_time,
        epoch=epoch,
        created_at=now,
        updated_at=now,
    )


def order_result(row: TradeOrder, replayed: bool = False) -> OrderResult:
    return OrderResult(
        id=row.id,
        mode=stored_mode(row.mode),
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=stored_side(row.side),
        type=row.type,
        status=row.status,
        requested_quantity=row.requested_quantity,
        requested_quote_amount=row.requested_quote_amount,
        executed_quantity=row.executed_quantity,
        price=row.price,
        quote_quantity=row.quote_quantity,
        fee=row.fee,
        fee_asset=row.fee_asset,
        realised_pnl=row.realised_pnl,
        reference_price=row.reference_price,
        price_source=row.price_source,
        reject_code=row.reject_code,
        reject_reason=row.reject_reason,
        exchange_order_id=row.exchange_order_id,
        decision_id=row.decision_id,
        epoch=row.epoch,
        created_at=row.created_at,
        updated_at=row.updated_at,
        replayed=replayed,
        candle_open_time=row.candle_open_time,
    )


def after_order(result: OrderResult, trade_log: TradeLog | None) -> None:
    log.info(
        "%s order %s: %s %s %s -> %s%s",
        result.mode,
        result.client_order_id,
        result.side,
        plain(result.executed_quantity or result.requested_quantity or Decimal(0)),
        result.symbol,
        result.status,
        f" ({result.reject_reason})" if result.reject_reason else "",
    )
    if trade_log is not None:
        try:
            trade_log.append_trade(result)
        except OSError:
            # The database row is the record; a full disk must not undo or hide a filled order.
            log.exception("could not append order %s to the trade log", result.client_order_id)
