"""Orders, portfolios and their words: what an executor is asked (``OrderRequest``), what it answers
(``OrderResult``), what an account holds (``Portfolio``, ``PositionView``), the ``Executor`` protocol, and the
decimal text every amount is printed in.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol, TypeGuard

from db.models import TRADING_MODES, utcnow
from utils.errors import InvalidInput
from utils.jsonsafe import fixed_point, json_safe
from utils.symbols import SYMBOL_PATTERN, is_symbol

_ASSET_STEP = Decimal("0.00000001")  # = fills.ASSET_STEP: Binance keeps 8 decimals per asset

Mode = Literal["paper", "live"]
Side = Literal["BUY", "SELL"]

CLIENT_ORDER_ID_PATTERN = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")  # Binance's newClientOrderId range

# Order statuses we write ourselves; live orders otherwise carry Binance's status verbatim.
PENDING, FILLED, REJECTED, UNKNOWN = "PENDING", "FILLED", "REJECTED", "UNKNOWN"


# --- requests and results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A MARKET order: `quantity` of base, or (buys only) `quote_amount` of quote to spend.

    `quote_amount` is the notional, like Binance's quoteOrderQty; the paper fee comes on top.
    Without a `client_order_id` one is generated; reuse an id to make a retry safe."""

    symbol: str
    side: Side
    quantity: Decimal | None = None
    quote_amount: Decimal | None = None
    client_order_id: str | None = None
    decision_id: str | None = None
    candle_open_time: int | None = None  # the last closed candle the deciding voters saw (epoch ms)

    def validated(self) -> OrderRequest:
        """A normalised copy with a client order id; InvalidInput naming the first bad field."""
        symbol = self.symbol.upper() if isinstance(self.symbol, str) else ""
        if not is_symbol(symbol):
            raise invalid_field("symbol", f"symbol must match {SYMBOL_PATTERN}.")
        side = self.side.upper() if isinstance(self.side, str) else ""
        if not is_side(side):
            raise invalid_field("side", "side must be BUY or SELL.")
        if (self.quantity is None) == (self.quote_amount is None):
            raise invalid_field("quantity", "Give exactly one of quantity and quote_amount.")
        if self.quote_amount is not None and side != "BUY":
            raise invalid_field("quote_amount", "quote_amount sizes buys only; sell a quantity.")
        quantity = positive_decimal(self.quantity, "quantity") if self.quantity is not None else None
        quote = positive_decimal(self.quote_amount, "quote_amount") if self.quote_amount is not None else None
        client_order_id = self.client_order_id or new_client_order_id()
        if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID_PATTERN.fullmatch(client_order_id):
            raise invalid_field(
                "client_order_id", f"client_order_id must match {CLIENT_ORDER_ID_PATTERN.pattern}."
            )
        if self.decision_id is not None and (
            not isinstance(self.decision_id, str) or len(self.decision_id) > 64
        ):
            raise invalid_field("decision_id", "decision_id must be a string of at most 64 characters.")
        candle = self.candle_open_time
        if candle is not None and (isinstance(candle, bool) or not isinstance(candle, int) or candle < 0):
            raise invalid_field("candle_open_time", "candle_open_time must be epoch milliseconds.")
        return OrderRequest(symbol, side, quantity, quote, client_order_id, self.decision_id, candle)


def new_client_order_id() -> str:
    return f"mai{uuid.uuid4().hex}"  # 35 characters, within Binance's 36


@dataclass(frozen=True, slots=True)
class OrderResult:
    """One stored order. `replayed` is True when `submit` returned an earlier order for its id."""

    id: int
    mode: Mode
    client_order_id: str
    symbol: str
    side: Side
    type: str
    status: str
    requested_quantity: Decimal | None
    requested_quote_amount: Decimal | None
    executed_quantity: Decimal
    price: Decimal | None
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str | None
    realised_pnl: Decimal
    reference_price: Decimal | None
    price_source: str | None
    reject_code: int | None
    reject_reason: str | None
    exchange_order_id: str | None
    decision_id: str | None
    epoch: int
    created_at: datetime
    updated_at: datetime
    replayed: bool = False
    candle_open_time: int | None = None

    @property
    def filled(self) -> bool:
        return self.executed_quantity > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as exact strings, times as ISO-8601."""
        return {key: jsonable(value) for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position marked at the current price. `avg_entry_price` is cost_basis / quantity, i.e.
    the break-even price including buy fees; unpriced positions are valued at cost (`stale`)."""

    symbol: str
    base_asset: str
    quote_asset: str
    quantity: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal
    realised_pnl: Decimal
    mark_price: Decimal | None
    market_value: Decimal
    unrealised_pnl: Decimal
    price_source: str | None
    stale: bool


@dataclass(frozen=True, slots=True)
class Portfolio:
    """Balances, positions (closed ones included, for their realised pnl) and equity of one mode.

    Paper equity = quote balance + market value of open positions, so
    equity == initial_balance + realised_pnl + unrealised_pnl exactly. Live equity = the Binance
    account valued in LIVE_QUOTE_ASSET; positions are only what this backend opened."""

    mode: Mode
    quote_asset: str
    balances: dict[str, Decimal]
    positions: list[PositionView]
    equity: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    initial_balance: Decimal | None
    epoch: int
    halted: bool
    stale: bool  # a price or (live) the account could not be refreshed
    unpriced_assets: list[str] = field(default_factory=list)
    as_of: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = jsonable(asdict(self))
        return data

    @classmethod
    def of(
        cls,
        mode: Mode,
        quote_asset: str,
        balances: dict[str, Decimal],
        positions: list[PositionView],
        equity: Decimal,
        *,
        initial_balance: Decimal | None,
        epoch: int,
        halted: bool,
        stale: bool,
        unpriced_assets: list[str] | None = None,
        as_of: datetime | None = None,
    ) -> Portfolio:
        """A portfolio whose pnl totals are its positions' (closed ones included)."""
        return cls(
            mode=mode,
            quote_asset=quote_asset,
            balances=balances,
            positions=positions,
            equity=equity,
            realised_pnl=sum((v.realised_pnl for v in positions), Decimal(0)),
            unrealised_pnl=sum((v.unrealised_pnl for v in positions), Decimal(0)),
            initial_balance=initial_balance,
            epoch=epoch,
            halted=halted,
            stale=stale,
            unpriced_assets=unpriced_assets or [],
            as_of=as_of or utcnow(),
        )


class PositionTotals(Protocol):
    """A long position's running totals (a ``TradingPosition`` row or the replay's own)."""

    quantity: Decimal
    cost_basis: Decimal
    avg_entry_price: Decimal
    realised_pnl: Decimal


def position_view(
    symbol: str,
    base_asset: str,
    quote_asset: str,
    totals: PositionTotals,
    mark: Decimal | None,
    source: str | None,
    stale: bool,
) -> PositionView:
    """The position marked at `mark` (8 decimals); unpriced, it is valued at cost."""
    value = (totals.quantity * mark).quantize(_ASSET_STEP) if mark is not None else totals.cost_basis
    return PositionView(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        quantity=totals.quantity,
        avg_entry_price=totals.avg_entry_price,
        cost_basis=totals.cost_basis,
        realised_pnl=totals.realised_pnl,
        mark_price=mark,
        market_value=value,
        unrealised_pnl=value - totals.cost_basis,
        price_source=source,
        stale=stale,
    )


@dataclass(frozen=True, slots=True)
class HaltState:
    halted: bool
    reason: str
    changed_at: datetime | None


class Executor(Protocol):
    mode: Mode

    def submit(self, order: OrderRequest) -> OrderResult: ...

    def portfolio(self) -> Portfolio: ...

    def reset(self) -> Portfolio: ...


def positive_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool | float):
        # A float has already lost the amount (0.1 is not 0.1): ask for the exact value.
        raise invalid_field(name, f"{name} must be a Decimal or a decimal string, not a float.")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise invalid_field(name, f"{name} must be a decimal number.") from None
    if not number.is_finite() or number <= 0:
        raise invalid_field(name, f"{name} must be a positive number.")
    return number


def price_decimal(price: float) -> Decimal:
    # repr/str of a float is its shortest round-tripping decimal: "61234.57", not the binary expansion.
    return Decimal(str(price))


def plain(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros ("10000", "999.94"): what Binance accepts
    and how decisions print amounts."""
    text_value = format(value.normalize(), "f")
    return text_value if text_value != "-0" else "0"


def is_side(value: str) -> TypeGuard[Side]:
    return value in ("BUY", "SELL")


def stored_side(value: str) -> Side:
    """A side read back from the database (written only as BUY or SELL)."""
    if not is_side(value):
        raise ValueError(f"unknown order side {value!r} in the database")
    return value


def stored_mode(value: str) -> Mode:
    """A trading mode read back from the database (written only as paper or live)."""
    if value == "paper":
        return "paper"
    if value == "live":
        return "live"
    raise ValueError(f"unknown trading mode {value!r} in the database")


def check_mode(mode: str) -> None:
    if mode not in TRADING_MODES:
        raise invalid_field("mode", f"mode must be one of {', '.join(TRADING_MODES)}.")


def invalid_field(name: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": name})


def jsonable(value: Any, decimal_text: Callable[[Decimal], str] = fixed_point) -> Any:
    """`value` ready for a JSON response: ``utils.jsonsafe.json_safe`` with Decimals as exact strings
    (fixed-point by default) and NaN left as it is."""
    return json_safe(value, decimal_text=decimal_text, nan_to_null=False)


def jsonable_dict(value: Any, decimal_text: Callable[[Decimal], str] = fixed_point) -> dict[str, Any]:
    """`jsonable` of a dataclass or mapping, which is always a dict."""
    converted = jsonable(value, decimal_text)
    if not isinstance(converted, dict):
        raise TypeError(f"expected a dataclass or mapping, got {type(value).__name__}")
    return converted
