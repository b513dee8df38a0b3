"""The searchers `mbs compare --backend lambda,gpu` runs: MBS and BATCH on each backend.

- lambda: the Bayesian search on the workbench's estimator context, as compare's tuner
  (optimizer/compare/tuning.py) but with LAMBDA_CONCURRENCIES per buffer (compare's 2-16 cannot
  carry 1000x the trace's rate: 4 x 16 functions), its plan replayed by the simulator
  (comparison.searched);
- gpu: the fleet search (optimizer/search/gpu.py: buffers and fleet bounds on each instance
  type, the profile moved to each type's GPU, an estimate), its best plan already re-checked
  by the simulator on the fleet (instance time billed); BATCH is the same with one buffer;
- ragged (gpu): TEI-style token-budget batching (optimizer/sim/ragged.py, service time
  modelled at the real token count) on the same fleet, its budget, queue delay and fleet
  ceiling picked from a small grid by simulation (optimizer/compare/grid.py's knobs).
Dense traces (over DENSE_REQUESTS requests, e.g. a superposed 1000x hour) are searched on whole
minutes of the trace (optimizer/workload/sampling.py, about DENSE_REQUESTS requests, run warm),
and the plan found there is replayed by the simulator on the WHOLE trace for every figure
reported (so a sample's error shows only in which plan is picked, not in its figures). A few
minutes are too short for a fleet to scale within (a launch takes minutes), so on a sample the
fleet is fixed (min_instances = max_instances, FunctionScalingConfig's two bounds equal) and
its size searched over the ladder: at the steady rates that need sampling, a fleet sized to the
load is what should run anyway, and a ceiling above it would be chosen blind (the sample cannot
show the scaling it allows), then replayed on the whole trace scaling out at the 60% target,
so that the sample's cost and the trace's would differ. The ragged grid's fleet is fixed the
same way there, so all three are compared on fixed fleets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from buffers.plan import DEFAULT_MIN_INSTANCES, Plan
from optimizer.compare.across import Figures, RateWork, Searcher
from optimizer.compare.comparison import searched
from optimizer.compare.grid import RAGGED_BATCH_TOKENS, RAGGED_DELAY_MS
from optimizer.compare.workbench import Tuned, Tuner, Workbench
from optimizer.estimator.context import EstimatorContext
from optimizer.platform.backends import GPU_MEMORY_MB, Backend
from optimizer.platform.gpu_instances import INSTANCES
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.pricing import Pricing
from optimizer.search.backend_choice import DENSE_REQUESTS, dense_sample
from optimizer.search.gpu import (
    MAX_INSTANCES_LADDER,
    GpuSearchResult,
    GpuWorkload,
    optimize_gpu,
    service_for,
)
from optimizer.search.optimize import Progress, optimize
from optimizer.search.result import SearchResult
from optimizer.search.space import make_space
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.inputs import SimInputs
from optimizer.sim.ragged import SERVICE_TIME_LABEL, ragged_plan
from optimizer.workload.sampling import MINUTE_S

RAGGED_CEILINGS = (3, 6, 12, 24, 48)  # the ragged fleet's max_instances grid (whole traces)
FLEET_REPAIR_STEPS = 4  # a sampled plan's fixed fleet may grow this many ladder steps
RAGGED_FITTED = 3  # the ragged grid's cheapest points on a sample, fitted to the whole trace
# The fleet searches' samples: pieces of FLEET_PIECE_S seconds, about FLEET_SAMPLE_REQUESTS
# requests in all (3 pieces at 1000x). Shorter than minutes, since a fixed fleet (below) has no
# per-minute state to keep and a batch's state lasts a timeout (<= the SLO); the estimator's
# opener solve is linear in the requests, so a 3x5 s sample estimates ~4x faster than a minute.
FLEET_SAMPLE_REQUESTS = 40_000
FLEET_PIECE_S = 5.0
# per-buffer MaximumConcurrency choices, up to the account's 1,000 over 4 buffers
LAMBDA_CONCURRENCIES = (2, 4, 8, 16, 32, 64, 128, 250)


def wide_tuner(seed: int) -> Tuner:
    """compare's search on a space whose concurrency reaches the account's limit."""

    def tune(bench: Workbench, max_buffers: int, evals: int) -> Tuned:
        backend = bench.backend
        ctx = EstimatorContext.build(bench.arrivals_s, bench.lengths, backend.service_ms,
                                     backend.pricing, bench.slo_ms, bench.rules, bench.arch,
                                     bench.fleet)
        sim = SimInputs(bench.arrivals_s, bench.lengths, backend.service_ms, backend.pricing,
                        bench.rules, bench.fleet)
        space = make_space(bench.mode, max_buffers, bench.arch, slo_ms=bench.slo_ms,
                           concurrencies=LAMBDA_CONCURRENCIES)
        result = optimize(ctx, sim, space, bench.slo_ms, bench.percentile, evals, seed)
        plan = result.plan if result.plan is not None else min(
            result.history, key=lambda e: e.rank).plan
        return Tuned(plan, float(result.wall_s), int(result.evaluations),
                     bool(result.feasible), result.message)

    return tune


def search_sample(work: RateWork, seed: int = 0, sample_requests: int = DENSE_REQUESTS,
                  piece_s: float = MINUTE_S) -> tuple[np.ndarray, np.ndarray, str]:
    """The arrivals and lengths a search runs on, and a note (empty: the whole trace)."""
    return dense_sample(work.arrivals_s, work.lengths, seed, sample_requests, piece_s)


def _tail_ms(work: RateWork, result: SimResult) -> float:
    """The run's latency at the work's percentile (0 for a run without requests)."""
    latency = result.latency_ms
    return float(np.percentile(latency, work.percentile)) if latency.size else 0.0


def _judged(work: RateWork, result: SimResult) -> bool:
    return _tail_ms(work, result) <= work.slo_ms


def _buffers(policy: str, max_buffers: int) -> int:
    if policy not in ("mbs", "batch"):
        raise ValueError(f"Unknown searched policy: {policy!r}; known: ['mbs', 'batch']")
    return max_buffers if policy == "mbs" else 1


def lambda_searcher(backend: Backend, evals: int, seed: int, max_buffers: int = 4,
                    arch: str = "x86", sample_requests: int = DENSE_REQUESTS) -> Searcher:
    """MBS or BATCH on CPU Lambda: compare's tuner, then the simulator on the trace."""
    tuner = wide_tuner(seed)

    def search(work: RateWork, policy: str) -> Figures:
        arrivals, lengths, note = search_sample(work, seed, sample_requests)
        bench = Workbench(arrivals, lengths, backend, work.slo_ms, work.percentile,
                          "dispatcher", arch)
        if note:
            bench = replace(bench, rules=replace(bench.rules, cold_start_ms=0.0))
        out = searched(bench, tuner, policy, _buffers(policy, max_buffers), evals)
        tuned = out.search
        metrics, ok = out.metrics, bool(out.feasible)
        if note:  # the plan found on the sample, judged on the whole trace, warm: at volume
            # the only cold starts are a trace's start-up from zero (optimizer/workload/sampling.py)
            whole = replace(Workbench(work.arrivals_s, work.lengths, backend, work.slo_ms,
                                      work.percentile, "dispatcher", arch), rules=bench.rules
                            ).simulate(out.plan)
            metrics, ok = whole.metrics, _judged(work, whole)
        return Figures(policy, ok, metrics, out.plan, out.tuning + note,
                       tuned.message if tuned else "", tuned.wall_s if tuned else 0.0,
                       tuned.evaluations if tuned else 0)

    return search


def gpu_searcher(model: GpuLatencyModel, pricing: Pricing, evals: int, seed: int,
                 max_buffers: int = 4, instance_types: Sequence[str] | None = None,
                 space_options: dict[str, Any] | None = None,
                 sample_requests: int = FLEET_SAMPLE_REQUESTS) -> Searcher:
    """MBS or BATCH on the GPU fleet: optimize_gpu over the instance types, its best plan;
    BATCH's plan seeds MBS's search at the same rate if BATCH ran first (a one-buffer plan is
    in MBS's space, so MBS then starts no worse); ragged on the instance type MBS chose at the
    same rate (the same GPU), if it ran first."""
    mbs_type: dict[float, str] = {}
    batch_plan: dict[float, Plan] = {}  # BATCH's plan seeds MBS's search at the same rate

    def search(work: RateWork, policy: str) -> Figures:
        if policy == "ragged":
            same = mbs_type.get(work.rate_scale)
            return ragged_on_fleet(work, model, pricing, (same,) if same else instance_types,
                                   seed, sample_requests=sample_requests)
        k = _buffers(policy, max_buffers)
        result, note = sampled_gpu_search(
            work, model, pricing, evals, seed, instance_types=instance_types, max_buffers=k,
            space_options=space_options, sample_requests=sample_requests,
            seeds=tuple(p for p in [batch_plan.get(work.rate_scale)]
                        if p is not None and policy == "mbs"))
        wall = sum(r.wall_s for r in result.by_type.values())
        count = sum(r.evaluations for r in result.by_type.values())
        types = ", ".join(result.by_type)
        how = (f"fleet search (buffers and fleet bounds) on {types}, up to {k} buffer(s); "
               f"profile {model.describe()}{note}")
        best = result.best
        if best is not None and policy == "mbs":
            mbs_type[work.rate_scale] = str(best.plan.instance_type)
        if best is not None and policy == "batch":
            batch_plan[work.rate_scale] = best.plan
        if best is None:
            why = "; ".join(f"{t}: {r.message}" for t, r in result.by_type.items())
            return Figures(policy, False, None, None, how, why, wall, count)
        if not note:
            return Figures(policy, True, best.simulated, best.plan, how, best.message, wall,
                           count)
        plan, whole, steps = fit_fleet(work, best.plan, model, pricing)
        return Figures(policy, _judged(work, whole), whole.metrics, plan, how + grown_note(steps),
                       best.message, wall, count)

    return search


def sampled_gpu_search(work: RateWork, model: GpuLatencyModel, pricing: Pricing, evals: int,
                       seed: int, *, instance_types: Sequence[str] | None = None,
                       max_buffers: int = 4, space_options: dict[str, Any] | None = None,
                       seeds: Sequence[Plan] = (), progress: Progress | None = None,
                       sample_requests: int = FLEET_SAMPLE_REQUESTS,
                       ) -> tuple[GpuSearchResult, str]:
    """optimize_gpu on the trace, or on pieces of a dense one with the fleet fixed and searched
    (see the module doc; fit the plan to the whole trace with fit_fleet), and the note saying
    which (empty: the whole trace)."""
    arrivals, lengths, note = search_sample(work, seed, sample_requests, FLEET_PIECE_S)
    options = dict(space_options or {})
    if note:  # too short for the fleet to scale within: a fixed fleet, searched
        options.setdefault("min_instances", MAX_INSTANCES_LADDER)
        options.setdefault("max_instances", (DEFAULT_MIN_INSTANCES,))
    result = optimize_gpu(GpuWorkload(arrivals, lengths, model, pricing, work.slo_ms),
                          work.percentile, evals, seed, instance_types=instance_types,
                          max_buffers=max_buffers, space_options=options, seeds=seeds,
                          progress=progress)
    return result, note


def fitted_result(work: RateWork, result: SearchResult, model: GpuLatencyModel,
                  pricing: Pricing, note: str) -> SearchResult:
    """A sampled gpu search's result with its fixed fleet fitted to the whole trace, whose
    replay becomes its simulated figures and judges it."""
    plan, whole, steps = fit_fleet(work, result.plan, model, pricing)
    p_ms = _tail_ms(work, whole)
    ok = p_ms <= work.slo_ms
    return replace(result, plan=plan, simulated=whole.metrics, feasible=ok, message=(
        f"{result.message}{note}{grown_note(steps)}" if ok else
        f"the fixed fleet found on a sample missed p{work.percentile:g} <= {work.slo_ms:g} ms "
        f"on the whole trace ({p_ms:.0f} ms at {plan.max_instances} instances){note}"))


def grown_note(steps: int) -> str:
    """What fit_fleet did, for a plan's description ("" when the fleet held as searched)."""
    return (f"; the fixed fleet grown {steps} ladder step(s) on the whole trace, whose busiest "
            "minutes the sample missed" if steps else "")


def fit_fleet(work: RateWork, plan: Plan, model: GpuLatencyModel, pricing: Pricing,
              max_steps: int = FLEET_REPAIR_STEPS) -> tuple[Plan, SimResult, int]:
    """A fixed fleet found on a sample, replayed on the whole trace and, while it misses the
    SLO there, grown one step of the ladder (at most max_steps): the sample judges batching
    well, but a fixed fleet must carry the trace's busiest minutes, which it may not hold.
    Returns the plan, its whole-trace run, and the steps taken."""
    result = _on_fleet(work, plan, model, pricing)
    steps = 0
    while not _judged(work, result) and steps < max_steps:
        size = next((n for n in MAX_INSTANCES_LADDER if n > plan.max_instances), None)
        if size is None:
            break
        plan = replace(plan, min_instances=size, max_instances=size, buffers=tuple(
            replace(b, max_concurrency=max(b.max_concurrency, size)) for b in plan.buffers))
        result = _on_fleet(work, plan, model, pricing)  # caps kept at least the fleet's size
        steps += 1
    return plan, result, steps


def _on_fleet(work: RateWork, plan: Plan, model: GpuLatencyModel, pricing: Pricing,
              arrivals: np.ndarray | None = None,
              lengths: np.ndarray | None = None) -> SimResult:
    """A gpu plan simulated on its instance type's fleet (the whole trace by default)."""
    service = service_for(model, str(plan.instance_type))
    return simulate(plan, work.arrivals_s if arrivals is None else arrivals,
                    work.lengths if lengths is None else lengths, service, pricing,
                    work.slo_ms)


def ragged_on_fleet(work: RateWork, model: GpuLatencyModel, pricing: Pricing,
                    instance_types: Sequence[str] | None = None, seed: int = 0,
                    ceilings: Sequence[int] = RAGGED_CEILINGS,
                    sample_requests: int = FLEET_SAMPLE_REQUESTS) -> Figures:
    """The ragged baseline on the fleet: the cheapest grid point meeting the SLO by simulation
    (token budget x queue delay x fleet ceiling, on each instance type), one batch per GPU."""
    arrivals, lengths, note = search_sample(work, seed, sample_requests, FLEET_PIECE_S)
    passed: list[tuple[float, Plan, SimResult]] = []
    tried = 0

    def run(plan: Plan) -> SimResult | None:
        nonlocal tried
        tried += 1
        result = _on_fleet(work, plan, model, pricing, arrivals, lengths)
        return result if _judged(work, result) else None

    for knobs in itertools.product(instance_types or sorted(INSTANCES), RAGGED_BATCH_TOKENS,
                                   RAGGED_DELAY_MS):
        if note:  # a fixed fleet, as MBS's and BATCH's on a sample: the smallest that holds
            found = smallest_passing(MAX_INSTANCES_LADDER,
                                     lambda n, k=knobs: run(_ragged_on(*k, n, n)))
            candidates = [(_ragged_on(*knobs, found[0], found[0]), found[1])] if found else []
        else:
            candidates = [(plan, r) for n in ceilings
                          if (r := run(plan := _ragged_on(*knobs, n, min(DEFAULT_MIN_INSTANCES,
                                                                         n)))) is not None]
        passed += [(r.metrics.end_to_end_cost_per_million_usd, plan, r)
                   for plan, r in candidates]
    grid = "fixed fleet (the smallest on the ladder)" if note else "fleet ceiling"
    how = (f"grid over instance type x max batch tokens x max queue delay x {grid}, by "
           f"simulation on the fleet; service time {SERVICE_TIME_LABEL}{note}")
    if not passed:
        return Figures("ragged", False, None, None, how, f"none of {tried} grid points met "
                       "the SLO", 0.0, tried)
    passed.sort(key=lambda row: row[0])
    _, plan, result = passed[0]
    if note:  # the sample's cheapest, fitted to the whole trace; if its fleet had to grow,
        # the next few too, and the cheapest there wins
        fitted = []
        for _, candidate, _ in passed[:RAGGED_FITTED]:
            fitted.append(fit_fleet(work, candidate, model, pricing))
            if fitted[-1][2] == 0 and _judged(work, fitted[-1][1]):
                break
        plan, result, steps = min(fitted, key=lambda f: (
            not _judged(work, f[1]), f[1].metrics.end_to_end_cost_per_million_usd))
        how += grown_note(steps) + f" (the cheapest of the sample's best {len(fitted)} there)"
    return Figures("ragged", _judged(work, result), result.metrics, plan, how,
                   f"{tried} grid points simulated", 0.0, tried)


def _ragged_on(kind: str, tokens: int, delay_ms: int, ceiling: int, floor: int) -> Plan:
    """The ragged plan with these knobs on a fleet of `kind`, floor..ceiling instances."""
    return replace(ragged_plan(tokens, delay_ms, GPU_MEMORY_MB, ceiling), backend="gpu",
                   instance_type=kind, min_instances=floor, max_instances=ceiling)


def smallest_passing(sizes: Sequence[int],
                     run: Callable[[int], SimResult | None]) -> tuple[int, SimResult] | None:
    """The smallest of `sizes` (ascending) whose run passes (not None), by bisection: a larger
    fleet never does worse on the same batches. None if even the largest fails."""
    lo, hi, found = 0, len(sizes) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = run(sizes[mid])
        if result is None:
            lo = mid + 1
        else:
            found, hi = (sizes[mid], result), mid - 1
    return found
