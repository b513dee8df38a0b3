"""The Bayesian plan search: known optimum, managed-mode constraints, infeasibility, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from buffers.plan import MAX_BATCH_WITHOUT_WINDOW, DispatchMode
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.search.encoding import Encoding
from optimizer.search.evaluation import CachedEstimator, judge
from optimizer.search.optimize import exhaustive, optimize
from optimizer.search.space import SearchSpace, make_space
from optimizer.sim.inputs import SimInputs

PRICING = Pricing()
WARM = LambdaRules(cold_start_ms=0.0)


def toy_service(batch: int, length: int, memory_mb: int) -> float:
    """A stand-in model: 10 ms per call, 0.02 ms per padded token, twice as fast at 3,538 MB."""
    return (10.0 + 0.02 * batch * length) * (1769.0 / min(memory_mb, 3538))


def toy_workload(n: int = 800, rate_rps: float = 4.0, seed: int = 1) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Poisson arrivals; 70% short (8-40 tokens) and 30% long (100-256) requests."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, n))
    long = rng.random(n) < 0.3
    lengths = np.where(long, rng.integers(100, 257, n), rng.integers(8, 41, n))
    return arrivals, lengths.astype(np.int64)


def toy(slo_ms: float = 600.0, service=toy_service, sim_service=None):
    arrivals, lengths = toy_workload()
    ctx = EstimatorContext.build(arrivals, lengths, service, PRICING, slo_ms, rules=WARM)
    sim = SimInputs(arrivals, lengths, sim_service or service, PRICING, WARM)
    return ctx, sim


SMALL = SearchSpace(max_buffers=2, batch_sizes=(1, 4, 16), timeouts_ms=(0, 100, 400),
                    memories_mb=(1769, 3538), boundaries=(40, 128))


def test_cached_estimator_equals_estimate() -> None:
    ctx, sim = toy()
    enc = Encoding.build(SMALL, sim.lengths)
    cached = CachedEstimator(ctx)
    for point in list(enc.grid())[::97]:
        plan = enc.decode(point)
        assert cached(plan) == estimate(plan, ctx)


def test_search_finds_the_exhaustive_optimum_of_a_toy_space() -> None:
    # GIVEN a space small enough to enumerate (2 buffers, 2 cut candidates, 18 settings each)
    ctx, sim = toy()
    best, tried = exhaustive(ctx, SMALL, sim.lengths, 600.0, 99)
    assert best is not None and tried > 300
    # WHEN the search runs with a budget well below the grid's size
    result = optimize(ctx, sim, SMALL, 600.0, 99, evals=150, seed=0)
    # THEN it returns the grid's optimum, and the plan meets the SLO modelled and simulated
    assert result.feasible and result.plan is not None
    assert result.estimated.cost_per_million_usd == pytest.approx(
        best.cost_per_million_usd, rel=1e-9)
    assert result.estimated.p99_ms <= 600.0
    assert result.simulated is not None and result.simulated.p99_ms <= 600.0


def test_every_point_decodes_to_a_contiguous_cover_and_round_trips() -> None:
    arrivals, lengths = toy_workload()
    enc = Encoding.build(make_space("dispatcher", 4), lengths)
    rng = np.random.default_rng(0)
    for _ in range(200):
        point = [int(rng.integers(len(d.choices))) for d in enc.dimensions]
        plan = enc.decode(point)  # Plan() validates: covers 1..256 without gaps or overlap
        assert plan.buffers[0].min_length == 1 and plan.buffers[-1].max_length == 256
        assert 1 <= len(plan.buffers) <= 4
        assert enc.decode(enc.encode(plan)).buffers == plan.buffers


def test_managed_mode_never_evaluates_an_invalid_plan() -> None:
    # GIVEN a managed space whose batch sizes go past 10 and whose windows include 0 s
    ctx, sim = toy(slo_ms=2500.0)
    space = make_space("managed", 2, slo_ms=2500.0, batch_range=(1, 32))
    assert space.timeouts_ms == (0, 1000, 2000, 3000)
    enc = Encoding.build(space, sim.lengths)
    # THEN the encoding refuses BatchSize > 10 at a 0 s window
    bad = [0] * len(enc.dimensions)
    bad[enc.names.index("batch0")] = space.batch_sizes.index(16)
    bad[enc.names.index("timeout0")] = 0
    assert not enc.valid(bad)
    with pytest.raises(ValueError, match="BatchSize <= 10"):
        enc.decode(bad)
    # WHEN the search runs, every plan it estimated follows the managed rules
    result = optimize(ctx, sim, space, 2500.0, 99, evals=200, seed=3)
    assert len(result.history) > 16
    for ev in result.history:
        for spec in ev.plan.buffers:
            assert spec.dispatch_mode is DispatchMode.MANAGED
            assert spec.timeout_ms % 1000 == 0
            assert spec.timeout_ms >= 1000 or spec.max_batch_size <= MAX_BATCH_WITHOUT_WINDOW
    assert any(s.max_batch_size > MAX_BATCH_WITHOUT_WINDOW
               for ev in result.history for s in ev.plan.buffers)


def test_managed_space_without_a_small_batch_at_window_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="batch size <= 10"):
        SearchSpace(mode="managed", batch_sizes=(16, 32), timeouts_ms=(0, 1000))
    with pytest.raises(ValueError, match="whole seconds"):
        SearchSpace(mode="managed", timeouts_ms=(0, 500))


def test_a_plan_missing_the_slo_is_never_returned_even_when_cheaper() -> None:
    ctx, sim = toy(slo_ms=150.0)
    result = optimize(ctx, sim, SMALL, 150.0, 99, evals=150, seed=0)
    assert result.feasible and result.estimated.p99_ms <= 150.0
    cheaper = [e for e in result.history
               if e.cost_per_million_usd < result.estimated.cost_per_million_usd]
    assert cheaper and not any(e.feasible for e in cheaper)
    # the GP was told more than the plan's own ln(cost) for each of them: the penalty
    assert all(e.objective > np.log(e.cost_per_million_usd) + 2.0 for e in cheaper)


def test_when_nothing_is_feasible_the_result_says_so() -> None:
    ctx, sim = toy(slo_ms=5.0)
    result = optimize(ctx, sim, SMALL, 5.0, 99, evals=12, seed=0)
    assert not result.feasible and result.plan is None and result.estimated is None
    assert "no plan met p99 <= 5 ms" in result.message
    assert not any(e.feasible for e in result.history)


def test_simulator_rejections_are_reported() -> None:
    # GIVEN an estimator that believes each call 400 ms faster than the simulator does
    def slow(batch: int, length: int, memory_mb: int) -> float:
        return 400.0 + toy_service(batch, length, memory_mb)

    ctx, sim = toy(slo_ms=300.0, sim_service=slow)
    result = optimize(ctx, sim, SMALL, 300.0, 99, evals=12, seed=0)
    assert result.rechecks and not any(r.passed for r in result.rechecks)
    assert not result.feasible and result.plan is None
    assert "simulator rejected" in result.message


def test_the_same_seed_gives_the_same_search() -> None:
    ctx, sim = toy()
    space = make_space("dispatcher", 3, slo_ms=600.0, batch_range=(1, 16))
    first = optimize(ctx, sim, space, 600.0, 99, evals=200, seed=7)
    second = optimize(ctx, sim, space, 600.0, 99, evals=200, seed=7)
    assert [e.plan.buffers for e in first.history] == [e.plan.buffers for e in second.history]
    assert first.plan == second.plan and first.plan is not None


def test_judge_covers_other_percentiles_through_attainment() -> None:
    ctx, sim = toy()
    enc = Encoding.build(SMALL, sim.lengths)
    metrics = estimate(enc.decode([0] * len(enc.dimensions)), ctx)
    ok99, p99, _ = judge(metrics, 99, 600.0)
    assert p99 == metrics.p99_ms and ok99 == (metrics.p99_ms <= 600.0)
    ok, p_ms, violation = judge(metrics, 97.5, 600.0)
    assert p_ms is None and ok == (metrics.slo_attainment >= 0.975)
    assert (violation == 0.0) == ok


def test_bad_arguments_name_the_value() -> None:
    ctx, sim = toy()
    with pytest.raises(ValueError, match="percentile must be in"):
        optimize(ctx, sim, SMALL, 600.0, 100, evals=5, seed=0)
    with pytest.raises(ValueError, match="differs from the estimator context"):
        optimize(ctx, sim, SMALL, 500.0, 99, evals=5, seed=0)
    with pytest.raises(ValueError, match="max_buffers must be"):
        SearchSpace(max_buffers=0)


def test_the_polish_spends_the_budget_once_every_start_is_a_local_optimum() -> None:
    # GIVEN a one-buffer space bigger than the budget (BATCH's case: few structures, so the
    # descents from the POLISH_STARTS starts end long before the budget does)
    ctx, sim = toy()
    space = SearchSpace(max_buffers=1, batch_sizes=(1, 2, 4, 8, 16, 32),
                        timeouts_ms=(0, 50, 100, 200, 400), memories_mb=(1024, 1769, 3538))
    best, tried = exhaustive(ctx, space, sim.lengths, 600.0, 99)
    assert best is not None and tried == 90
    # WHEN the search may estimate 80 of the 90 plans
    result = optimize(ctx, sim, space, 600.0, 99, evals=80, seed=3)
    # THEN the kicks use the budget (or stop when they find nothing new), and the search ends
    # at the grid's optimum
    assert result.evaluations == 80 or sum(e.phase == "polish" for e in result.history) > 20
    assert result.estimated.cost_per_million_usd == pytest.approx(best.cost_per_million_usd,
                                                                  rel=1e-9)
