"""Baselines: their plans, the Triton-style batcher, and the oracle floor."""

from __future__ import annotations

import numpy as np
import pytest

from buffers.plan import BufferSpec, DispatchMode, Plan, PlanError
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import batch_plan, no_batching_plan, oracle_floor, triton_plan
from optimizer.sim.engine import simulate

PRICING = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)


def flat(b: int, length: int, memory_mb: int) -> float:
    return 100.0


def amortised(b: int, length: int, memory_mb: int) -> float:
    """Per-request time falls with batch size and grows with length, as the real model's."""
    return 10.0 + 0.5 * b + 0.02 * b * length


def test_baseline_plans_have_one_buffer_over_all_lengths() -> None:
    none = no_batching_plan(2048)
    assert (none.buffers[0].max_batch_size, none.buffers[0].timeout_ms) == (1, 0)
    assert none.buffers[0].dispatch_mode is DispatchMode.DISPATCHER
    batch = batch_plan(16, 250, 3008)
    assert (batch.buffers[0].max_batch_size, batch.buffers[0].timeout_ms) == (16, 250)
    assert (batch.buffers[0].min_length, batch.buffers[0].max_length) == (1, 256)
    triton = triton_plan(8, 5, 3008, instances=4)
    assert triton.policy == "triton" and triton.buffers[0].max_concurrency == 4
    with pytest.raises(PlanError, match="max_batch_size must be >= 1, got 0"):
        batch_plan(0, 250, 3008)


def test_triton_forms_batches_when_an_instance_frees() -> None:
    # GIVEN 10 requests at t=0 and one at 50 ms; 2 instances, max batch 4, 10 ms queue delay,
    # 100 ms per batch
    arrivals = np.array([0.0] * 10 + [0.05])
    lengths = np.arange(1, 12)
    result = simulate(triton_plan(4, 10, 1024, instances=2), arrivals, lengths, flat,
                      PRICING, 1000.0, rules=NO_COLD)
    log = result.batches
    # THEN both instances take a full batch at once; the rest wait queued, not as a batch,
    # and leave together when an instance frees at 100 ms
    assert log.size.tolist() == [4, 4, 3]
    np.testing.assert_allclose(log.start_s, [0.0, 0.0, 0.1])
    assert log.padded_length.tolist() == [4, 8, 11]


def test_batch_freezes_its_batches_where_triton_merges_them() -> None:
    # the same work under BATCH: the two left at t=0 time out as a batch of 2 at 10 ms and the
    # one at 50 ms as a batch of 1 at 60 ms; both wait for an instance
    arrivals = np.array([0.0] * 10 + [0.05])
    result = simulate(batch_plan(4, 10, 1024, max_concurrency=2), arrivals,
                      np.arange(1, 12), flat, PRICING, 1000.0, rules=NO_COLD)
    assert result.batches.size.tolist() == [4, 4, 2, 1]
    np.testing.assert_allclose(result.batches.start_s, [0.0, 0.0, 0.1, 0.1])


def test_triton_waits_up_to_the_queue_delay_when_idle() -> None:
    arrivals = np.array([0.0, 0.003, 0.5])
    result = simulate(triton_plan(4, 10, 1024, instances=2), arrivals, np.array([5, 6, 7]),
                      flat, PRICING, 1000.0, rules=NO_COLD)
    assert result.batches.size.tolist() == [2, 1]
    np.testing.assert_allclose(result.batches.start_s, [0.01, 0.51])


def test_triton_with_zero_delay_sends_at_once_and_grows_under_load() -> None:
    arrivals = np.array([0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
    result = simulate(triton_plan(8, 0, 1024, instances=2), arrivals, np.full(6, 5), flat,
                      PRICING, 1000.0, rules=NO_COLD)
    assert result.batches.size.tolist() == [1, 1, 4]
    np.testing.assert_allclose(result.batches.start_s, [0.0, 0.01, 0.1])


def test_triton_rejects_multi_buffer_plans() -> None:
    specs = (BufferSpec("a", 1, 10, 4, 10, 1024), BufferSpec("b", 11, 256, 4, 10, 1024))
    with pytest.raises(ValueError, match="one-buffer plan, got 2"):
        simulate(Plan(buffers=specs, policy="triton"), np.zeros(1), np.ones(1, np.int64), flat,
                 PRICING, 1000.0)


def test_oracle_batches_each_length_alone_without_waiting() -> None:
    lengths = np.array([5] * 5 + [9] * 2)
    m = oracle_floor(lengths, amortised, PRICING, 1024, max_batch=4)
    assert m.invocations == 3  # 4 + 1 of length 5, 2 of length 9
    assert m.padding_overhead == 0.0 and m.cold_starts == 0
    assert m.p99_ms <= amortised(4, 5, 1024)
    assert m.p50_ms == pytest.approx(amortised(4, 5, 1024))
    billed = sum(
        PRICING.billed_ms(amortised(b, n, 1024)) for b, n in [(4, 5), (1, 5), (2, 9)])
    assert m.cost.infer_compute_usd == pytest.approx(
        billed / 1000.0 * PRICING.lambda_gb_s_usd_x86)


def test_oracle_is_a_floor_for_every_plan_on_the_same_work() -> None:
    # GIVEN bursty work with many requests per length, every plan at 1024 MB, batches <= 32
    rng = np.random.default_rng(11)
    arrivals = np.sort(rng.uniform(0, 120, 3000))
    lengths = rng.choice([8, 16, 40, 100, 200], size=3000, p=[0.4, 0.2, 0.2, 0.1, 0.1])
    specs = (BufferSpec("s", 1, 16, 32, 200, 1024), BufferSpec("m", 17, 64, 16, 200, 1024),
             BufferSpec("l", 65, 256, 8, 200, 1024))
    plans = [no_batching_plan(1024), batch_plan(32, 200, 1024), batch_plan(8, 20, 1024),
             triton_plan(32, 50, 1024, instances=4), Plan(buffers=specs, name="mbs")]
    floor = oracle_floor(lengths, amortised, PRICING, 1024, max_batch=32)
    for plan in plans:
        for rules in (NO_COLD, LambdaRules()):
            simulated = simulate(plan, arrivals, lengths, amortised, PRICING, 1000.0,
                                 rules=rules).metrics
            assert floor.cost_per_million_usd <= simulated.cost_per_million_usd, plan.name
            assert floor.invocations <= simulated.invocations, plan.name
