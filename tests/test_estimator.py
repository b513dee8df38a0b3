"""The analytical estimator: hand-checkable cases, exact expectations, edge cases, invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from buffers.plan import BufferSpec, DispatchMode, Plan
from buffers.plan_files import default_plan_path, load_plan
from optimizer.estimator.batching import batch_formation, forward_counts
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.estimator.latency import max_length_pmf
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.engine import simulate

PRICING = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)
MEMORY_MB = 2048


def constant_ms(value: float):
    return lambda batch, length, memory_mb: value


def linear_ms(batch: int, length: int, memory_mb: int) -> float:
    """A stand-in profile: 5 ms per call plus 0.1 ms per padded token."""
    return 5.0 + 0.1 * batch * length


def plan_of(*buffers: tuple[int, int, int, int], concurrency: int = 10,
            tokens: int | None = None) -> Plan:
    """Buffers from (min_length, max_length, max_batch_size, timeout_ms)."""
    specs = tuple(BufferSpec(name=f"b{i}", min_length=lo, max_length=hi, max_batch_size=b,
                             timeout_ms=t, memory_mb=MEMORY_MB, max_concurrency=concurrency,
                             max_batch_tokens=tokens)
                  for i, (lo, hi, b, t) in enumerate(buffers))
    return Plan(buffers=specs)


def bursty_trace(count: int, seed: int = 7) -> np.ndarray:
    """Bursts of 1-12 arrivals a few ms apart, separated by exponential gaps."""
    rng = np.random.default_rng(seed)
    out, now = [], 0.0
    while len(out) < count:
        now += rng.exponential(2.0)
        for _ in range(int(rng.integers(1, 13))):
            now += rng.exponential(0.02)
            out.append(now)
    return np.array(out[:count])


def context(arrivals: np.ndarray, lengths: np.ndarray, service=linear_ms,
            rules: LambdaRules = NO_COLD, slo_ms: float = 1000.0) -> EstimatorContext:
    return EstimatorContext.build(arrivals, lengths, service, PRICING, slo_ms, rules)


class TestNoBatching:
    def test_batch_size_one_costs_one_invocation_per_request(self):
        # GIVEN one request per invocation at a fixed 20 ms model time and no INIT
        arrivals = bursty_trace(400)
        lengths = np.full(arrivals.size, 40)
        ctx = context(arrivals, lengths, service=constant_ms(20.0))
        # WHEN the whole range goes through one buffer of batch size 1
        metrics = estimate(plan_of((1, 256, 1, 250)), ctx)
        # THEN every request is an invocation, billed 20 ms; on the online path (dispatcher
        # mode) nothing goes through SQS
        one = PRICING.lambda_invocation_usd(20.0, MEMORY_MB)
        assert metrics.invocations == pytest.approx(arrivals.size)
        assert metrics.cost.batching_usd == pytest.approx(arrivals.size * one, rel=1e-12)
        assert metrics.padding_overhead == pytest.approx(0.0, abs=1e-12)
        assert metrics.p50_ms == pytest.approx(20.0, abs=0.1)
        # AND in managed mode (the bulk path) each also has a send, a receive and a delete
        managed = Plan(buffers=(BufferSpec("b0", 1, 256, 1, 0, MEMORY_MB,
                                           DispatchMode.MANAGED),))
        one_bulk = one + 3 * PRICING.sqs_request_usd
        assert estimate(managed, ctx).cost.batching_usd == pytest.approx(
            arrivals.size * one_bulk, rel=1e-12)

    def test_zero_timeout_serves_each_request_alone(self):
        arrivals = bursty_trace(300)
        metrics = estimate(plan_of((1, 256, 8, 0)), context(arrivals, np.full(300, 17)))
        assert metrics.invocations == pytest.approx(300.0)
        assert metrics.mean_batch_size == pytest.approx(1.0)

    def test_zero_timeout_batches_simultaneous_arrivals(self):
        # arrivals come in pairs at the same instant; arrivals win ties with the timer
        arrivals = np.repeat(np.arange(50) * 1.0, 2)
        metrics = estimate(plan_of((1, 256, 4, 0)), context(arrivals, np.full(100, 17)))
        assert metrics.invocations == pytest.approx(50.0)

    def test_matches_the_simulator_cost_exactly(self):
        arrivals = bursty_trace(300)
        lengths = np.random.default_rng(1).integers(1, 257, size=300)
        plan = plan_of((1, 256, 1, 0))
        est = estimate(plan, context(arrivals, lengths, service=constant_ms(12.5)))
        sim = simulate(plan, arrivals, lengths, constant_ms(12.5), PRICING, 1000.0, NO_COLD)
        assert est.cost.batching_usd == pytest.approx(sim.metrics.cost.batching_usd, rel=1e-12)


class TestConstantRate:
    """Evenly spaced arrivals: size-or-timeout batches are known exactly."""

    arrivals = np.arange(300) * 0.1  # every 100 ms

    def test_timeout_closes_batches_of_three(self):
        # the opener's window (t, t + 250 ms] holds two more arrivals: batches of 3 by timeout
        ctx = context(self.arrivals, np.full(300, 20), service=constant_ms(40.0))
        metrics = estimate(plan_of((1, 256, 8, 250)), ctx)
        assert metrics.invocations == pytest.approx(100.0)
        # waits are 250, 150 and 50 ms, then 40 ms of model time: one third each
        assert metrics.p50_ms == pytest.approx(190.0, abs=2.0)
        assert metrics.p95_ms == pytest.approx(290.0, abs=2.0)
        assert metrics.slo_attainment == pytest.approx(1.0)

    def test_size_closes_batches_of_two(self):
        ctx = context(self.arrivals, np.full(300, 20), service=constant_ms(40.0))
        metrics = estimate(plan_of((1, 256, 2, 250)), ctx)
        assert metrics.invocations == pytest.approx(150.0)
        # the opener waits for the second (100 ms), which leaves at once: 140 and 40 ms
        assert metrics.p99_ms == pytest.approx(140.0, abs=2.0)

    def test_slo_attainment_counts_the_requests_within_it(self):
        ctx = context(self.arrivals, np.full(300, 20), service=constant_ms(40.0), slo_ms=200.0)
        metrics = estimate(plan_of((1, 256, 8, 250)), ctx)
        assert metrics.slo_attainment == pytest.approx(2 / 3, abs=0.01)

    def test_padded_length_is_the_order_statistic(self):
        # GIVEN batches of exactly 3 and lengths 3, 7, 12 with shares 1/2, 3/10, 1/5
        lengths = np.array([3] * 150 + [7] * 90 + [12] * 60)
        metrics = estimate(plan_of((1, 256, 8, 250)), context(self.arrivals, lengths))
        # THEN padded tokens = batches x 3 x E[max of 3 draws], by enumeration
        values, probs = [3, 7, 12], [0.5, 0.3, 0.2]
        mean_max = sum(max(values[i] for i in combo) * np.prod([probs[i] for i in combo])
                       for combo in itertools.product(range(3), repeat=3))
        assert metrics.padded_tokens == pytest.approx(100 * 3 * mean_max, rel=1e-9)
        assert metrics.real_tokens == pytest.approx(float(lengths.sum()), rel=1e-12)


def test_order_statistic_matches_brute_force():
    pmf = np.array([0.1, 0.0, 0.25, 0.4, 0.25])  # lengths 1..5
    cdf = np.cumsum(pmf)
    for size in (1, 2, 3, 4):
        brute = np.zeros(5)
        for combo in itertools.product(range(5), repeat=size):
            brute[max(combo)] += np.prod(pmf[list(combo)])
        got = max_length_pmf(cdf, np.array([size]))[0]
        assert got == pytest.approx(brute, abs=1e-12)


class TestExactBatchCounts:
    """Invocations are the exact expectation over which arrivals a buffer gets."""

    arrivals = np.array([0.0, 0.01, 0.02, 0.2, 0.21, 0.5, 0.9, 0.95, 1.0, 1.6])
    lengths = np.array([10] * 5 + [100] * 5)  # P(length <= 32) = 1/2

    @pytest.mark.parametrize(("max_batch", "timeout_ms"),
                             [(2, 250), (3, 100), (4, 1000), (2, 0), (1, 0), (16, 300)])
    def test_against_every_thinning(self, max_batch, timeout_ms):
        plan = plan_of((1, 32, max_batch, timeout_ms), (33, 256, 1, 0))
        expected = 0.0
        for pattern in itertools.product((10, 100), repeat=self.arrivals.size):
            lens = np.array(pattern)
            sim = simulate(plan, self.arrivals, lens, linear_ms, PRICING, 1000.0, NO_COLD)
            expected += sim.metrics.per_buffer["b0"].invocations / 2 ** self.arrivals.size
        metrics = estimate(plan, context(self.arrivals, self.lengths))
        assert metrics.per_buffer["b0"].invocations == pytest.approx(expected, rel=1e-9)
        assert metrics.per_buffer["b0"].requests == pytest.approx(5.0)

    def test_opener_probabilities_for_a_full_buffer_are_zero_or_one(self):
        counts = forward_counts(self.arrivals, 0.25)
        form = batch_formation(counts, 1.0, 2)
        assert set(np.round(form.openers, 12)) <= {0.0, 1.0}


class TestEdgeCases:
    def test_a_buffer_without_requests_is_all_zero(self):
        arrivals = bursty_trace(200)
        metrics = estimate(plan_of((1, 100, 8, 250), (101, 256, 4, 250)),
                           context(arrivals, np.full(200, 50)))
        empty = metrics.per_buffer["b1"]
        assert (empty.requests, empty.invocations, empty.cost.total_usd) == (0.0, 0.0, 0.0)
        assert (empty.p50_ms, empty.p99_ms, empty.slo_attainment) == (0.0, 0.0, 1.0)
        assert metrics.requests == pytest.approx(200.0)

    def test_token_budget_caps_the_batch(self):
        # 100-token requests, budget 300 tokens: at most 3 per batch
        arrivals = np.arange(200) * 0.001
        ctx = context(arrivals, np.full(200, 100))
        capped = estimate(plan_of((1, 256, 16, 1000), tokens=300), ctx)
        assert capped.mean_batch_size == pytest.approx(3.0, rel=0.02)

    def test_managed_mode_follows_the_event_source_mapping(self):
        # GIVEN a record every 0.25 s over the ESM's five pollers, whose 1 s windows begin when
        # their previous invocation completes (optimizer/platform/esm_rules.py): a poller sees
        # about 0.8 records a window, so many windows lapse and their next record goes alone
        spec = BufferSpec(name="m", min_length=1, max_length=256, max_batch_size=10,
                          timeout_ms=1000, memory_mb=MEMORY_MB,
                          dispatch_mode=DispatchMode.MANAGED)
        arrivals = np.arange(100) * 0.25
        plan = Plan(buffers=(spec,))
        metrics = estimate(plan, context(arrivals, np.full(100, 30)))
        sim = simulate(plan, arrivals, np.full(100, 30), linear_ms, PRICING, 1000.0,
                       rules=NO_COLD)
        # THEN far more invocations than one window of 4 per second would give (25), as many
        # as the simulator's
        assert metrics.invocations == pytest.approx(sim.metrics.invocations, rel=0.05)
        assert 60 < metrics.invocations < 95

    def test_cold_starts_are_billed_and_counted(self):
        arrivals = np.arange(100) * 30.0  # one request every 30 s: one environment suffices
        lengths = np.full(100, 30)
        warm = estimate(plan_of((1, 256, 1, 0)), context(arrivals, lengths))
        cold = estimate(plan_of((1, 256, 1, 0)),
                        context(arrivals, lengths, rules=LambdaRules(cold_start_ms=1000.0)))
        assert cold.cold_starts == pytest.approx(1.0, abs=1e-6)
        init_usd = 1.0 * MEMORY_MB / 1024 * PRICING.lambda_gb_s_usd_x86
        assert cold.cost.infer_compute_usd - warm.cost.infer_compute_usd == pytest.approx(
            init_usd, rel=1e-6)

    @pytest.mark.parametrize("bad", [
        {"arrivals": np.array([1.0, 0.5]), "lengths": np.array([3, 3])},
        {"arrivals": np.array([0.0, 1.0]), "lengths": np.array([0, 3])},
        {"arrivals": np.array([0.0, 1.0]), "lengths": np.array([3])},
    ])
    def test_bad_workloads_fail_with_the_value(self, bad):
        with pytest.raises(ValueError, match="must"):
            context(bad["arrivals"], bad["lengths"])

    def test_plans_the_simulator_refuses_fail_too(self):
        ctx = context(np.zeros(2), np.array([3, 200]))
        with pytest.raises(ValueError, match="lengths must be in 1..100"):
            estimate(Plan(buffers=(BufferSpec("a", 1, 100, 4, 10, MEMORY_MB),), max_length=100),
                     ctx)
        with pytest.raises(ValueError, match="concurrency limit"):
            estimate(plan_of((1, 256, 4, 10), concurrency=1000),
                     context(np.zeros(2), np.array([3, 200]), rules=LambdaRules(
                         cold_start_ms=0.0, account_concurrency=999)))

    def test_bad_slo_and_arch_fail(self):
        with pytest.raises(ValueError, match="slo_ms"):
            context(np.zeros(1), np.ones(1, np.int64), slo_ms=0.0)
        with pytest.raises(ValueError, match="arch"):
            EstimatorContext.build(np.zeros(1), np.ones(1), linear_ms, PRICING, 1000.0,
                                   arch="sparc")


class TestWaitingForEnvironments:
    def test_a_sustained_overload_queues_like_the_simulator(self):
        # GIVEN 100 requests/s, 25 ms each, alone, on at most 2 environments (80/s capacity)
        arrivals = np.arange(2000) * 0.01
        lengths = np.full(2000, 20)
        plan = plan_of((1, 256, 1, 0), concurrency=2)
        # WHEN estimated and simulated
        est = estimate(plan, context(arrivals, lengths, service=constant_ms(25.0)))
        sim = simulate(plan, arrivals, lengths, constant_ms(25.0), PRICING, 1000.0, NO_COLD)
        # THEN the backlog grows by 2.5 ms per request, as the fluid recursion says
        assert est.p50_ms == pytest.approx(sim.metrics.p50_ms, rel=0.05)
        assert est.p99_ms == pytest.approx(sim.metrics.p99_ms, rel=0.05)
        assert est.p99_ms > 4000.0

    def test_enough_environments_mean_no_wait(self):
        arrivals = np.arange(2000) * 0.01
        plan = plan_of((1, 256, 1, 0), concurrency=4)
        est = estimate(plan, context(arrivals, np.full(2000, 20), service=constant_ms(25.0)))
        assert est.p99_ms == pytest.approx(25.0, abs=0.5)


class TestInvariants:
    arrivals = bursty_trace(1500)
    lengths = np.random.default_rng(3).integers(1, 257, size=1500)

    def test_more_timeout_means_no_more_invocations(self):
        ctx = context(self.arrivals, self.lengths)
        invocations = [estimate(plan_of((1, 64, 16, t), (65, 256, 4, t)), ctx).invocations
                       for t in (0, 10, 50, 100, 250, 500, 1000, 3000)]
        assert all(a >= b - 1e-9 for a, b in itertools.pairwise(invocations))

    def test_reproducible(self):
        plan = plan_of((1, 32, 32, 250), (33, 256, 8, 150), concurrency=2)
        first = estimate(plan, context(self.arrivals, self.lengths)).to_dict()
        ctx = context(self.arrivals, self.lengths)
        assert estimate(plan, ctx).to_dict() == first
        assert estimate(plan, ctx).to_dict() == first

    def test_totals_are_the_buffers_sums(self):
        plan = plan_of((1, 32, 32, 250), (33, 96, 8, 150), (97, 256, 2, 50))
        metrics = estimate(plan, context(self.arrivals, self.lengths))
        parts = metrics.per_buffer.values()
        assert metrics.requests == pytest.approx(1500.0)
        assert metrics.invocations == pytest.approx(sum(m.invocations for m in parts))
        # the plan adds the run's items to its buffers': one dispatcher task (0.25 vCPU and
        # 0.5 GB on ARM, one public IPv4) and its Cloud Map instance, from 0 to the last arrival
        hours = float(self.arrivals[-1]) / 3600.0
        run = hours * (0.25 * 0.03238 + 0.5 * 0.00356 + 0.005) + hours / 730 * 0.10
        assert metrics.cost.total_usd == pytest.approx(
            sum(m.cost.total_usd for m in parts) + run, rel=1e-12)
        assert all(m.cost.dispatcher_usd == 0.0 for m in parts)
        assert metrics.p50_ms <= metrics.p95_ms <= metrics.p99_ms
        assert min(m.p99_ms for m in parts) <= metrics.p99_ms <= max(m.p99_ms for m in parts)
        assert 0.0 <= metrics.slo_attainment <= 1.0
        assert metrics.padding_overhead >= 0.0

    def test_close_to_the_simulator_on_a_bursty_trace(self):
        # invocations are an exact expectation; one thinning realisation is within a few %
        plan = plan_of((1, 32, 32, 250), (33, 256, 8, 150))
        est = estimate(plan, context(self.arrivals, self.lengths))
        sim = simulate(plan, self.arrivals, self.lengths, linear_ms, PRICING, 1000.0, NO_COLD)
        assert est.invocations == pytest.approx(sim.metrics.invocations, rel=0.05)


def test_default_plan_on_the_azure_code_preset():
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import WorkloadSpec, build_workload

    workload = build_workload(WorkloadSpec(preset="azure-code", seed=0))
    lengths = token_lengths(workload)
    plan = load_plan(default_plan_path())
    ctx = EstimatorContext.build(workload.arrivals_s, lengths, linear_ms, PRICING, 1000.0)
    metrics = estimate(plan, ctx)
    sim = simulate(plan, workload.arrivals_s, lengths, linear_ms, PRICING, 1000.0)
    assert metrics.requests == pytest.approx(workload.count)
    assert metrics.invocations == pytest.approx(sim.metrics.invocations, rel=0.03)
    assert metrics.p50_ms <= metrics.p95_ms <= metrics.p99_ms
