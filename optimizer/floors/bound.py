"""A lower bound on what any batching of a trace costs while it meets the SLO: a proof by LP
duality, certified by an exhaustive search of the legal groups. Pure (numpy, scipy's HiGHS).

Setting. Requests i = 1..n arrive at a_i with token lengths L_i. A schedule splits them into
batches; batch B runs at one memory m (from `memories_mb`), starts no earlier than its last
member arrives, takes t(|B|, L_B, m) ms, L_B its longest member's length (padding), and costs
C(B) = GB-seconds of Pricing.billed_ms(t) at m + the per-batch items (tables.py). A member's
latency is (start - a_i) + t, plus cold_start_ms in a new environment. The SLO holds when the
percentile-th latency is <= S, so at most K = allowed_misses(n, p) requests may miss.
Assumption (checked on every tabulated entry, and true of the fitted LatencyModel, whose
coefficients are >= 0): t, and so C, does not fall when |B| or L_B grows.

A group is a set G of requests with span(G) = max a - min a <= S - t(|G|, L_G, m) for some
memory m; its cost c(G) is the least C(|G|, L_G, m) over those m.

Claim. For any weights y >= 0 with sum over G of y_i <= c(G) for every group G, every schedule
that meets the SLO costs at least
    sum(y) - (the K - F largest y_i outside F)  +  one cold start's billed INIT
    +  n x the per-request items  (+ the dispatcher fleet's run items, given as `run`),
where F is the set of forced misses (below), which get y_i = 0.
Proof.
1. Take a schedule meeting the SLO and Met its requests within S (>= n - K of them, none in
   F). For a batch B let M = B n Met, if not empty, and j its earliest member: j is met, so
   a_last(M) - a_j + t(|B|, L_B, m) <= start - a_j + t <= S, and t(|M|, L_M, m) <= t(|B|,
   L_B, m) by the assumption: M is a group, and C(B) >= C(|M|, L_M, m) >= c(M) >= sum over M
   of y_i. The M of different batches are disjoint and cover Met, so the batches cost at least
   sum over Met of y_i >= sum(y) - (the K - F largest y_i outside F) (weak LP duality: y is
   a dual-feasible point of the covering LP whose integer points the schedules give).
2. Every request pays the per-request items once; a dispatcher-mode plan pays the fleet's run
   items, which depend on the arrivals only.
3. The first invocation of any schedule finds no environment: one batch is cold and, with
   rules.bill_init, is billed ceil((t + INIT)/g) g >= ceil(t/g) g + floor(INIT/g) g ms
   (g the billing step): at least floor(INIT/g) g ms at the smallest memory more than in 1.
4. Forced misses F: no environment is warm before a_1 + cold_start_ms, so a request whose
   batch would have to start before then (a_i + S - t(1, L_i) < a_1 + cold_start_ms, at the
   fastest memory) starts cold and misses when cold_start_ms + t(1, L_i) > S; a request that
   takes longer than S alone misses too. If F holds more than K, no schedule meets the SLO
   (InfeasibleSLO).
5. End to end: every batch also pays the per-batch log lines, lam (tables.UnitCosts), and no
   group holds more than max_batch requests, so y_i + lam / max_batch is feasible for the
   groups' end-to-end costs c(G) + lam: apply the claim to those weights.
Finding y. Column generation (Gilmore-Gomory, covering.py): the covering LP "min sum c(G) x_G,
every request in >= 1 chosen group" is solved by HiGHS over a growing set of groups; its duals
are y; groups.GroupOracle searches every legal group for ones y overpays and adds them, until
none is left or the rounds run out. Whatever y the rounds end with, the oracle's exhaustive
check gives rho = max over groups of sum(y)/c(G), and y / max(1, rho) satisfies every group's
constraint: the bound holds even when the rounds stop early.
- Up to EXACT_REQUESTS requests: one LP, with the misses in it (z_i >= 0 uncovers request i,
  sum z <= K - F), run until no group is overpaid: the bound is then that LP's value, which a
  looser SLO never raises (every group stays legal).
- Beyond: blocks of at most BLOCK_REQUESTS requests, cut at gaps longer than S (no group spans
  one) and, in longer runs, at the widest gap of their middle half. Each block has its own LP
  and its y is certified against the groups inside it. 6. A group across a cut lies within S of
  it on both sides (its span is at most S), so the requests there (the zone) take
  min(y_i, f(L_i)) with f(L) = min over m, b <= max_batch and L' >= L of C(b, L', m) / b: a
  group of such requests costs at least |G| times that, and groups inside a block only lose
  weight. The misses are then dropped from the certified y as in the claim.
What it leaves out (each only lowers the bound): concurrency caps, queueing, every cold start
after the first, keep-alive, and what a missed request adds to a batch it shares.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from buffers.types import ServiceTime
from optimizer.floors.covering import ColumnGeneration
from optimizer.floors.groups import GroupOracle
from optimizer.floors.tables import (
    BatchTable,
    UnitCosts,
    allowed_misses,
    check_trace,
    forced_misses,
    infeasible_slo,
    split_runs,
    window_capacity,
)
from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import MB_PER_GB, Pricing

USD_SCALE = 1e6  # the LPs run in micro-dollars: HiGHS's tolerances (1e-7) suit costs near 1
MAX_ROUNDS = 20  # column generation rounds (about 1.5 s each on the default trace here)
GAP = 0.01  # a block is done when its certificate is within 1% of its LP value
BLOCK_REQUESTS = 400  # LPs are solved per block of at most this many requests
EXACT_REQUESTS = 400  # up to this many, one LP with the misses in it, run to convergence
EXACT_ROUNDS = 200


@dataclass(frozen=True)
class FloorBound:
    """The bound for one trace and SLO. Its totals are bounds; its line items are apportioned.

    cost.end_to_end_usd bounds the end-to-end bill of dispatcher-mode plans (online path, with
    the run items `run` where given); cost.infer_usd bounds the infer function's bill of any
    plan. infer_compute_usd and infer_request_usd split the infer bound by the fee's share of
    the LP's cost; api, front_door, egress and the per-request part of logs_usd are the
    per-request items exactly; logs_usd also holds the per-batch log lines' part (step 5).
    """

    requests: int
    allowed_misses: int
    forced_misses: int
    cost: CostBreakdown
    lp_usd: float  # the covering LPs' value (infer): no certificate of this kind can pass it
    certified_usd: float  # what the certified weights reach of it (misses dropped only where
    # the LP has them: traces of up to EXACT_REQUESTS)
    init_usd: float  # the one cold start's billed INIT, inside infer_compute_usd
    invocations: float  # the LPs' batches: the sum of x_G
    real_tokens: float
    padded_tokens: float  # the LPs' groups padded to their longest member, x_G-weighted
    memories_mb: tuple[int, ...]
    max_batch: int  # the largest group considered (the cap, or the most in one SLO window)
    rounds: int  # column generation rounds
    infeasible: str | None = None  # why no plan meets the SLO (strict=False), else None

    @property
    def end_to_end_per_million_usd(self) -> float:
        return self.cost.per_million(self.requests)["end_to_end_cost_per_million_usd"]

    @property
    def infer_per_million_usd(self) -> float:
        return self.cost.per_million(self.requests)["infer_cost_per_million_usd"]

    @property
    def certificate_gap(self) -> float:
        """How far the certified weights fall short of the LP value (0: the LP optimum)."""
        return 1.0 - self.certified_usd / self.lp_usd if self.lp_usd > 0 else 0.0


def lower_bound(arrivals_s: np.ndarray, lengths: np.ndarray, service_ms: ServiceTime,
                pricing: Pricing, slo_ms: float, *, percentile: float = 99.0,
                memories_mb: tuple[int, ...] = (1769,), max_batch: int | None = None,
                rules: LambdaRules | None = None, arch: str = "x86",
                run: CostBreakdown | None = None,
                max_rounds: int = MAX_ROUNDS, strict: bool = True) -> FloorBound:
    """The cost no batching of this trace can beat while meeting p{percentile} <= slo_ms.

    Parameters: memories_mb the sizes a batch may run at (each group takes its cheapest legal
    one, which covers plans that fix one size per buffer); max_batch caps a batch's size (None:
    no cap); rules the cold start and INIT billing; run the run items every plan pays (e.g.
    tables.dispatcher_run_cost), None for none; max_rounds caps column generation (the bound
    stays valid when it stops early, only looser); strict=False, where more requests must miss
    than the percentile lets, bounds the plans that miss only those instead of raising (the
    FloorBound then says so in `infeasible`).
    Returns: FloorBound (the module doc gives the argument and what it leaves out).
    Raises: InfeasibleSLO, naming the SLO, when more requests must miss than the percentile lets
    (strict only).
    """
    arrivals, lens = check_trace(arrivals_s, lengths, slo_ms, percentile)
    rules = rules or LambdaRules()
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    n = lens.size
    misses = allowed_misses(n, percentile)
    levels, level_of = np.unique(lens, return_inverse=True)
    cap = window_capacity(arrivals, slo_ms / 1000.0)
    cap = cap if max_batch is None else min(cap, max_batch)
    units = UnitCosts.online(pricing, arch)
    table = BatchTable.build(service_ms, pricing, units, levels, tuple(memories_mb), cap, slo_ms)
    alone_ms = table.service_ms[:, 0, :].min(axis=0)[level_of]
    forced = forced_misses(arrivals, alone_ms, slo_ms, rules)
    infeasible = None
    if forced.sum() > misses:
        error = infeasible_slo(forced, lens, alone_ms, misses, slo_ms, percentile, rules)
        if strict:
            raise error
        infeasible, misses = str(error), int(forced.sum())
    exact = n <= EXACT_REQUESTS
    runs = [np.arange(n)] if exact else split_runs(arrivals, slo_ms / 1000.0, BLOCK_REQUESTS)
    block = np.repeat(np.arange(len(runs)), [r.size for r in runs])
    oracle = GroupOracle(arrivals, level_of, table, table.infer_usd * USD_SCALE, slo_ms, block)
    generation = ColumnGeneration(oracle, ~forced, block,
                                   misses - int(forced.sum()) if exact else None)
    rounds = generation.run(max(max_rounds, EXACT_ROUNDS) if exact else max_rounds, GAP)
    y = generation.center / USD_SCALE
    zone = _zone(arrivals, runs, slo_ms)
    y[zone] = np.minimum(y[zone], _fallback_usd(table)[level_of[zone]])
    floor = _assemble(generation, y, rounds, forced, misses, lens, table, units, pricing, rules,
                      run)
    certified = _met_sum(y, forced, misses) if exact else float(y.sum())
    return replace(floor, infeasible=infeasible, certified_usd=certified)


def _zone(arrivals: np.ndarray, runs: list[np.ndarray], slo_ms: float) -> np.ndarray:
    """Requests a group across a block cut could hold: within S of a cut inside a gap <= S."""
    zone = np.zeros(arrivals.size, bool)
    for left, right in itertools.pairwise(runs):
        last_s, first_s = arrivals[left[-1]], arrivals[right[0]]
        if first_s - last_s <= slo_ms / 1000.0:  # a cut, not a gap no group spans
            zone |= (arrivals >= first_s - slo_ms / 1000.0) & \
                (arrivals <= last_s + slo_ms / 1000.0)
    return zone


def _fallback_usd(table: BatchTable) -> np.ndarray:
    """Per level L: min over memory, size b and level >= L of C(b, L', m) / b; a request
    weighted so can join any group without pushing it over its cost (step 6)."""
    sizes = np.arange(1, table.max_batch + 1)[None, :, None]
    share = np.min(table.infer_usd / sizes, axis=(0, 1))  # [level]
    return np.minimum.accumulate(share[::-1])[::-1]


def _met_sum(y: np.ndarray, forced: np.ndarray, misses: int) -> float:
    """sum(y) less the largest K - |F| weights outside F (the forced ones weigh 0)."""
    free = np.sort(y[~forced])
    drop = max(0, misses - int(forced.sum()))
    return float(free[:free.size - drop].sum()) if drop else float(free.sum())


def _init_usd(table: BatchTable, units: UnitCosts, pricing: Pricing, rules: LambdaRules) -> float:
    """The least billed INIT one cold start adds (step 3 of the proof)."""
    if not rules.bill_init:
        return 0.0
    step = pricing.billing_granularity_ms
    init_ms = math.floor(rules.cold_start_ms / step) * step
    return init_ms / 1000.0 * min(table.memories_mb) / MB_PER_GB * units.gb_s_usd


def _assemble(generation: ColumnGeneration, y: np.ndarray, rounds: int, forced: np.ndarray,
              misses: int, lens: np.ndarray, table: BatchTable, units: UnitCosts,
              pricing: Pricing, rules: LambdaRules, run: CostBreakdown | None) -> FloorBound:
    n = lens.size
    infer_usd = _met_sum(y, forced, misses)
    # step 5: every batch also pays the per-batch log lines, lam; no group exceeds max_batch
    # members, so y_i + lam / max_batch is feasible for the end-to-end group costs
    per_batch_logs = units.per_batch.total_usd - units.batch_fee_usd
    e2e_usd = _met_sum(y + per_batch_logs / table.max_batch, forced, misses)
    batches, padded = generation.primal()
    lp_usd = float(generation.lp_value.sum()) / USD_SCALE
    fee_usd = min(infer_usd, batches * units.batch_fee_usd * infer_usd / lp_usd
                  if lp_usd > 0 else 0.0)
    init_usd = _init_usd(table, units, pricing, rules)
    per_request = CostBreakdown(**{k: v * n for k, v in units.per_request.line_items().items()},
                                path=RequestPath.ONLINE)
    cost = per_request + CostBreakdown(
        infer_compute_usd=infer_usd - fee_usd + init_usd, infer_request_usd=fee_usd,
        logs_usd=e2e_usd - infer_usd, path=RequestPath.ONLINE)
    if run is not None:
        cost = cost + run
    return FloorBound(requests=n, allowed_misses=misses, forced_misses=int(forced.sum()),
                      cost=cost, lp_usd=lp_usd, certified_usd=0.0, init_usd=init_usd,
                      invocations=batches,
                      real_tokens=float(lens.sum()), padded_tokens=padded,
                      memories_mb=table.memories_mb, max_batch=table.max_batch, rounds=rounds)
