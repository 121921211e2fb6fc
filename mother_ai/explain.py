"""The explanation text of a decision: who voted with what weight, which edge won or why none did, which
risk checks refused what, and whether the order was submitted."""

from __future__ import annotations

from collections.abc import Sequence

from mother_ai.decision import Decision
from mother_ai.fills import CostModel
from mother_ai.policy import Candidate


def reason_text(
    d: Decision, chosen: Candidate | None, candidates: Sequence[Candidate], execute: bool, costs: CostModel
) -> str:
    parts: list[str] = []
    voters = ", ".join(f"{v.agent} (weight {v.weight.value:.2f})" for v in d.votes) or "none"
    parts.append(f"Asked about {', '.join(d.symbols) or 'no symbol'}; voters: {voters}")
    if d.ignored:
        parts[-1] += "; ignored: " + ", ".join(f"{i.agent} ({i.code})" for i in d.ignored)
    parts[-1] += "."
    cost = f"{costs.round_trip:.2%}"
    best = max(d.edges, key=lambda e: (e.edge, e.symbol), default=None)
    if chosen is not None and chosen.side == "sell":
        edge = next(e for e in d.edges if e.symbol == chosen.symbol)
        parts.append(
            f"The combined view of held {chosen.symbol} is negative (expected return "
            f"{edge.expected_return:+.2%} over the horizon, P(up) {edge.prob_up:.3f}), worse than the "
            f"{costs.exit:.2%} it costs to exit, so sell the whole position "
            f"({chosen.quantity}, about {chosen.size_quote} {d.portfolio['quote_asset']})."
        )
    elif chosen is not None:
        edge = next(e for e in d.edges if e.symbol == chosen.symbol)
        parts.append(
            f"After the {cost} round-trip cost, {chosen.symbol} had the best edge that passed every "
            f"risk check ({edge.edge:+.2%}: expected return {edge.expected_return:+.2%}, "
            f"confidence {edge.confidence:.3f}), so buy {chosen.size_quote} "
            f"{d.portfolio['quote_asset']} ({(chosen.size_fraction or 0):.2%} of equity)."
        )
        refused = [c for c in candidates if not c.passed]
        if refused:
            parts.append("Better edges were refused: " + refusals(refused) + ".")
    elif candidates:
        parts.append(
            f"Positive edges after the {cost} round-trip cost were refused by risk checks: "
            f"{refusals(candidates)}. Holding."
        )
    elif best is not None:
        parts.append(
            f"No symbol's expected return covered the {cost} round-trip cost (best: {best.symbol} "
            f"{best.expected_return:+.2%}, edge {best.edge:+.2%}) and no held symbol's view was negative "
            "enough to sell. Holding."
        )
    else:
        parts.append("No agent could vote, so there is nothing to act on. Holding.")
    if d.action != "hold":
        if d.halted:
            parts.append("Trading is halted (kill switch), so no order is submitted.")
        elif not execute:
            parts.append("Not executed (execute=false).")
    return " ".join(parts)


def refusals(candidates: Sequence[Candidate]) -> str:
    return "; ".join(
        f"{c.symbol} (edge {c.score:+.2%}) failed "
        + ", ".join(check.name for check in c.checks if not check.passed)
        for c in candidates
    )


def reason_code(d: Decision) -> str:
    """A short, stable code for why the decision came out as it did (what the parity test compares)."""
    if d.action == "sell":
        return "exit_negative_view"
    if d.action == "buy":
        return "entry_best_edge"
    if d.candidates:
        return "entries_refused:" + ",".join(
            sorted({check.name for c in d.candidates for check in c.checks if not check.passed})
        )
    if d.edges:
        return "no_edge"
    return "no_votes"
