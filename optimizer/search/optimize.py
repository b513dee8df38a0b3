"""Bayesian plan search: a GP (scikit-optimize, ask/tell) over buffers, boundaries, batching and
memory, scored by the analytical estimator, then a local polish, then a simulator re-check.

Objective: the estimator's cost_per_million_usd, told to the GP as ln(cost). A plan whose
p{percentile} exceeds the SLO is infeasible: the GP is told
    ln(cost) + INFEASIBLE_PENALTY_LOG + ln(1 + min(violation, MAX_VIOLATION)),
violation = p/slo - 1, i.e. ten times its cost and worse the further it misses, so the surrogate
learns where the boundary lies; an infeasible plan is never returned. Percentiles other than
50/95/99 are judged by SLO attainment (p_q <= slo exactly when attainment >= q/100), with
violation = (q/100 - attainment) / (1 - q/100).

Phases:
`evals` is the budget of plan estimates in all (SearchResult.evaluations counts them).
1. gp_rounds(evals) ask/tell rounds (1 in 25 of the budget, 8..60): the given seed plans and
   the fastest plan of the space (a feasible start whenever any plan is), skopt's random
   initial points, then GP proposals.
2. Polish: local search (search_space.Encoding.steps / pair_steps: one field one choice up or
   down, a boundary moved, a buffer split or merged; then two buffers' fields at once, which
   trades SLO slack between buffers) from the best plan of each of the POLISH_STARTS best
   distinct structures, with the rest of the budget. Why: in 12-16 dimensions a
   GP refit costs ~0.2-0.5 s against ~5 ms for an estimate with per-buffer caching, and the
   landscape has one basin per structure; measured on the default workload, the GP phase's best
   is 15-30% above the final plan (benchmarks/results/search.json).
   When every start has reached a local optimum and budget is left, iterated local search
   (Lourenco, Martin & Stuetzle, "Iterated Local Search", 2003) spends it: a kick of
   KICK_STEPS random single steps from the best plan so far (rng seeded by `seed`), then the
   same descent; it stops when the budget is spent or MAX_STALE_KICKS kicks in a row found
   no plan not already estimated.
3. The cheapest feasible plan is replayed by the simulator; if it misses the SLO there, the
   next cheapest are tried (skipping those whose estimated p exceeds slo over the worst
   simulated/estimated ratio seen), and every re-check is recorded in SearchResult.rechecks.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from buffers.plan import BufferSpec, Plan
from optimizer.estimator.estimate import EstimatorContext, combine_buffers, estimate_buffer
from optimizer.estimator.latency import LatencyCdf
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.metrics import BufferMetrics, PlanMetrics
from optimizer.platform.pricing import Pricing
from optimizer.search.space import Encoding, SearchSpace
from optimizer.sim.engine import ServiceTime, simulate

INFEASIBLE_PENALTY_LOG = math.log(10.0)
MAX_VIOLATION = 10.0
GP_SHARE = 25  # one GP round per this many estimates of the budget ...
MIN_GP_ROUNDS, MAX_GP_ROUNDS = 8, 60  # ... within these (a refit is ~0.2-0.5 s at 60 points)
POLISH_STARTS = 4  # local searches, from the best plans of this many distinct structures
KICK_STEPS = (2, 4)  # an ILS kick is this many random single steps (inclusive range)
MAX_STALE_KICKS = 25  # kicks in a row that found nothing new: the space near the best is spent
MIN_INITIAL_POINTS, MAX_INITIAL_POINTS = 8, 24
ACQ_POINTS = 2000  # candidates the acquisition function is evaluated on per proposal
RECHECK_LIMIT = 8  # simulator re-checks before giving up
_FIELD_PERCENTILES = {50.0: "p50_ms", 95.0: "p95_ms", 99.0: "p99_ms"}

Progress = Callable[[int, int, float | None], None]  # estimates done, budget, best cost


@dataclass(frozen=True)
class SimInputs:
    """What simulate() needs besides the plan: the workload, service times and prices."""

    arrivals_s: np.ndarray
    lengths: np.ndarray
    service_ms: ServiceTime
    pricing: Pricing
    rules: LambdaRules | None = None


@dataclass(frozen=True)
class Evaluation:
    """One estimated plan: its figures against the SLO and what the GP was told."""

    index: int
    phase: str  # "seed", "initial", "gp" or "polish"
    plan: Plan
    values: dict[str, object]
    cost_per_million_usd: float
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


@dataclass(frozen=True)
class Recheck:
    """The simulator's verdict on one estimator-feasible candidate."""

    evaluation: int  # Evaluation.index
    estimated_percentile_ms: float | None
    simulated_percentile_ms: float
    simulated_cost_per_million_usd: float
    passed: bool


@dataclass(frozen=True)
class SearchResult:
    """The best plan (None if none met the SLO in both the estimator and the simulator)."""

    plan: Plan | None
    estimated: PlanMetrics | None
    simulated: PlanMetrics | None
    feasible: bool
    evaluations: int
    wall_s: float
    history: tuple[Evaluation, ...]
    rechecks: tuple[Recheck, ...]
    slo_ms: float
    percentile: float
    message: str

    @property
    def simulated_percentile_ms(self) -> float | None:
        passed = [r for r in self.rechecks if r.passed]
        return passed[-1].simulated_percentile_ms if passed else None


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
        return combine_buffers(plan, [self._part(spec) for spec in plan.buffers],
                               self.ctx.slo_ms)


class _Evaluator:
    """Estimates decoded points once each (cached by plan) and keeps the history."""

    def __init__(self, ctx: EstimatorContext, enc: Encoding, slo_ms: float,
                 percentile: float) -> None:
        self.ctx, self.enc, self.slo_ms, self.percentile = ctx, enc, slo_ms, percentile
        self.history: list[Evaluation] = []
        self._cache: dict[tuple, Evaluation] = {}
        self._estimate = CachedEstimator(ctx)
        self.on_new: Callable[[], None] | None = None

    def __call__(self, point: Sequence[int], phase: str) -> Evaluation:
        return self.plan(self.enc.decode(point), phase)

    def plan(self, plan: Plan, phase: str) -> Evaluation:
        hit = self._cache.get(plan.buffers)
        if hit is not None:
            return hit
        metrics = self._estimate(plan)
        feasible, p_ms, violation = judge(metrics, self.percentile, self.slo_ms)
        cost = metrics.cost_per_million_usd
        point = self.enc.encode(plan)
        values = self.enc.values(point) if point is not None else {}
        ev = Evaluation(len(self.history), phase, plan, values, cost, p_ms,
                        metrics.slo_attainment, feasible, violation,
                        _objective(cost, feasible, violation),
                        metrics)
        self._cache[plan.buffers] = ev
        self.history.append(ev)
        if self.on_new is not None:
            self.on_new()
        return ev

    def best(self) -> Evaluation | None:
        feasible = [e for e in self.history if e.feasible]
        return min(feasible, key=lambda e: (e.cost_per_million_usd, e.index)) if feasible \
            else None


def _gp_optimizer(enc: Encoding, seed: int, initial: int) -> object:
    from skopt import Optimizer
    from skopt.space import Integer

    dims = [Integer(0, len(d.choices) - 1, name=d.name) for d in enc.dimensions]
    return Optimizer(dims, base_estimator="GP", n_initial_points=initial, random_state=seed,
                     acq_optimizer="sampling", acq_optimizer_kwargs={"n_points": ACQ_POINTS},
                     space_constraint=lambda x: enc.valid(x))


def _gp_phase(run: _Evaluator, seeds: list[list[int]], budget: int, seed: int) -> None:
    """`budget` ask/tell rounds: the seeds, skopt's random initial points, then GP proposals."""
    from threadpoolctl import threadpool_limits

    dims = len(run.enc.dimensions)
    initial = min(max(MIN_INITIAL_POINTS, 2 * dims), MAX_INITIAL_POINTS, max(budget, 1))
    initial = max(initial, len(seeds) + 1)
    opt = _gp_optimizer(run.enc, seed, initial)
    # One BLAS thread: the GP's matrices are small, and threads only add contention and
    # run-to-run noise in the last bits (which would break seed reproducibility).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for point in seeds[:budget]:
            opt.tell(point, run(point, "seed").objective, fit=False)
        for i in range(len(seeds), budget):
            point = [int(v) for v in opt.ask()]
            ev = run(point, "initial" if i < initial else "gp")
            opt.tell(point, ev.objective)


def _starts(run: _Evaluator) -> list[Evaluation]:
    """The best plan (by rank) of each distinct set of length ranges, best first."""
    seen: set[tuple] = set()
    out = []
    for ev in sorted(run.history, key=lambda e: (e.rank, e.index)):
        ranges = tuple((b.min_length, b.max_length) for b in ev.plan.buffers)
        if ranges not in seen:
            seen.add(ranges)
            out.append(ev)
    return out[:POLISH_STARTS]


def _better_step(run: _Evaluator, best: Evaluation, limit: int) -> Evaluation | None:
    """The first single step, else pair step, to a better-ranked plan (first improvement)."""
    for moves in (run.enc.steps, run.enc.pair_steps):
        for plan in moves(best.plan):
            if len(run.history) >= limit:
                return None
            ev = run.plan(plan, "polish")
            if ev.rank < best.rank:
                return ev
    return None


def _descend(run: _Evaluator, best: Evaluation, limit: int) -> Evaluation:
    """Local search until no step improves or `limit` estimates have been made in all; from an
    infeasible start it first walks towards the SLO (smaller violation), then down in cost."""
    while (better := _better_step(run, best, limit)) is not None:
        best = better
    return best


def _kick(run: _Evaluator, plan: Plan, rng: np.random.Generator) -> Plan:
    """A random walk of KICK_STEPS single steps from `plan` (its plans are not estimated)."""
    for _ in range(int(rng.integers(KICK_STEPS[0], KICK_STEPS[1] + 1))):
        moves = list(run.enc.steps(plan))
        if not moves:
            break
        plan = moves[int(rng.integers(len(moves)))]
    return plan


def _polish(run: _Evaluator, limit: int, seed: int) -> None:
    """Local search from the best plan of each of the POLISH_STARTS best structures, then
    iterated local search (kick the best, descend) with what is left of the budget."""
    for start in _starts(run):
        if len(run.history) >= limit:
            return
        _descend(run, start, limit)
    rng = np.random.default_rng(seed)
    stale = 0
    while len(run.history) < limit and stale < MAX_STALE_KICKS:
        best = run.best() or min(run.history, key=lambda e: (e.rank, e.index))
        before = len(run.history)
        _descend(run, run.plan(_kick(run, best.plan, rng), "polish"), limit)
        stale = stale + 1 if len(run.history) == before else 0


def _recheck(run: _Evaluator, sim: SimInputs, arch: str) -> list[tuple[Recheck, object]]:
    """Simulate the cheapest feasible candidates until one passes (or RECHECK_LIMIT)."""
    out: list[tuple[Recheck, object]] = []
    ratio = 1.0
    ranked = sorted((e for e in run.history if e.feasible),
                    key=lambda e: (e.cost_per_million_usd, e.index))
    for ev in ranked:
        if len(out) >= RECHECK_LIMIT:
            break
        if ev.percentile_ms is not None and ev.percentile_ms * ratio > run.slo_ms:
            continue  # the simulator has run this much slower than estimated: skip
        result = simulate(ev.plan, sim.arrivals_s, sim.lengths, sim.service_ms, sim.pricing,
                          run.slo_ms, rules=sim.rules, arch=arch)
        p_ms = float(np.percentile(result.latency_ms, run.percentile)) \
            if result.latency_ms.size else 0.0
        passed = p_ms <= run.slo_ms
        out.append((Recheck(ev.index, ev.percentile_ms, p_ms,
                            result.metrics.cost_per_million_usd, passed), result))
        if passed:
            break
        if ev.percentile_ms:
            ratio = max(ratio, p_ms / ev.percentile_ms)
    return out


def optimize(ctx: EstimatorContext, sim: SimInputs, space: SearchSpace, slo_ms: float,
             percentile: float, evals: int, seed: int, progress: Progress | None = None,
             seeds: Sequence[Plan] = ()) -> SearchResult:
    """Search `space` for the cheapest plan whose p{percentile} <= slo_ms.

    Parameters: ctx from EstimatorContext.build on the same workload as `sim` (its slo_ms must
    equal slo_ms); space what may be chosen; evals the budget of plan estimates (GP rounds
    first, then the polish, which stops early only when its kicks find nothing new); seed
    makes the run reproducible; progress(done, evals, best_cost or None) is called after each
    new estimate; seeds are plans told to the GP first (e.g. a known good plan).
    Returns: SearchResult; plan is None and feasible False when no plan met the SLO in the
    estimator, or none of the re-checked candidates met it in the simulator (see message).
    """
    _check_args(ctx, slo_ms, percentile, evals)
    started = time.perf_counter()
    enc = Encoding.build(space, sim.lengths)
    run = _Evaluator(ctx, enc, slo_ms, percentile)

    def report() -> None:
        if progress is not None:
            best = run.best()
            progress(len(run.history), evals, best.cost_per_million_usd if best else None)

    run.on_new = report
    seed_points = [p for p in (enc.encode(plan) for plan in seeds) if p is not None]
    seed_points.append(enc.fastest())
    if enc.dimensions:
        _gp_phase(run, seed_points, gp_rounds(evals), seed)
    else:
        run([], "seed")
    _polish(run, evals, seed)
    checks = _recheck(run, sim, space.arch)
    return _result(run, checks, time.perf_counter() - started)


def gp_rounds(evals: int) -> int:
    """Ask/tell rounds for a budget of `evals` estimates."""
    return min(evals, max(MIN_GP_ROUNDS, min(MAX_GP_ROUNDS, evals // GP_SHARE)))


def _check_args(ctx: EstimatorContext, slo_ms: float, percentile: float, evals: int) -> None:
    if not slo_ms > 0:
        raise ValueError(f"slo_ms must be > 0, got {slo_ms}")
    if not math.isclose(ctx.slo_ms, slo_ms):
        raise ValueError(f"slo_ms {slo_ms} differs from the estimator context's {ctx.slo_ms}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if evals < 1:
        raise ValueError(f"evals must be >= 1, got {evals}")


def _result(run: _Evaluator, checks: list[tuple[Recheck, object]], wall_s: float) -> SearchResult:
    rechecks = tuple(r for r, _ in checks)
    common = {"evaluations": len(run.history), "wall_s": wall_s, "history": tuple(run.history),
              "rechecks": rechecks, "slo_ms": run.slo_ms, "percentile": run.percentile}
    target = f"p{run.percentile:g} <= {run.slo_ms:g} ms"
    if run.best() is None:
        closest = min(run.history, key=lambda e: e.objective - math.log(
            max(e.cost_per_million_usd, 1e-12)))
        shown = f"{closest.percentile_ms:.0f} ms" if closest.percentile_ms is not None else \
            f"SLO attainment {closest.slo_attainment:.2%}"
        return SearchResult(None, None, None, False, **common, message=(
            f"no plan met {target} in the estimator after {len(run.history)} evaluations "
            f"(closest: {shown}); relax the SLO or widen the space"))
    passed = [(r, res) for r, res in checks if r.passed]
    if not passed:
        return SearchResult(None, None, None, False, **common, message=(
            f"the estimator found plans meeting {target}, but the simulator rejected all "
            f"{len(rechecks)} re-checked candidates"))
    recheck, sim_result = passed[0]
    ev = run.history[recheck.evaluation]
    note = "" if len(rechecks) == 1 else (
        f"; the simulator rejected {len(rechecks) - 1} cheaper candidate(s) first")
    return SearchResult(ev.plan, ev.metrics, sim_result.metrics, True, **common, message=(
        f"best plan meets {target} (modelled and simulated){note}"))


def exhaustive(ctx: EstimatorContext, space: SearchSpace, lengths: np.ndarray, slo_ms: float,
               percentile: float) -> tuple[Evaluation | None, int]:
    """The cheapest feasible plan over every point of a (small) space, and the plans tried."""
    enc = Encoding.build(space, lengths)
    run = _Evaluator(ctx, enc, slo_ms, percentile)
    for point in enc.grid():
        run(point, "grid")
    return run.best(), len(run.history)
