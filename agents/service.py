"""Agent service: the agents table, training jobs, predictions and model activation.

One `GenericAgent` object per symbol lives here so loaded models stay cached between predictions.
Agents for BTCUSDT and ETHUSDT exist from the first start; any other symbol is one API call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agents import btc_agent, eth_agent
from agents.generic_agent import AgentConfig, FittedModel, GenericAgent, Prediction, fit_model
from db.models import AgentRecord, Job, ModelVersion
from db.storage import transaction
from ml_engine import model_registry
from utils.compute import Compute
from utils.errors import Conflict, InvalidInput, NotFound
from utils.jobs import JobBusy, JobCancelled, JobRunner, Report, keys_held
from utils.market_data.candles import Candles
from utils.market_data.market import MarketData

DEFAULTS: tuple[Callable[[], AgentConfig], ...] = (btc_agent.default_config, eth_agent.default_config)


@dataclass(frozen=True, slots=True)
class AgentView:
    config: AgentConfig
    active: bool
    active_version: str | None
    trained_at: Any
    metrics: dict[str, Any] | None
    stale: bool
    stale_reason: str | None


class AgentService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        market: MarketData,
        jobs: JobRunner,
        models_dir: Path,
        clock: Callable[[], int],
        compute: Compute | None = None,
    ) -> None:
        self.sessions = sessions
        self.compute = compute  # where multi-agent trainings fit their models
        self.market = market
        self.jobs = jobs
        self.models_dir = models_dir
        self.clock = clock
        self._agents: dict[str, GenericAgent] = {}
        self._lock = threading.Lock()

    # --- the agents table -----------------------------------------------------------------------

    def ensure_defaults(self, max_model_age_hours: float) -> None:
        """Create the BTC and ETH agents on first start, with the configured maximum model age."""
        with transaction(self.sessions) as session:
            for make in DEFAULTS:
                config = replace(make(), max_model_age_hours=max_model_age_hours)
                if session.get(AgentRecord, config.symbol) is None:
                    session.add(_record(config))

    def create(self, config: AgentConfig) -> AgentView:
        exists = Conflict(f"An agent for {config.symbol} already exists.", code="agent_exists")
        try:
            with transaction(self.sessions) as session:
                if session.get(AgentRecord, config.symbol) is not None:
                    raise exists
                session.add(_record(config))
        except IntegrityError:  # a concurrent create won the race
            raise exists from None
        return self.view(config.symbol)

    def record(self, symbol: str) -> AgentRecord:
        with self.sessions() as session:
            row = session.get(AgentRecord, symbol)
        if row is None:
            raise NotFound(f"No agent for {symbol}.", code="agent_not_found", details={"symbol": symbol})
        return row

    def agent_config(self, symbol: str) -> AgentConfig | None:
        """The stored configuration of `symbol`'s agent, or None when there is no such agent."""
        with self.sessions() as session:
            row = session.get(AgentRecord, symbol)
        return None if row is None else AgentConfig.from_dict(row.config)

    def agent(self, symbol: str) -> GenericAgent:
        row = self.record(symbol)
        config = AgentConfig.from_dict(row.config)
        with self._lock:
            current = self._agents.get(symbol)
            if current is None or current.config != config:
                current = GenericAgent(config, self.sessions, self.models_dir, self.clock)
                self._agents[symbol] = current
            return current

    def views(self) -> list[AgentView]:
        with self.sessions() as session:
            symbols = session.scalars(select(AgentRecord.symbol).order_by(AgentRecord.symbol)).all()
        return [self.view(s) for s in symbols]

    def view(self, symbol: str) -> AgentView:
        row = self.record(symbol)
        config = AgentConfig.from_dict(row.config)
        model = (
            model_registry.get_version(self.sessions, symbol, row.active_version)
            if row.active_version
            else None
        )
        stale_reason = None if model is None else self.agent(symbol).stale_reason(model.version)
        return AgentView(
            config=config,
            active=row.active,
            active_version=row.active_version,
            trained_at=model.trained_at if model else None,
            metrics=model.metrics if model else None,
            stale=stale_reason is not None,
            stale_reason=stale_reason,
        )

    # --- training -------------------------------------------------------------------------------

    def start_training(self, symbol: str) -> Job:
        """A background training job, run by whichever API process claims it; one at a time per symbol
        across every process (a second request is a 409 naming the live job)."""
        config = self.agent(symbol).config
        for key in keys_held(self.sessions, "train_many:"):
            if symbol in key.split(":", 1)[1].split(","):
                raise Conflict(
                    f"{symbol} is already training with other agents; wait for it.",
                    code="training_in_progress",
                    details={"symbol": symbol},
                )
        try:
            return self.jobs.submit(
                "train", {"symbol": symbol, "interval": config.interval}, exclusive_key=_train_key(symbol)
            )
        except JobBusy as busy:
            raise _training_in_progress(symbol, busy.job_id) from None

    def start_training_many(self, symbols: Sequence[str]) -> Job:
        """One job training several agents at once on the compute backend (a local process pool, or the
        Dask cluster at COMPUTE_SCHEDULER): 409 when one of them is already training."""
        unique = sorted(set(symbols))
        for symbol in unique:
            self.agent(symbol)  # 404 for an unknown agent, now rather than in the job
        busy = sorted((self.training_symbols() | self._queued_symbols()) & set(unique))
        if busy:
            raise Conflict(
                f"{busy[0]} is already training; wait for it.",
                code="training_in_progress",
                details={"symbol": busy[0]},
            )
        return self.jobs.submit(
            "train_many", {"symbols": unique}, exclusive_key="train_many:" + ",".join(unique)
        )

    def run_training_many_job(self, params: dict[str, Any], report: Report) -> dict[str, Any]:
        """The ``train_many`` job handler: the fits fan out to the compute workers (each gets its agent's
        configuration and candles), then each model is registered and activated here, one commit per
        agent. An agent whose training fails is reported and leaves its previous model active."""
        if self.compute is None:
            raise Conflict("No compute backend is configured for multi-agent training.", code="conflict")
        symbols = [str(s) for s in params["symbols"]]
        report(0.0, "loading candles")
        items: list[tuple[AgentConfig, Candles]] = []
        sources: dict[str, str] = {}
        for symbol in symbols:
            agent = self.agent(symbol)
            answer = self.market.history(symbol, agent.config.interval, last_bars=agent.config.train_bars)
            items.append((agent.config, agent.training_candles(answer.candles)))
            sources[symbol] = answer.source
        report(0.05, f"fitting {len(items)} agents on the workers")
        fits = self.compute.map(
            fit_task,
            items,
            None,
            progress=lambda done, total: report(
                0.05 + 0.85 * done / total, f"fitting: {done} of {total} done"
            ),
            should_stop=report.cancelled,
        )
        report(0.92, "registering the models")
        results: list[dict[str, Any]] = []
        for (config, _candles), fitted in zip(items, fits, strict=True):
            symbol = config.symbol
            if isinstance(fitted, str):
                results.append({"symbol": symbol, "version": None, "error": fitted})
                continue

            def activate(session: Session, saved: model_registry.SavedModel, symbol: str = symbol) -> None:
                row = session.get(AgentRecord, symbol, with_for_update=True)
                if row is not None:
                    row.active_version = saved.version

            trained = self.agent(symbol).register(fitted, on_register=activate)
            results.append(
                {
                    "symbol": symbol,
                    "version": trained.version,
                    "error": None,
                    "data_source": sources[symbol],
                    "chosen": trained.report.chosen,
                    "metrics": trained.report.metrics_dict(),
                }
            )
        return {"results": results}

    def _queued_symbols(self) -> set[str]:
        """Symbols a queued or running ``train`` or ``train_many`` job will train, in any process."""
        held = keys_held(self.sessions, "train:") | keys_held(self.sessions, "train_many:")
        return {s for key in held for s in key.split(":", 1)[1].split(",")}

    def run_training_job(self, params: dict[str, Any], report: Report) -> dict[str, Any]:
        """The ``train`` job handler: everything it needs is read again from the database."""
        return self._train_and_activate(str(params["symbol"]), report, job=report)

    def train_now(self, symbol: str) -> dict[str, Any]:
        """Train and activate in the caller's thread (scheduled retraining), recorded as a job; one
        training per symbol across every process."""
        config = self.agent(symbol).config
        try:
            return self.jobs.run_here(
                "train",
                {"symbol": symbol, "interval": config.interval},
                lambda report: self._train_and_activate(symbol, report, job=report),
                exclusive_key=_train_key(symbol),
            )
        except JobBusy as busy:
            raise _training_in_progress(symbol, busy.job_id) from None
        except JobCancelled:
            raise Conflict(f"The training of {symbol} was cancelled.", code="training_failed") from None

    def _train_and_activate(
        self, symbol: str, report: Callable[[float, str], None], job: Report | None = None
    ) -> dict[str, Any]:
        """The latest `train_bars` closed candles, walk-forward training, registration, activation: the
        model is activated only after its out-of-sample report is stored with it. Registration,
        activation and the end of the training `job` are one transaction: a crash leaves either all
        three or none (and then the files are removed at the next start)."""
        agent = self.agent(symbol)
        config = agent.config
        report(0.0, "loading candles")
        # Only the window the agent trains on: older stored history is not re-synced here.
        answer = self.market.history(symbol, config.interval, last_bars=config.train_bars)
        result: dict[str, Any] = {}

        def registered(session: Session, saved: model_registry.SavedModel) -> None:
            row = session.get(AgentRecord, symbol, with_for_update=True)
            if row is None:
                raise NotFound(f"No agent for {symbol}.", code="agent_not_found", details={"symbol": symbol})
            row.active_version = saved.version
            result.update(
                symbol=symbol,
                version=saved.version,
                data_source=answer.source,
                chosen=saved.metadata["report"]["chosen"],
                metrics=saved.metadata["metrics"],
            )
            if job is not None:
                job.complete_in(session, result)

        agent.train(answer.candles, lambda f, m: report(0.05 + 0.9 * f, m), on_register=registered)
        return result

    def training_symbols(self) -> set[str]:
        """Symbols with a training running now, in any process."""
        return {key.removeprefix("train:") for key in keys_held(self.sessions, "train:", ("running",))}

    def models(self, symbol: str) -> Sequence[ModelVersion]:
        self.record(symbol)
        return model_registry.list_versions(self.sessions, symbol)

    def activate(self, symbol: str, version: str) -> AgentView:
        self.record(symbol)
        if model_registry.get_version(self.sessions, symbol, version) is None:
            raise NotFound(f"No model version {version!r} for {symbol}.", code="model_not_found")
        with transaction(self.sessions) as session:
            row = session.get(AgentRecord, symbol)
            assert row is not None
            row.active_version = version
        return self.view(symbol)

    # --- prediction -----------------------------------------------------------------------------

    def predict(self, symbol: str) -> Prediction:
        row = self.record(symbol)
        if row.active_version is None:
            raise Conflict(
                f"The {symbol} agent has no trained model yet.",
                code="agent_untrained",
                details={"symbol": symbol},
            )
        agent = self.agent(symbol)
        tail = max(3000, agent.config.train_bars // 5)
        answer = self.market.candles(symbol, agent.config.interval, limit=min(5000, tail))
        return agent.predict(answer.candles, row.active_version, data_stale=answer.stale)


def _record(config: AgentConfig) -> AgentRecord:
    return AgentRecord(
        symbol=config.symbol,
        kind=config.kind,
        interval=config.interval,
        horizon=config.horizon,
        config=config.to_dict(),
        active_version=None,
        active=True,
    )


def fit_task(_shared: None, item: tuple[AgentConfig, Candles]) -> FittedModel | str:
    """One agent's walk-forward fit on a compute worker: the fitted model, or why it could not be."""
    config, candles = item
    try:
        return fit_model(config, candles)
    except InvalidInput as exc:
        return exc.message


def _train_key(symbol: str) -> str:
    return f"train:{symbol}"


def _training_in_progress(symbol: str, job_id: str) -> Conflict:
    return Conflict(
        f"{symbol} is already training (job {job_id}); wait for it.",
        code="training_in_progress",
        details={"job": job_id},
    )
