"""The ragged (TEI-style) baseline: a real-token budget closes batches, service on real tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest

from buffers.plan import Plan
from optimizer.compare.grid import (
    RAGGED_BATCH_TOKENS,
    RAGGED_DELAY_MS,
    RAGGED_INSTANCES,
    BaselineGrids,
    pick_ragged,
)
from optimizer.compare.workbench import Workbench
from optimizer.platform.backends import make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import batch_plan, triton_plan
from optimizer.sim.engine import simulate
from optimizer.sim.policy import PolicyOptions, policy_names
from optimizer.sim.ragged import RAGGED_POLICY, ragged_plan

PRICING = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)


def amortised(b: int, length: int, memory_mb: int) -> float:
    """Model time grows with batch x length, as the real model's."""
    return 10.0 + 0.5 * b + 0.02 * b * length


def _hand_trace() -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.0, 0.01, 0.02, 0.03, 0.04]), np.array([100, 100, 90, 50, 200])


def test_the_token_budget_closes_batches_and_the_delay_the_rest() -> None:
    # GIVEN a 300-token budget, a 500 ms queue delay, two idle instances, and five requests
    arrivals, lengths = _hand_trace()
    result = simulate(ragged_plan(300, 500, 1024, instances=2), arrivals, lengths, amortised,
                      PRICING, 1000.0, rules=NO_COLD)
    log = result.batches
    # THEN at 30 ms the 4th request (50 tokens) would take the queue to 340 > 300, so the first
    # three (290 tokens) leave; the last two (250 tokens) wait for the delay, 30 + 500 ms
    assert log.size.tolist() == [2 + 1, 2]
    assert log.real_tokens.tolist() == [290, 250]
    np.testing.assert_allclose(log.start_s, [0.03, 0.53])
    assert result.batch_of_request.tolist() == [0, 0, 0, 1, 1]


def test_service_time_counts_real_tokens_only() -> None:
    arrivals, lengths = _hand_trace()
    result = simulate(ragged_plan(300, 500, 1024, instances=2), arrivals, lengths, amortised,
                      PRICING, 1000.0, rules=NO_COLD)
    # THEN each batch runs B rows at its mean real length, rounded up (the modelled time) ...
    assert result.batches.service_ms.tolist() == [amortised(3, math.ceil(290 / 3), 1024),
                                                  amortised(2, 125, 1024)]
    # ... and computes no padding, where a padded batcher pads to the longest member
    assert result.metrics.padded_tokens == result.metrics.real_tokens == 540
    assert result.metrics.padding_overhead == 0.0
    padded = simulate(batch_plan(3, 500, 1024), arrivals, lengths, amortised, PRICING, 1000.0,
                      rules=NO_COLD)
    assert padded.metrics.padding_overhead > 0.0


def test_a_busy_pool_lets_the_queue_grow_to_the_budget() -> None:
    # GIVEN TEI's own rule (no delay) on a pool of two, 20 requests of 60 tokens at t=0
    arrivals, lengths = np.zeros(20), np.full(20, 60)
    result = simulate(ragged_plan(256, 0, 1024, instances=2), arrivals, lengths,
                      lambda b, n, m: 100.0, PRICING, 1000.0, rules=NO_COLD)
    # THEN each batch takes as many as fit in 256 tokens (4 x 60), one per free instance
    assert result.batches.size.tolist() == [1, 1, 4, 4, 4, 4, 2]
    assert np.all(result.batches.real_tokens <= 256)


def test_runs_by_name_through_the_registry_and_loses_no_request() -> None:
    assert RAGGED_POLICY in policy_names()
    rng = np.random.default_rng(7)
    arrivals = np.sort(rng.uniform(0.0, 20.0, 2_000))
    lengths = rng.integers(1, 257, arrivals.size)
    # a size_timeout plan with a token budget, run as ragged by the options' name
    plan = Plan(buffers=ragged_plan(1024, 50, 1024, instances=4).buffers, policy="size_timeout")
    result = simulate(plan, arrivals, lengths, amortised, PRICING, 1000.0,
                      policy=PolicyOptions(name=RAGGED_POLICY))
    log = result.batches
    assert int(log.size.sum()) == arrivals.size and np.all(result.batch_of_request >= 0)
    assert np.bincount(result.batch_of_request, minlength=len(log)).tolist() == log.size.tolist()
    assert np.all((log.real_tokens <= 1024) | (log.size == 1))
    assert np.all(result.latency_ms >= log.service_ms[result.batch_of_request] - 1e-9)
    assert result.metrics.padding_overhead == 0.0


def test_rejects_a_plan_without_a_token_budget() -> None:
    arrivals, lengths = _hand_trace()
    with pytest.raises(ValueError, match="needs max_batch_tokens"):
        simulate(triton_plan(4, 0, 1024, instances=2), arrivals, lengths, amortised, PRICING,
                 1000.0, policy=PolicyOptions(name=RAGGED_POLICY))


def test_the_grid_picks_a_point_and_labels_its_service_time_modelled() -> None:
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0.0, 30.0, 600))
    bench = Workbench(arrivals, rng.integers(1, 200, arrivals.size),
                      make_backend("lambda", None, PRICING), 1000.0)
    grids = BaselineGrids.build(bench, (3008,), ragged=True)
    assert len(grids.ragged) == (len(RAGGED_BATCH_TOKENS) * len(RAGGED_DELAY_MS)
                                 * len(RAGGED_INSTANCES))
    outcome = pick_ragged(grids, bench)
    assert outcome.name == "ragged" and "modelled" in outcome.tuning
    assert "modelled" in outcome.settings["service_time"]
    assert outcome.metrics.padding_overhead == 0.0
    with pytest.raises(ValueError, match="ragged=True"):
        pick_ragged(BaselineGrids.build(bench, (3008,)), bench)
