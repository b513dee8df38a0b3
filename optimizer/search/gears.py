"""Gear plans offline: load levels from a trace, one plan per level, and their replay.

- Levels: the selector's own measured rate (EWMA, tau 60 s) at each arrival of the trace, split
  at its k/G quantiles, so each of the G gears serves about 1/G of the requests; a boundary at
  rate r switches up above r(1 + h) and down below r(1 - h) (buffers/gears.py).
- Each gear's workload is the set of requests the selector gives it when replaying the trace,
  on the gear's own clock (the time while another gear is active is cut out), so a gear is
  tuned on exactly the traffic it will serve.
- Each gear is searched with the static plan's layout fixed (buffers/gears.py says why) and the
  static plan as a seed, so in the estimator no gear costs more than the static plan on its own
  traffic. A gear whose search finds nothing feasible keeps the static plan's batching.
  Gear searches assume warm environments (no cold starts): the gears share the static plan's
  functions, which the rest of the trace keeps warm (keep-alive is minutes), while a gear's
  short cut-out workload would otherwise start cold and miss a p99 on cold starts alone.
  The replay of the whole trace with the gear set (cold starts on) judges the result.
- The replay of a gear set runs the same GearedBatcher as the dispatcher (buffers/geared.py):
  new arrivals go to the active gear's buffers, and requests already buffered leave under their
  own gear's rules.
- What a gear may change is the gear space's (default: batching over the fixed layout) and how
  a gear's workload is estimated is the gear context's (default: warm Lambda environments); a
  gpu plan's gears also search the fleet's bounds (optimizer/search/fleet_gears.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from buffers.gears import GearConfig, GearSelector, GearSet, RateMeter
from buffers.plan import Plan
from optimizer.estimator.estimate import EstimatorContext
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.metrics import PlanMetrics
from optimizer.search.optimize import optimize
from optimizer.search.result import SearchResult
from optimizer.search.space import SearchSpace
from optimizer.sim.engine import simulate
from optimizer.sim.inputs import SimInputs

DEFAULT_GEARS = 3
HYSTERESIS = 0.15  # switch up at 1.15x a boundary's rate, down at 0.85x
RATE_TAU_S = 60.0  # the rate's time constant, and the minimum dwell in a gear
GEAR_TRIES = 2
MAX_GEAR_PERCENTILE = 99.99
GearContext = Callable[[SimInputs, float, str], EstimatorContext]  # (gear workload, slo, arch)


def warm_context(sub: SimInputs, slo_ms: float, arch: str) -> EstimatorContext:
    """The estimator's context for a gear's workload (sub.rules: warm, see the module doc)."""
    return EstimatorContext.build(sub.arrivals_s, sub.lengths, sub.service_ms, sub.pricing,
                                  slo_ms, rules=sub.rules, arch=arch, fleet=sub.fleet)


def layout_space(static: Plan, space: SearchSpace) -> SearchSpace:
    """`space`'s batching choices over `static`'s fixed layout (what a lambda gear searches)."""
    return SearchSpace(mode=space.mode, max_buffers=len(static.buffers), arch=space.arch,
                       batch_sizes=space.batch_sizes, timeouts_ms=space.timeouts_ms,
                       batch_tokens=space.batch_tokens, layout=static.buffers)


def measured_rates(arrivals_s: np.ndarray, tau_s: float, initial_rps: float) -> np.ndarray:
    """The GearSelector's rate estimate just after each arrival (its RateMeter)."""
    meter = RateMeter(tau_s, initial_rps)
    return np.fromiter((meter.observe(t) for t in np.asarray(arrivals_s, np.float64).tolist()),
                       dtype=np.float64, count=len(arrivals_s))


def gear_config(arrivals_s: np.ndarray, gears: int = DEFAULT_GEARS,
                hysteresis: float = HYSTERESIS, tau_s: float = RATE_TAU_S,
                min_dwell_s: float = RATE_TAU_S) -> GearConfig:
    """Boundaries at the measured rates below which k/G of the requests arrive."""
    if gears < 2:
        raise ValueError(f"gears must be >= 2, got {gears}")
    if not 0 <= hysteresis < 1:
        raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis}")
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.size < gears:
        raise ValueError(f"need at least {gears} arrivals for {gears} gears, got {arrivals.size}")
    mean_rps = arrivals.size / max(float(arrivals[-1] - arrivals[0]), tau_s)
    rates = measured_rates(arrivals, tau_s, mean_rps)
    edges = [max(float(np.quantile(rates, k / gears)), 1e-6) for k in range(1, gears)]
    for i in range(1, len(edges)):  # bands that do not overlap, so every gear can be reached
        edges[i] = max(edges[i], edges[i - 1] * (1 + hysteresis) / (1 - hysteresis) * 1.01)
    start = int(np.searchsorted(edges, mean_rps))
    return GearConfig(up_rps=tuple(e * (1 + hysteresis) for e in edges),
                      down_rps=tuple(e * (1 - hysteresis) for e in edges), tau_s=tau_s,
                      min_dwell_s=min_dwell_s, initial_gear=start, initial_rps=float(mean_rps))


def assign_gears(arrivals_s: np.ndarray, config: GearConfig) -> np.ndarray:
    """The gear each arrival goes to, replaying the selector over the trace."""
    selector = GearSelector(config)
    return np.fromiter((selector.observe(t) for t in np.asarray(arrivals_s).tolist()),
                       dtype=np.int64, count=len(arrivals_s))


def gear_clock(arrivals_s: np.ndarray, gear_of: np.ndarray, gear: int) -> np.ndarray:
    """Arrival times of `gear`'s requests on its own clock: time counts only while it is active
    (the gap before arrival i belongs to the gear arrival i-1 went to)."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    gaps = np.diff(arrivals, prepend=arrivals[:1])
    active = np.concatenate(([gear_of[0]], gear_of[:-1])) == gear
    clock = np.cumsum(np.where(active, gaps, 0.0))
    return clock[gear_of == gear]


@dataclass(frozen=True)
class GearPlans:
    """A gear set, each gear's search (None: kept the static batching), and the replays of the
    whole trace with the static plan and with the gears (cold starts on)."""

    gears: GearSet
    searches: tuple[SearchResult | None, ...]
    requests: tuple[int, ...]  # requests per gear in the replayed trace
    gear_percentile: float  # the percentile the warm gear searches targeted
    static: PlanMetrics
    static_percentile_ms: float
    geared: PlanMetrics
    geared_percentile_ms: float
    meets_slo: bool

    def meta(self) -> dict[str, Any]:
        """meta["gears"]: the rule, the levels, and the replays' simulated figures."""
        extra = []
        for g, result in enumerate(self.searches):
            level: dict[str, Any] = {"gear": g, "requests": self.requests[g]}
            if result is not None and result.plan is not None:
                level["predicted_warm"] = {"modelled": result.estimated.to_dict(),
                                           "simulated": result.simulated.to_dict()}
            else:
                level["note"] = "no feasible plan of its own: keeps the static plan's batching"
            extra.append(level)
        return {**self.gears.to_meta(extra), "gear_percentile": self.gear_percentile,
                "meets_slo": self.meets_slo,
                "simulated": {"static": self.static.to_dict(), "geared": self.geared.to_dict()}}


def plan_gears(static: Plan, sim: SimInputs, space: SearchSpace, slo_ms: float,
               percentile: float, evals: int, seed: int, config: GearConfig | None = None,
               progress: Any = None, gear_space: SearchSpace | None = None,
               context: GearContext = warm_context) -> GearPlans:
    """One plan per load level over `static`'s layout (see the module doc); each gear searches
    gear_space (default layout_space(static, space)) with `context`'s estimates.

    The warm gear searches target p{percentile + 100 x c}, where c is the share of requests
    that miss the SLO in a cold batch when the static plan replays the trace, so that the cold
    starts the replay will add still fit; if the geared replay misses the SLO, the target is
    raised by its shortfall and the gears searched again (GEAR_TRIES in all).
    """
    arrivals = np.asarray(sim.arrivals_s, dtype=np.float64)
    config = config or gear_config(arrivals)
    gear_space = gear_space or layout_space(static, space)
    run = {"rules": sim.rules, "arch": space.arch, "fleet": sim.fleet, "scaling": sim.scaling}
    base = simulate(static, arrivals, sim.lengths, sim.service_ms, sim.pricing, slo_ms, **run)
    cold = base.batches.cold[base.batch_of_request] & (base.latency_ms > slo_ms)
    target = percentile + 100.0 * float(np.mean(cold))
    for _ in range(GEAR_TRIES):
        target = min(target, MAX_GEAR_PERCENTILE)
        gears, searches, counts = _search_gears(static, sim, gear_space, slo_ms, target, evals,
                                                seed, config, progress, context)
        replay = simulate(static, arrivals, sim.lengths, sim.service_ms, sim.pricing, slo_ms,
                          gears=gears, **run)
        p_ms = float(np.percentile(replay.latency_ms, percentile))
        if p_ms <= slo_ms:
            break
        target += 100.0 * (percentile / 100.0 - float(np.mean(replay.latency_ms <= slo_ms)))
    base_ms = float(np.percentile(base.latency_ms, percentile))
    return GearPlans(gears, searches, counts, target, base.metrics, base_ms, replay.metrics, p_ms,
                     p_ms <= slo_ms)


def _search_gears(static: Plan, sim: SimInputs, gear_space: SearchSpace, slo_ms: float,
                  percentile: float, evals: int, seed: int, config: GearConfig,
                  progress: Any, context: GearContext
                  ) -> tuple[GearSet, tuple[SearchResult | None, ...], tuple[int, ...]]:
    arrivals = np.asarray(sim.arrivals_s, dtype=np.float64)
    gear_of = assign_gears(arrivals, config)
    warm = replace(sim.rules or LambdaRules(), cold_start_ms=0.0)
    plans, searches = [], []
    for g in range(config.gears):
        mask = gear_of == g
        result = None
        if np.any(mask):
            sub = SimInputs(gear_clock(arrivals, gear_of, g), np.asarray(sim.lengths)[mask],
                            sim.service_ms, sim.pricing, warm, sim.fleet, sim.scaling)
            result = optimize(context(sub, slo_ms, gear_space.arch), sub, gear_space, slo_ms,
                              percentile, evals, seed + g, progress, seeds=(static,))
        plans.append(result.plan if result is not None and result.plan is not None else static)
        searches.append(result if result is not None and result.plan is not None else None)
    named = tuple(replace(p, name=f"{static.name}-gear{g}", policy=static.policy, meta={})
                  for g, p in enumerate(plans))
    counts = tuple(int(np.sum(gear_of == g)) for g in range(config.gears))
    return GearSet(named, config), tuple(searches), counts

