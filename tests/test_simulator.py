"""The discrete-event simulator: invariants, size-or-timeout, concurrency, cold starts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffers.gears import GearConfig, GearSet
from buffers.plan import BufferSpec, DispatchMode, Plan
from buffers.plan_files import default_plan_path, load_plan
from buffers.policies import PolicyType
from optimizer.floors.replay import SCHEDULE_POLICY
from optimizer.platform.esm_rules import EsmRules
from optimizer.platform.lambda_rules import InstancePool, LambdaRules
from optimizer.platform.pricing import MB_PER_GB, Pricing
from optimizer.sim.baselines import TRITON_POLICY, batch_plan, no_batching_plan, triton_plan
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.policy import policy_names, register
from optimizer.sim.ragged import RAGGED_POLICY

PRICING = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)


def linear(b: int, length: int, memory_mb: int) -> float:
    return 5.0 + 0.01 * b * length


def max_overlap(starts: np.ndarray, ends: np.ndarray) -> int:
    """Most invocations running at once (one ending at t frees its slot for one starting at t)."""
    events = sorted([(e, -1) for e in ends.tolist()] + [(s, 1) for s in starts.tolist()])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def check_invariants(plan: Plan, arrivals: np.ndarray, lengths: np.ndarray,
                     result: SimResult, rules: LambdaRules) -> None:
    log = result.batches
    # every request served exactly once
    assert int(log.size.sum()) == arrivals.size
    assert np.all(result.batch_of_request >= 0)
    assert np.array_equal(np.bincount(result.batch_of_request, minlength=len(log)), log.size)
    # batches respect their buffer's max size and hold only that buffer's lengths
    for index, spec in enumerate(plan.buffers):
        rows = log.buffer == index
        assert np.all(log.size[rows] <= spec.max_batch_size)
        members = np.isin(result.batch_of_request, np.flatnonzero(rows))
        assert np.all((lengths[members] >= spec.min_length)
                      & (lengths[members] <= spec.max_length))
        assert max_overlap(log.start_s[rows], log.end_s[rows]) <= spec.max_concurrency
    # a batch never starts before its members arrive; latency = completion - arrival
    assert np.all(log.start_s[result.batch_of_request] >= arrivals - 1e-12)
    np.testing.assert_allclose(result.latency_ms,
                               (log.end_s[result.batch_of_request] - arrivals) * 1000.0)
    # billed compute equals the sum of the per-invocation billed durations
    init = np.where(log.cold & rules.bill_init, rules.cold_start_ms, 0.0)
    assert log.billed_ms.tolist() == [PRICING.billed_ms(x) for x in log.service_ms + init]
    gb_s = float(np.sum(log.billed_ms / 1000.0 * log.memory_mb / MB_PER_GB))
    assert result.metrics.cost.infer_compute_usd == pytest.approx(
        gb_s * PRICING.lambda_gb_s_usd_x86, rel=1e-9, abs=1e-15)
    assert result.metrics.invocations == len(log)
    assert result.metrics.requests == arrivals.size


def two_buffers(boundary: int, max_batch: int, timeout_ms: int, concurrency: int,
                mode: DispatchMode = DispatchMode.DISPATCHER) -> Plan:
    specs = (BufferSpec("lo", 1, boundary, max_batch, timeout_ms, 1024, mode, concurrency),
             BufferSpec("hi", boundary + 1, 256, max_batch, timeout_ms, 2048, mode, concurrency))
    return Plan(buffers=specs)


@settings(max_examples=150, deadline=None)
@given(
    times_ms=st.lists(st.integers(0, 3000), max_size=40),
    seed=st.integers(0, 2**16),
    max_batch=st.integers(1, 8),
    timeout_ms=st.integers(0, 400),
    concurrency=st.integers(2, 4),
    boundary=st.integers(1, 255),
    triton=st.booleans(),
    cold_start_ms=st.sampled_from([0.0, 50.0, 700.0]),
    keep_alive_s=st.sampled_from([0.0, 0.5, 60.0]),
)
def test_invariants_on_random_traces(times_ms: list[int], seed: int, max_batch: int,
                                     timeout_ms: int, concurrency: int, boundary: int,
                                     triton: bool, cold_start_ms: float,
                                     keep_alive_s: float) -> None:
    arrivals = np.sort(np.asarray(times_ms, dtype=np.float64)) / 1000.0
    lengths = np.random.default_rng(seed).integers(1, 257, size=arrivals.size)
    plan = (triton_plan(max_batch, timeout_ms, 1024, concurrency) if triton
            else two_buffers(boundary, max_batch, timeout_ms, concurrency))
    rules = LambdaRules(cold_start_ms=cold_start_ms, keep_alive_s=keep_alive_s)
    result = simulate(plan, arrivals, lengths, linear, PRICING, slo_ms=500.0, rules=rules)
    check_invariants(plan, arrivals, lengths, result, rules)


def test_batch_one_timeout_zero_invokes_once_per_request() -> None:
    arrivals = np.linspace(0.0, 1.0, 50)
    lengths = np.arange(1, 51)
    result = simulate(no_batching_plan(1024), arrivals, lengths, linear, PRICING, 1000.0)
    assert result.metrics.invocations == result.metrics.requests == 50
    assert result.metrics.padding_overhead == 0.0


def test_size_or_timeout_is_visible() -> None:
    # GIVEN three requests within 2 ms, then a lone one at 10 s; max batch 3, timeout 100 ms
    arrivals = np.array([0.0, 0.001, 0.002, 10.0])
    lengths = np.array([4, 9, 6, 3])
    plan = batch_plan(3, 100, 1024, max_concurrency=2)
    result = simulate(plan, arrivals, lengths, linear, PRICING, 1000.0, rules=NO_COLD)
    log = result.batches
    # THEN the first three leave by size when the third arrives, padded to 9 tokens
    assert log.size.tolist() == [3, 1]
    assert log.padded_length.tolist() == [9, 3]
    assert log.start_s[0] == pytest.approx(0.002)
    # AND the lone request leaves by timeout
    assert log.start_s[1] == pytest.approx(10.1)
    assert result.latency_ms[3] == pytest.approx(100.0 + linear(1, 3, 1024))
    assert result.metrics.real_tokens == 22
    assert result.metrics.padded_tokens == 27 + 3


def test_concurrency_limit_queues_batches_for_the_earliest_free_instance() -> None:
    arrivals = np.zeros(20)
    lengths = np.full(20, 10)
    plan = no_batching_plan(1024, max_concurrency=2)
    result = simulate(plan, arrivals, lengths, lambda *_: 100.0, PRICING, 1000.0,
                      rules=NO_COLD)
    log = result.batches
    assert max_overlap(log.start_s, log.end_s) == 2
    np.testing.assert_allclose(np.sort(log.start_s), [0.1 * (i // 2) for i in range(20)])
    assert result.latency_ms.max() == pytest.approx(1000.0)


def test_cold_first_warm_within_keep_alive_cold_after_a_long_gap() -> None:
    rules = LambdaRules(cold_start_ms=500.0, keep_alive_s=60.0)
    arrivals = np.array([0.0, 5.0, 30.0, 200.0])
    result = simulate(no_batching_plan(1024), arrivals, np.full(4, 8), linear, PRICING, 1000.0,
                      rules=rules)
    assert result.batches.cold.tolist() == [True, False, False, True]
    assert result.metrics.cold_starts == 2
    assert result.latency_ms[0] == pytest.approx(500.0 + linear(1, 8, 1024))
    assert result.latency_ms[1] == pytest.approx(linear(1, 8, 1024))


def test_a_burst_scales_out_with_cold_starts() -> None:
    rules = LambdaRules(cold_start_ms=500.0)
    result = simulate(no_batching_plan(1024, max_concurrency=3), np.zeros(6), np.full(6, 8),
                      linear, PRICING, 1000.0, rules=rules)
    assert result.batches.cold.tolist() == [True, True, True, False, False, False]


def test_instance_pool_reuses_the_most_recent_and_evicts_after_keep_alive() -> None:
    pool = InstancePool(3, LambdaRules(keep_alive_s=10.0))
    assert pool.acquire(0.0) == (0.0, True)
    pool.release(1.0)
    assert pool.acquire(0.5) == (0.5, True)  # the first is still busy
    pool.release(2.0)
    assert pool.acquire(5.0) == (5.0, False)
    pool.release(6.0)
    assert pool.alive() == 2
    assert pool.acquire(11.5) == (11.5, False)  # freed at 6.0; the one freed at 1.0 expired
    pool.release(12.0)
    assert pool.alive() == 1
    assert pool.acquire(100.0) == (100.0, True)
    with pytest.raises(RuntimeError):
        pool.acquire(100.0)


def test_same_inputs_give_identical_results() -> None:
    rng = np.random.default_rng(7)
    arrivals = np.sort(rng.uniform(0, 60, 2000))
    lengths = rng.integers(1, 257, 2000)
    plan = load_plan(default_plan_path("default"))
    a = simulate(plan, arrivals, lengths, linear, PRICING, 500.0)
    b = simulate(plan, arrivals, lengths, linear, PRICING, 500.0)
    assert a.metrics == b.metrics
    assert np.array_equal(a.latency_ms, b.latency_ms)
    assert np.array_equal(a.batches.start_s, b.batches.start_s)


def test_an_empty_buffer_reports_zeros() -> None:
    plan = load_plan(default_plan_path("default"))
    result = simulate(plan, np.arange(10) * 0.01, np.full(10, 12), linear, PRICING, 1000.0)
    empty = result.metrics.per_buffer["xlong"]
    assert (empty.requests, empty.invocations, empty.cold_starts) == (0, 0, 0)
    assert empty.cost.total_usd == 0.0
    assert (empty.p99_ms, empty.slo_attainment) == (0.0, 1.0)
    assert result.metrics.per_buffer["short"].requests == 10


def test_no_arrivals_at_all() -> None:
    result = simulate(no_batching_plan(1024), np.zeros(0), np.zeros(0, np.int64), linear,
                      PRICING, 1000.0)
    assert result.metrics.requests == 0 and len(result.batches) == 0
    assert result.metrics.cost_per_million_usd == 0.0


def test_managed_plan_batches_in_windows_after_the_previous_invocation() -> None:
    # GIVEN a managed buffer with a 1 s window and one poller (tests/test_esm.py has the rest
    # of the event source mapping's rules): 0.0 finds no window open and goes at once, done
    # after 5.05 ms; the window that then begins holds 0.2 and 0.4 until it closes
    plan = Plan(buffers=(BufferSpec("m", 1, 256, 32, 1000, 1024, DispatchMode.MANAGED),))
    rules = LambdaRules(cold_start_ms=0.0, esm=EsmRules(pollers=1, split="round_robin"))
    result = simulate(plan, np.array([0.0, 0.2, 0.4]), np.array([5, 6, 7]), linear, PRICING,
                      2000.0, rules=rules)
    assert result.batches.size.tolist() == [1, 2]
    assert result.batches.start_s[1] == pytest.approx(1.00505)


def test_per_buffer_costs_sum_to_the_plan_cost() -> None:
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0, 30, 500))
    result = simulate(load_plan(default_plan_path("default")), arrivals,
                      rng.integers(1, 257, 500), linear, PRICING, 500.0)
    total = sum(m.cost.total_usd for m in result.metrics.per_buffer.values())
    # plus the run's items: one dispatcher task (~17 req/s, under a task's 100) with its
    # public IPv4 and Cloud Map instance, from 0 to the last arrival
    hours = float(arrivals[-1]) / 3600.0
    run = hours * (0.25 * 0.03238 + 0.5 * 0.00356 + 0.005) + hours / 730 * 0.10
    assert result.metrics.cost.total_usd == pytest.approx(total + run, rel=1e-12)
    assert sum(m.requests for m in result.metrics.per_buffer.values()) == 500


@pytest.mark.parametrize(("arrivals", "lengths", "message"), [
    ([1.0, 0.5], [3, 3], "sorted"),
    ([0.0, 1.0], [0, 3], "got 0"),
    ([0.0, 1.0], [3, 257], "got 257"),
    ([0.0], [3, 3], "one size"),
    ([math.nan], [3], "finite"),
])
def test_bad_inputs_name_the_value(arrivals: list, lengths: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(no_batching_plan(1024), np.array(arrivals), np.array(lengths), linear,
                 PRICING, 1000.0)


def test_plans_over_the_account_limit_and_unknown_policies_fail_fast() -> None:
    with pytest.raises(ValueError, match="2000"):
        simulate(two_buffers(32, 4, 10, 1000), np.zeros(1), np.ones(1, np.int64), linear,
                 PRICING, 1000.0)
    plan = Plan(buffers=no_batching_plan(1024).buffers, policy="lottery")
    with pytest.raises(ValueError, match="Unknown policy: 'lottery'"):
        simulate(plan, np.zeros(1), np.ones(1, np.int64), linear, PRICING, 1000.0)


def test_every_batch_policy_and_triton_are_registered_by_name() -> None:
    # the engine imports no policy: each registers itself, and a buffers/ policy needs no list
    # (imported above, the floors' schedule replay registers itself too)
    assert set(policy_names()) == {p.value for p in PolicyType} | {
        TRITON_POLICY, RAGGED_POLICY, SCHEDULE_POLICY}
    with pytest.raises(ValueError, match="policy 'triton' is already registered"):
        register(TRITON_POLICY, lambda inputs: None)
    gears = GearSet((triton_plan(4, 10, 1024, 2),) * 2, GearConfig(up_rps=(2.0,),
                                                                     down_rps=(1.0,)))
    with pytest.raises(ValueError, match="the triton policy takes no gears, got 2"):
        simulate(triton_plan(4, 10, 1024, 2), np.zeros(1), np.ones(1, np.int64), linear,
                 PRICING, 1000.0, gears=gears)


def test_mbs_simulate_prints_estimated_and_simulated_metrics(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from infra.cli.main import main
    from optimizer.platform import latency_model

    monkeypatch.setattr(latency_model, "load_profile", lambda path=None: ({}, linear))
    assert main(["simulate", "--plan", "batch", "--duration", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"estimated", "simulated", "relative_error"}
    for side in ("estimated", "simulated"):
        assert {"cost_per_million_usd", "p50_ms", "p95_ms", "p99_ms", "slo_attainment",
                "padding_overhead", "invocations", "per_buffer"} <= set(out[side])
        assert set(out[side]["per_buffer"]) == {"all"}
    assert out["simulated"]["requests"] > 0
    cost = out["relative_error"]["cost_per_million_usd"]
    assert cost == pytest.approx(out["estimated"]["cost_per_million_usd"]
                                 / out["simulated"]["cost_per_million_usd"] - 1)
    assert abs(cost) < 0.10  # the estimator's target, on this plan and slice
    assert main(["simulate", "--duration", "120"]) == 0
    table = capsys.readouterr().out
    assert "simulated total" in table and "xlong" in table and "rel. error" in table
