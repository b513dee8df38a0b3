"""The floors (optimizer/floors/): on traces small enough to enumerate every batching (every set
partition, every memory per batch), the bound is never above the true optimum and the
clairvoyant schedule, replayed by the simulator, never below it; the group search is
exhaustive; an SLO no batching meets is a clear error; a looser SLO never raises the bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.floors import bound as bound_module
from optimizer.floors.bound import lower_bound
from optimizer.floors.groups import GroupOracle
from optimizer.floors.schedule_search import clairvoyant
from optimizer.floors.tables import BatchTable, InfeasibleSLO, UnitCosts, allowed_misses
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import LatencyModel
from optimizer.platform.pricing import MB_PER_GB, Pricing

# the shipped CPU profile's form, rounded: ~15 ms for one short request at 1,769 MB
MODEL = LatencyModel(device="cpu", threads=2, fixed_ms=8.9, per_item_ms=0.08, per_token_ms=0.16,
                     per_token_sq_ms=0.0002, parallel_fraction=0.79)
PRICING = Pricing()
UNITS = UnitCosts.online(PRICING)
WARM = LambdaRules(cold_start_ms=0.0)  # the brute force's platform: no cold starts
REL = 1e-7  # LP tolerances: a bound may exceed the optimum by this much, relatively


def set_partitions(items: list[int]):
    """Every partition of items into non-empty blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1:]]


def batch_usd(size: int, padded: int, memory_mb: int) -> tuple[float, float]:
    """(infer, infer + per-batch log lines) of one warm batch, as the simulator bills it."""
    ms = MODEL(size, padded, memory_mb)
    infer = (PRICING.billed_ms(ms) / 1000.0 * memory_mb / MB_PER_GB * UNITS.gb_s_usd
             + UNITS.batch_fee_usd)
    return infer, infer + UNITS.per_batch.total_usd - UNITS.batch_fee_usd


def brute_force(arrivals: np.ndarray, lengths: np.ndarray, slo_ms: float, percentile: float,
                memories: tuple[int, ...]) -> tuple[float, float]:
    """The cheapest (infer, end to end) over every batching and memory choice meeting the SLO.

    Each batch starts when its last member arrives on a warm environment (no cold starts, no
    concurrency cap): no schedule of the same batches does better on latency or cost.
    """
    n = arrivals.size
    best_infer = best_e2e = math.inf
    for partition in set_partitions(list(range(n))):
        for choice in itertools.product(memories, repeat=len(partition)):
            latency = np.zeros(n)
            infer = e2e = 0.0
            for batch, memory in zip(partition, choice, strict=True):
                padded = int(lengths[batch].max())
                start_s = float(arrivals[batch].max())
                latency[batch] = (start_s - arrivals[batch]) * 1000.0 + MODEL(
                    len(batch), padded, memory)
                one, whole = batch_usd(len(batch), padded, memory)
                infer, e2e = infer + one, e2e + whole
            if np.percentile(latency, percentile) <= slo_ms:
                best_infer, best_e2e = min(best_infer, infer), min(best_e2e, e2e)
    return best_infer, best_e2e + n * UNITS.per_request.total_usd


def small_trace(seed: int, most: int = 8) -> tuple[np.ndarray, np.ndarray, float, float]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, most + 1))
    arrivals = np.sort(rng.random(n) * float(rng.choice([0.3, 1.0, 3.0])))
    lengths = rng.integers(1, 257, n)
    return arrivals, lengths, float(rng.choice([150.0, 300.0, 600.0, 1000.0])), \
        float(rng.choice([50.0, 90.0, 99.0]))


def test_allowed_misses_is_the_most_numpy_percentile_tolerates() -> None:
    # one more miss than allowed always lifts the percentile over the SLO; the count is tight:
    # misses barely over the SLO keep the percentile within a hair of it
    for n in range(1, 260):
        for percentile in (50.0, 90.0, 99.0, 99.9):
            misses = allowed_misses(n, percentile)
            assert misses <= math.ceil(n * (1 - percentile / 100.0)) + 1, (n, percentile)
            latency = np.zeros(n)
            latency[:misses + 1] = 2.0
            assert misses == n or np.percentile(latency, percentile) > 1.0, (n, percentile)
            latency[:] = 0.0
            latency[:misses] = 1.0 + 1e-9
            assert np.percentile(latency, percentile) <= 1.0 + 1e-9, (n, percentile)


@pytest.mark.parametrize("seed", range(40))
def test_group_search_is_exhaustive(seed: int) -> None:
    # GIVEN random weights on a small trace WHEN the oracle ranks every window THEN its largest
    # ratio equals the largest over every legal subset, and every group it reports is violated
    rng = np.random.default_rng(seed)
    arrivals, lengths, slo_ms, _ = small_trace(seed)
    levels, level_of = np.unique(lengths, return_inverse=True)
    memories = (1024, 1769, 3538)
    table = BatchTable.build(MODEL, PRICING, UNITS, levels, memories, arrivals.size, slo_ms)
    oracle = GroupOracle(arrivals, level_of, table, table.infer_usd * 1e6, slo_ms)
    y = rng.random(arrivals.size) * float(rng.choice([0.5, 3.0, 10.0]))
    best = 0.0
    for size in range(1, arrivals.size + 1):
        for group in itertools.combinations(range(arrivals.size), size):
            members = list(group)
            level = level_of[members].max()
            span_ms = (arrivals[members].max() - arrivals[members].min()) * 1000.0
            legal = span_ms + table.service_ms[:, size - 1, level] <= slo_ms
            if legal.any():
                cost = table.infer_usd[legal, size - 1, level].min() * 1e6
                best = max(best, y[members].sum() / cost)
    assert oracle.check(y, threshold=0.0).max_ratio == pytest.approx(best, rel=1e-12)
    check = oracle.check(y, collect=True)
    for group, cost in zip(check.groups, oracle.group_costs(list(check.groups)), strict=True):
        assert y[list(group)].sum() > cost


@pytest.mark.parametrize("seed", range(30))
def test_bound_is_below_the_optimum_and_the_clairvoyant_above(seed: int) -> None:
    arrivals, lengths, slo_ms, percentile = small_trace(seed)
    memories = (1769,) if arrivals.size > 6 else (1024, 3538)
    optimum_infer, optimum_e2e = brute_force(arrivals, lengths, slo_ms, percentile, memories)
    assert math.isfinite(optimum_infer), "every trace here has a batching that meets the SLO"
    floor = lower_bound(arrivals, lengths, MODEL, PRICING, slo_ms, percentile=percentile,
                        memories_mb=memories, rules=WARM)
    assert floor.cost.infer_usd <= optimum_infer * (1 + REL)
    assert floor.cost.end_to_end_usd <= optimum_e2e * (1 + REL)
    found = clairvoyant(arrivals, lengths, MODEL, PRICING, slo_ms, percentile=percentile,
                        memories_mb=memories, rules=WARM)
    assert found.tail_ms <= slo_ms
    assert found.result.metrics.cost.infer_usd >= optimum_infer * (1 - REL)
    assert found.result.metrics.requests == arrivals.size


@pytest.mark.parametrize("seed", range(12))
def test_bound_holds_across_block_cuts(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN blocks of 3 requests, column generation per block and two rounds at most
    # THEN the zone weights cover the groups across cuts and the bound stays below the optimum
    monkeypatch.setattr(bound_module, "EXACT_REQUESTS", 0)
    monkeypatch.setattr(bound_module, "BLOCK_REQUESTS", 3)
    arrivals, lengths, slo_ms, percentile = small_trace(100 + seed)
    optimum_infer, _ = brute_force(arrivals, lengths, slo_ms, percentile, (1769,))
    floor = lower_bound(arrivals, lengths, MODEL, PRICING, slo_ms, percentile=percentile,
                        memories_mb=(1769,), rules=WARM, max_rounds=2)
    assert floor.cost.infer_usd <= optimum_infer * (1 + REL)


@pytest.mark.parametrize("seed", range(8))
def test_cold_starts_keep_the_bound_below_the_clairvoyant(seed: int) -> None:
    # the default rules: 6 s cold starts, billed INIT; the first batch always misses
    rng = np.random.default_rng(200 + seed)
    arrivals = np.concatenate(([0.0], 10.0 + np.sort(rng.random(11) * 4.0)))
    lengths = rng.integers(1, 257, arrivals.size)
    floor = lower_bound(arrivals, lengths, MODEL, PRICING, 1000.0, percentile=75.0)
    found = clairvoyant(arrivals, lengths, MODEL, PRICING, 1000.0, percentile=75.0)
    assert floor.forced_misses >= 1  # the first request starts cold
    assert floor.cost.infer_usd <= found.result.metrics.cost.infer_usd * (1 + REL)
    assert found.result.metrics.cold_starts >= 1


def test_an_slo_no_batching_meets_is_a_clear_error() -> None:
    arrivals, lengths = np.array([0.0, 0.01, 0.02]), np.array([10, 200, 256])
    with pytest.raises(InfeasibleSLO, match=r"p99 <= 5 ms.*longer than 5 ms alone"):
        lower_bound(arrivals, lengths, MODEL, PRICING, 5.0, rules=WARM)
    with pytest.raises(InfeasibleSLO, match=r"p99 <= 5 ms"):
        clairvoyant(arrivals, lengths, MODEL, PRICING, 5.0, rules=WARM)
    with pytest.raises(InfeasibleSLO, match=r"p99 <= 1000 ms.*before any environment is warm"):
        lower_bound(arrivals, lengths, MODEL, PRICING, 1000.0)  # all due while the first is cold


traces = st.integers(2, 9).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n).map(sorted),
    st.lists(st.integers(1, 256), min_size=n, max_size=n)))


@settings(max_examples=40, deadline=None)
@given(trace=traces, slos=st.lists(st.sampled_from([60.0, 120.0, 250.0, 500.0, 1000.0, 4000.0]),
                                   min_size=2, max_size=2, unique=True),
       percentile=st.sampled_from([50.0, 90.0, 99.0]))
def test_a_looser_slo_never_raises_the_bound(trace, slos, percentile) -> None:
    arrivals, lengths = np.asarray(trace[0]), np.asarray(trace[1])
    tight, loose = sorted(slos)
    try:
        low = lower_bound(arrivals, lengths, MODEL, PRICING, tight, percentile=percentile,
                          memories_mb=(1024, 1769), rules=WARM)
    except InfeasibleSLO:
        return
    high = lower_bound(arrivals, lengths, MODEL, PRICING, loose, percentile=percentile,
                       memories_mb=(1024, 1769), rules=WARM)
    assert high.cost.infer_usd <= low.cost.infer_usd * (1 + REL)
    assert high.cost.end_to_end_usd <= low.cost.end_to_end_usd * (1 + REL)


def test_a_service_time_that_falls_with_batch_size_is_refused() -> None:
    def odd(batch: int, length: int, memory_mb: int) -> float:
        return 50.0 / batch

    with pytest.raises(ValueError, match="must not fall as batch size grows"):
        lower_bound(np.array([0.0, 0.1]), np.array([5, 6]), odd, PRICING, 1000.0, rules=WARM)
