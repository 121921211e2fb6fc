"""Strategy service: validate a spec or a block graph, measure its health on stored candles, save it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strategy_engine import strategy_health
from strategy_engine.json_strategy_parser import blocks_to_strategy
from strategy_engine.spec import StrategySpec, validate_spec
from strategy_engine.store import SavedStrategy, StrategyStore
from utils.errors import AppError
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData


@dataclass(frozen=True, slots=True)
class Checked:
    spec: StrategySpec
    health: dict[str, Any]
    data_source: str | None


def check_spec(
    market: MarketData,
    raw: Mapping[str, Any] | StrategySpec,
    nodes: Mapping[str, Sequence[str]] | None = None,
) -> Checked:
    """Validate (422 naming the path) and measure health on the store's candles for the spec's
    symbol and interval. Missing data is a finding (the strategy may still be saved), not an error.
    ``nodes`` (spec path -> block ids, for a spec built from blocks) names blocks in the findings."""
    spec = validate_spec(raw)
    try:
        answer = market.history(spec.symbol, spec.interval)
    except AppError as exc:
        finding = strategy_health.Finding("error", "no_data", f"Health could not be measured: {exc.message}")
        return Checked(spec, strategy_health.HealthReport(0, [finding], {}, False).to_dict(), None)
    return Checked(spec, _health(spec, answer.candles, nodes), answer.source)


def check_blocks(market: MarketData, graph: Mapping[str, Any]) -> Checked:
    converted = blocks_to_strategy(graph)
    return check_spec(market, converted.spec, converted.nodes)


def save(store: StrategyStore, market: MarketData, raw: Mapping[str, Any]) -> tuple[SavedStrategy, Checked]:
    checked = check_spec(market, raw)
    return store.create(checked.spec, checked.health), checked


def save_optimised(
    store: StrategyStore, market: MarketData, raw: Mapping[str, Any], note: strategy_health.OptimisationNote
) -> SavedStrategy:
    """Save the winner of an optimisation (a concrete spec): its health carries the verdict."""
    checked = check_spec(market, raw)
    return store.create(checked.spec, strategy_health.with_optimisation(checked.health, note))


def save_blocks(store: StrategyStore, market: MarketData, graph: Mapping[str, Any]) -> SavedStrategy:
    """Convert a block graph and save its spec; the stored health names the blocks of each finding,
    until a later version is saved as a JSON spec (with no blocks to name)."""
    checked = check_blocks(market, graph)
    return store.create(checked.spec, checked.health)


def update(
    store: StrategyStore, market: MarketData, strategy_id: int, raw: Mapping[str, Any]
) -> tuple[SavedStrategy, Checked]:
    previous = store.get(strategy_id)  # 404 before spending time on the health check
    checked = check_spec(market, raw)
    health = checked.health
    note = (previous.health or {}).get("optimisation")
    if note and _trades_alike(previous.spec, checked.spec.to_dict()):
        # Renamed or redescribed only: what the optimisation said still holds for the same trading logic.
        health = strategy_health.with_optimisation(health, strategy_health.OptimisationNote.from_dict(note))
        checked = Checked(checked.spec, health, checked.data_source)
    return store.update(strategy_id, checked.spec, health), checked


_DESCRIPTIVE = ("name", "description")  # spec fields that change no trade


def _trades_alike(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    def logic(spec: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in _DESCRIPTIVE}

    return logic(validate_spec(before).to_dict()) == logic(after)


def _health(
    spec: StrategySpec, candles: Candles, nodes: Mapping[str, Sequence[str]] | None
) -> dict[str, Any]:
    report = strategy_health.check(spec, candles, nodes=nodes)
    health = report.to_dict()
    health["data"] = {"source": candles.source, "bars": len(candles)}
    return health
