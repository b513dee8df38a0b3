"""Scoring plans for the search: the estimator's figures judged against the SLO, and the
objective the GP is told; each plan is estimated once, and every estimate kept in order.

Objective: the estimator's end-to-end cost per 1M requests (every line item of the plan's
request path, the dispatcher fleet included: optimizer/platform/plan_cost.py), told to the GP
as ln(cost). Evaluation.cost_per_million_usd holds that end-to-end figure. A plan whose
p{percentile} exceeds the SLO is infeasible: the GP is told
    ln(cost) + INFEASIBLE_PENALTY_LOG + ln(1 + min(violation, MAX_VIOLATION)),
violation = p/slo - 1, i.e. ten times its cost and worse the further it misses, so the surrogate
learns where the boundary lies; an infeasible plan is never returned. Percentiles other than
50/95/99 are judged by SLO attainment (p_q <= slo exactly when attainment >= q/100), with
violation = (q/100 - attainment) / (1 - q/100).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from buffers.plan import BufferSpec, Plan
from optimizer.estimator.estimate import EstimatorContext, combine_buffers, estimate_buffer
from optimizer.estimator.fleet import FleetEstimator
from optimizer.estimator.latency import LatencyCdf
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.metrics import BufferMetrics, PlanMetrics
from optimizer.search.encoding import Encoding

INFEASIBLE_PENALTY_LOG = math.log(10.0)
MAX_VIOLATION = 10.0
_FIELD_PERCENTILES = {50.0: "p50_ms", 95.0: "p95_ms", 99.0: "p99_ms"}


@dataclass(frozen=True)
class Evaluation:
    """One estimated plan: its figures against the SLO and what the GP was told."""

    index: int
    phase: str  # "seed", "initial", "gp", "polish" or "grid" (exhaustive)
    plan: Plan
    values: dict[str, object]
    cost_per_million_usd: float  # end to end (module doc)
    percentile_ms: float | None  # None where the estimator has no such field (see module doc)
    slo_attainment: float
    feasible: bool
    violation: float  # 0 when feasible (see judge)
    objective: float
    metrics: PlanMetrics = field(repr=False, compare=False)

    @property
    def rank(self) -> tuple[int, float, float]:
        """Local-search order: feasible by cost, then infeasible by violation."""
        if self.feasible:
            return (0, self.cost_per_million_usd, 0.0)
        return (1, self.violation, self.cost_per_million_usd)

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "phase": self.phase, "values": self.values,
                "buffers": len(self.plan.buffers),
                "cost_per_million_usd": self.cost_per_million_usd,
                "percentile_ms": self.percentile_ms, "slo_attainment": self.slo_attainment,
                "feasible": self.feasible, "violation": self.violation,
                "objective": self.objective}


def judge(metrics: PlanMetrics, percentile: float, slo_ms: float) -> tuple[bool, float | None,
                                                                         float]:
    """(feasible, p_ms or None, violation >= 0) of estimated figures against p{q} <= slo."""
    name = _FIELD_PERCENTILES.get(float(percentile))
    if name is not None:
        p_ms = float(getattr(metrics, name))
        return p_ms <= slo_ms, p_ms, max(0.0, p_ms / slo_ms - 1.0)
    need = percentile / 100.0
    short = max(0.0, need - metrics.slo_attainment) / max(1.0 - need, 1e-9)
    return metrics.slo_attainment >= need, None, short


def _objective(cost: float, feasible: bool, violation: float) -> float:
    y = math.log(max(cost, 1e-12))
    if feasible:
        return y
    return y + INFEASIBLE_PENALTY_LOG + math.log1p(min(violation, MAX_VIOLATION))


class CachedEstimator:
    """estimate(plan, ctx), with each buffer's figures cached: a plan's buffers are estimated
    independently (optimizer/estimator/estimate.py), so a step that changes one buffer costs one."""

    def __init__(self, ctx: EstimatorContext) -> None:
        self.ctx = ctx
        self._parts: dict[BufferSpec, tuple[BufferMetrics, LatencyCdf]] = {}

    def _part(self, spec: BufferSpec) -> tuple[BufferMetrics, LatencyCdf]:
        key = replace(spec, name="b")
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = estimate_buffer(spec, self.ctx)
        return part

    def __call__(self, plan: Plan) -> PlanMetrics:
        """The same PlanMetrics as optimizer.estimator.estimate.estimate(plan, ctx)."""
        return combine_buffers(plan, [self._part(spec) for spec in plan.buffers], self.ctx)


class Evaluator:
    """Estimates decoded points once each (cached by plan) and keeps the history."""

    def __init__(self, ctx: EstimatorContext, enc: Encoding, slo_ms: float,
                 percentile: float, scaling: ScalingRules | None = None) -> None:
        self.ctx, self.enc, self.slo_ms, self.percentile = ctx, enc, slo_ms, percentile
        self.history: list[Evaluation] = []
        self._cache: dict[tuple, Evaluation] = {}
        # a gpu space's plans run on a fleet (optimizer/estimator/fleet.py)
        self._estimate: Callable[[Plan], PlanMetrics] = (
            FleetEstimator(ctx, scaling) if enc.space.instance_type else CachedEstimator(ctx))
        self.on_new: Callable[[], None] | None = None

    def __call__(self, point: Sequence[int], phase: str) -> Evaluation:
        """The evaluation of the plan `point` decodes to."""
        return self.plan(self.enc.decode(point), phase)

    def plan(self, plan: Plan, phase: str) -> Evaluation:
        """`plan`'s evaluation, estimated on first sight and recorded in the history."""
        key = (plan.buffers, plan.instance_type, plan.min_instances, plan.max_instances)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        metrics = self._estimate(plan)
        feasible, p_ms, violation = judge(metrics, self.percentile, self.slo_ms)
        cost = metrics.end_to_end_cost_per_million_usd
        point = self.enc.encode(plan)
        values = self.enc.values(point) if point is not None else {}
        ev = Evaluation(len(self.history), phase, plan, values, cost, p_ms,
                        metrics.slo_attainment, feasible, violation,
                        _objective(cost, feasible, violation),
                        metrics)
        self._cache[key] = ev
        self.history.append(ev)
        if self.on_new is not None:
            self.on_new()
        return ev

    def best(self) -> Evaluation | None:
        """The cheapest feasible evaluation so far (the earliest on a tie), or None."""
        feasible = [e for e in self.history if e.feasible]
        return min(feasible, key=lambda e: (e.cost_per_million_usd, e.index)) if feasible \
            else None

