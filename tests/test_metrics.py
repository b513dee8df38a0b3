"""Cost math against hand-computed values, and the metrics' shape."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.platform.bulk_items import fixed_usd, run_cost, sqs_calls
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.metrics import CostBreakdown, PlanMetrics
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import no_batching_plan
from optimizer.sim.engine import simulate

PRICING = Pricing()
GB_S_X86 = 0.0000166667
NO_COLD = LambdaRules(cold_start_ms=0.0)


def test_one_invocation_of_100_2_ms_at_1024_mb_bills_101_ms() -> None:
    cost = run_cost(1, np.array([1]), np.array([PRICING.billed_ms(100.2)]), np.array([1024]),
                    PRICING)
    assert PRICING.billed_ms(100.2) == 101
    assert cost.infer_compute_usd == pytest.approx(0.101 * 1.0 * GB_S_X86, rel=1e-12)
    assert cost.infer_request_usd == pytest.approx(0.20e-6, rel=1e-12)
    # one send, one receive call, one delete call
    assert cost.queue_usd == pytest.approx(3 * 0.40e-6, rel=1e-12)


def test_simulated_invocation_bills_the_same_and_init_when_cold() -> None:
    plan = no_batching_plan(1024)
    warm = simulate(plan, np.array([0.0]), np.array([10]), lambda *_: 100.2, PRICING,
                    slo_ms=1000.0, rules=NO_COLD)
    assert warm.batches.billed_ms.tolist() == [101]
    assert warm.metrics.cost.infer_compute_usd == pytest.approx(0.101 * GB_S_X86, rel=1e-12)
    cold = simulate(plan, np.array([0.0]), np.array([10]), lambda *_: 100.2, PRICING,
                    slo_ms=1000.0, rules=LambdaRules(cold_start_ms=6000.0))
    assert cold.batches.billed_ms.tolist() == [6101]  # INIT is billed (since Aug 2025)
    assert cold.latency_ms[0] == pytest.approx(6100.2)
    unbilled = simulate(plan, np.array([0.0]), np.array([10]), lambda *_: 100.2, PRICING,
                        slo_ms=1000.0, rules=LambdaRules(cold_start_ms=6000.0, bill_init=False))
    assert unbilled.batches.billed_ms.tolist() == [101]


def test_arm64_uses_its_own_gb_s_price() -> None:
    cost = run_cost(1, np.array([1]), np.array([1000]), np.array([2048]), PRICING, arch="arm64")
    assert cost.infer_compute_usd == pytest.approx(2.0 * 0.0000133334, rel=1e-12)


def test_sqs_receive_and_delete_are_batched_per_10() -> None:
    assert sqs_calls(np.array([1, 10, 11, 23])) == 2 * (1 + 1 + 2 + 3)
    cost = run_cost(23, np.array([23]), np.array([0]), np.array([128]), PRICING)
    assert cost.queue_usd == pytest.approx((23 + 3 + 3) * 0.40e-6, rel=1e-12)


def test_fixed_items_per_request_by_hand() -> None:
    fixed = fixed_usd(1, PRICING)
    assert fixed["api_usd"] == pytest.approx(2 * 1.00e-6)  # POST + one GET
    # ingest + results functions: 15 ms at 256 MB each = 0.00375 GB-s + one request fee each
    assert fixed["ingest_usd"] == pytest.approx(2 * (0.00375 * GB_S_X86 + 0.20e-6))
    # 1 WRU PENDING + 1 WRU result (float16, under 1 KB) + 1 RRU read
    assert fixed["store_usd"] == pytest.approx(2 * 0.625e-6 + 0.125e-6)


def test_breakdown_totals_are_properties() -> None:
    cost = CostBreakdown(infer_compute_usd=1.0, infer_request_usd=2.0, queue_usd=3.0,
                         api_usd=4.0, ingest_usd=5.0, store_usd=6.0)
    assert cost.batching_usd == 6.0
    assert cost.total_usd == 21.0
    assert (cost + cost).total_usd == 42.0
    assert cost.to_dict()["batching_usd"] == 6.0


def test_plan_metrics_dict_has_exactly_the_agreed_keys() -> None:
    result = simulate(no_batching_plan(1024), np.array([0.0, 0.5]), np.array([5, 7]),
                      lambda *_: 10.0, PRICING, slo_ms=1000.0, rules=NO_COLD)
    out = result.metrics.to_dict()
    assert set(out) == {"end_to_end_cost_per_million_usd", "infer_cost_per_million_usd",
                        "batching_cost_per_million_usd", "cost_per_million_usd",
                        "total_cost_per_million_usd", "p50_ms",
                        "p95_ms", "p99_ms", "slo_attainment", "padding_overhead",
                        "invocations", "requests", "cold_starts", "mean_batch_size", "cost",
                        "per_buffer", "low_traffic_share", "low_traffic_p99_bound_ms"}
    assert set(out["per_buffer"]) == {"all"}
    assert isinstance(result.metrics, PlanMetrics)


def test_cost_per_million_is_end_to_end_cost_per_request() -> None:
    # a dispatcher-mode plan rides the online path: no SQS, no table (issue 12)
    result = simulate(no_batching_plan(1024), np.array([0.0, 0.5]), np.array([5, 7]),
                      lambda *_: 10.0, PRICING, slo_ms=1000.0, rules=NO_COLD)
    m = result.metrics
    assert m.cost_per_million_usd == pytest.approx(m.cost.end_to_end_usd / 2 * 1e6)
    assert m.total_cost_per_million_usd == pytest.approx(m.cost.total_usd / 2 * 1e6)
    # 10 ms at 1 GB + request fee per request; batching = infer on the online path
    infer = 0.010 * GB_S_X86 + 0.20e-6
    assert m.infer_cost_per_million_usd == pytest.approx(infer * 1e6)
    assert m.batching_cost_per_million_usd == pytest.approx(infer * 1e6)
    assert m.cost.queue_usd == m.cost.store_usd == m.cost.ingest_usd == 0.0
