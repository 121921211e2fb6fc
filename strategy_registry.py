"""The one entry point to every strategy: list them, find one, and produce its signals.

A strategy is referred to by a built-in name (`sma_crossover`), a saved strategy's id (an int),
or an inline canonical spec (a JSON object). Callers (backtests, sweeps, the Mother AI) never care
which: they get a `ResolvedStrategy` with a warm-up, signals and, for JSON strategies, the spec's
stops and position size.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.optimize import service as optimize_service
from backtester.optimize.search import AnyTunable, Recipe
from backtester.optimize.service import Prepared
from backtester.strategies import BUILTINS, BuiltinStrategy
from strategy_engine import strategy_parser
from strategy_engine.spec import ChoiceTunable, StrategySpec, validate_spec
from strategy_engine.store import StrategyStore
from utils.errors import InvalidInput, NotFound
from utils.market_data.candles import Candles

StrategyRef = str | int | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    name: str
    kind: str  # "builtin" or "saved"
    description: str
    parameters: list[dict[str, Any]]
    id: int | None = None
    symbol: str | None = None
    interval: str | None = None
    version: int | None = None
    health_score: int | None = None
    can_activate: bool | None = None


@dataclass(frozen=True, slots=True)
class ResolvedStrategy:
    """A strategy with concrete, validated parameters, ready to produce signals."""

    name: str
    kind: str  # builtin, saved or inline
    params: dict[str, Any]
    warmup: int
    spec: StrategySpec | None  # JSON strategies: their stops and position size travel with them
    _signals: Callable[[Candles], tuple[np.ndarray, np.ndarray]]
    id: int | None = None  # saved strategies: which one, and which version ran
    version: int | None = None

    def signals(self, candles: Candles) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit booleans per candle; the value on bar t uses candles up to t only."""
        return self._signals(candles)


def list_strategies(store: StrategyStore | None = None) -> list[StrategyInfo]:
    builtins = [
        StrategyInfo(s.name, "builtin", s.description, s.parameters())
        for s in sorted(BUILTINS.values(), key=lambda b: b.name)
    ]
    saved: Sequence[Any] = store.list() if store is not None else []
    return builtins + [
        StrategyInfo(
            s.name,
            "saved",
            str(s.spec.get("description", "")),
            [],
            id=s.id,
            symbol=s.symbol,
            interval=s.interval,
            version=s.latest_version,
            health_score=s.health_score,
            can_activate=bool(s.health and s.health.get("can_activate")),
        )
        for s in saved
    ]


def resolve(
    ref: StrategyRef,
    params: Mapping[str, Any] | None = None,
    store: StrategyStore | None = None,
    *,
    version: int | None = None,
) -> ResolvedStrategy:
    """404 for an unknown name or id (or `version` of a saved one; default: its latest), 422 for bad
    parameters or an invalid inline spec."""
    if isinstance(ref, Mapping):
        if params:
            raise InvalidInput(
                "params apply to built-in strategies; put values in the spec itself.",
                details={"field": "params"},
            )
        return _from_spec(validate_spec(ref), "inline")
    if isinstance(ref, int) and not isinstance(ref, bool):
        if store is None:
            raise NotFound(f"No saved strategy with id {ref}.", code="strategy_not_found")
        if params:
            raise InvalidInput(
                "params apply to built-in strategies; save a new version of the spec instead.",
                details={"field": "params"},
            )
        saved = store.get(ref, version)
        resolved = _from_spec(
            validate_spec(saved.spec), "saved", name=f"{saved.name} (id {saved.id} v{saved.version})"
        )
        return dataclasses.replace(resolved, id=saved.id, version=saved.version)
    return _builtin(str(ref), params)


def _builtin(name: str, params: Mapping[str, Any] | None) -> ResolvedStrategy:
    builtin = BUILTINS.get(name)
    if builtin is None:
        raise NotFound(
            f"Unknown strategy {name!r}; built-ins: {', '.join(sorted(BUILTINS))} "
            "(or pass a saved id or a spec).",
            code="unknown_strategy",
            details={"available": sorted(BUILTINS)},
        )
    try:
        concrete = builtin.make_params(params)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"params: {exc}", details={"field": "params"}) from None
    values = {p["name"]: getattr(concrete, p["name"]) for p in builtin.parameters()}
    return ResolvedStrategy(
        builtin.name,
        "builtin",
        values,
        builtin.warmup(concrete),
        None,
        lambda candles: builtin.signals(candles, concrete),
    )


def _from_spec(spec: StrategySpec, kind: str, name: str | None = None) -> ResolvedStrategy:
    def signals(candles: Candles) -> tuple[np.ndarray, np.ndarray]:
        result = strategy_parser.evaluate(spec, candles)
        return result.entries, result.exits

    return ResolvedStrategy(name or spec.name, kind, {}, strategy_parser.warmup(spec), spec, signals)


def _check_space_ends(
    builtin: BuiltinStrategy, fixed: Mapping[str, Any], space: Mapping[str, AnyTunable]
) -> None:
    """422 naming the end of a range (or the choices) no trial could use: each end of each parameter's
    range (each of its choices) must be valid with some value of the others (their ends and defaults;
    a built-in's rules, like fast < slow, bind pairs). Without this a space the strategy refuses
    throughout runs every trial into a refusal and ends "done" with no winner."""
    for name, tunable in space.items():
        others = [n for n in space if n != name]
        tried = [_values_to_try(space[n]) for n in others]
        ends = (
            [("choices", v) for v in tunable.grid()]
            if isinstance(tunable, ChoiceTunable)
            else list(zip(("low", "high"), tunable.extremes(), strict=True))
        )
        for end, value in ends:
            error: str | None = None
            for combination in itertools.product(*tried):
                try:
                    builtin.make_params({**fixed, **dict(zip(others, combination, strict=True)), name: value})
                except (TypeError, ValueError) as exc:
                    error = error or str(exc)
                    continue
                error = None
                break
            if error is not None:
                field = f"space.{name}.{end}"
                raise InvalidInput(
                    f"{field}: {name} = {value:g} is refused by {builtin.name} whatever the other "
                    f"parameters are: {error}",
                    details={"field": field},
                )


def _values_to_try(tunable: AnyTunable) -> list[float]:
    if isinstance(tunable, ChoiceTunable):
        return list(tunable.grid())
    return sorted({*tunable.extremes(), tunable.initial()})


def recipe_for(
    ref: StrategyRef,
    params: Mapping[str, Any] | None,
    space: Mapping[str, Any] | None,
    store: StrategyStore | None = None,
    *,
    version: int | None = None,
) -> Prepared:
    """A strategy to optimise: a built-in with a search space over its parameters (`space`, the spec's
    tunable format; `params` fixes the others), or a JSON strategy (saved, at `version` or its latest,
    or inline) whose own ``parameters`` are the space. 404 for an unknown name or id, 422 naming the
    field otherwise."""
    if isinstance(ref, str):
        builtin = BUILTINS.get(ref)
        if builtin is None:
            _builtin(ref, None)  # raises the usual unknown_strategy 404
            raise AssertionError("unreachable")
        names = [p["name"] for p in builtin.parameters()]
        tunable = optimize_service.space_from(space, names)
        fixed = dict(params or {})
        clash = sorted(set(fixed) & set(tunable))
        if clash:
            raise InvalidInput(
                f"{clash[0]} is both fixed in params and tuned in space; choose one.",
                details={"field": f"params.{clash[0]}"},
            )
        _check_space_ends(builtin, fixed, tunable)
        try:
            builtin.make_params({**fixed, **{n: t.initial() for n, t in tunable.items()}})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"params: {exc}", details={"field": "params"}) from None
        return Prepared(Recipe(builtin=ref, fixed=fixed), tunable, builtin.name, "builtin")
    if params or space:
        field = "params" if params else "space"
        raise InvalidInput(
            f"{field} apply to built-in strategies; a JSON strategy declares its tunable parameters in its "
            '"parameters" and refers to them as {"param": name}.',
            details={"field": field},
        )
    try:
        resolved = resolve(ref, None, store, version=version)
    except InvalidInput as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        if "path" not in details or "field" in details:
            raise
        # The spec's own error names its node (path); the request names it as a field of its body.
        path = details["path"]
        raise InvalidInput(
            exc.message,
            details={**details, "field": f"strategy.{path}" if path else "strategy"},
            code=exc.code,
        ) from None
    assert resolved.spec is not None
    spec = resolved.spec
    return Prepared(
        Recipe(spec=spec.to_dict()),
        dict(spec.parameters or {}),
        resolved.name,
        resolved.kind,
        id=resolved.id,
        version=resolved.version,
    )
