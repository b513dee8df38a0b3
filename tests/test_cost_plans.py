"""A plan's three cost figures on a hand-checkable tiny trace, from the estimator and the
simulator alike: the online path for dispatcher-mode plans (with the dispatcher fleet split over
several tasks), the bulk path for managed-mode ones, and plain Lambda.

Every expected figure is arithmetic on the price-page numbers, not computed by the code under
test. Units: 2^30 bytes a GB; Lambda x86 $0.0000166667 per GB-second.
"""

from __future__ import annotations

import numpy as np
import pytest

from buffers.plan import BufferSpec, DispatchMode, Plan
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.plan_cost import FleetSettings, RunBilling
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import no_batching_plan
from optimizer.sim.engine import repriced, simulate

PRICING = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)
GB = 1024 ** 3
GB_S_X86 = 0.0000166667
# Four requests, one input each, over 150 s: minutes [0, 60) hold two, [60, 120) one, and
# [120, 150] one. Each runs alone for 10 ms at 1,024 MB (batch size 1).
ARRIVALS = np.array([0.0, 30.0, 90.0, 150.0])
LENGTHS = np.array([12, 40, 7, 100])
SERVICE_MS = 10.0
HOURS = 150.0 / 3600.0
ONE_RESPONSE = 300 + 150 + 120 + 384 * 12  # headers, envelope, item, 384 floats as JSON
TASK_HOUR = 0.25 * 0.03238 + 0.5 * 0.00356  # 0.25 vCPU, 0.5 GB, ARM
INFER = 4 * (0.010 * 1.0 * GB_S_X86 + 0.20e-6)  # 10 ms at 1 GB + the request fee, each


def _constant(batch: int, length: int, memory_mb: int) -> float:
    return SERVICE_MS


def _both(plan: Plan, fleet: FleetSettings | None = None):
    ctx = EstimatorContext.build(ARRIVALS, LENGTHS, _constant, PRICING, 1000.0, NO_COLD,
                                 fleet=fleet)
    sim = simulate(plan, ARRIVALS, LENGTHS, _constant, PRICING, 1000.0, NO_COLD, fleet=fleet)
    return estimate(plan, ctx), sim.metrics


def _online(tasks: float) -> dict[str, float]:
    """The online path's line items for the four requests, with `tasks` running all along."""
    return {"infer_compute_usd": 4 * 0.010 * GB_S_X86, "infer_request_usd": 4 * 0.20e-6,
            "api_usd": 4 * 1.00e-6,  # one HTTP API request each (< 512 KB)
            # one DiscoverInstances call each, and each task's Cloud Map instance ($0.10/month)
            "front_door_usd": 4 * 1.00e-6 + tasks * HOURS / 730 * 0.10,
            "dispatcher_compute_usd": tasks * HOURS * TASK_HOUR,
            "dispatcher_ipv4_usd": tasks * HOURS * 0.005,
            # 250 B of dispatcher log per request; per batch 200 B more and Lambda's 350 B
            "logs_usd": (4 * 250 + 4 * (200 + 350)) / GB * 0.50,
            "egress_usd": 4 * ONE_RESPONSE / GB * 0.09}


@pytest.mark.parametrize("which", ["estimator", "simulator"])
def test_online_plan_by_hand(which: str) -> None:
    est, sim = _both(no_batching_plan(1024))
    cost = (est if which == "estimator" else sim).cost
    assert cost.path == RequestPath.ONLINE
    expected = _online(tasks=1)  # ~0.03 req/s: the minimum fleet, one task for 150 s
    for item, usd in expected.items():
        assert getattr(cost, item) == pytest.approx(usd, rel=1e-9), item
    assert cost.queue_usd == cost.store_usd == cost.ingest_usd == cost.queue_polling_usd == 0
    m = est if which == "estimator" else sim
    assert m.end_to_end_cost_per_million_usd == pytest.approx(
        sum(expected.values()) / 4 * 1e6, rel=1e-9)
    assert m.infer_cost_per_million_usd == pytest.approx(INFER / 4 * 1e6, rel=1e-9)
    assert m.batching_cost_per_million_usd == pytest.approx(INFER / 4 * 1e6, rel=1e-9)
    out = m.to_dict()
    assert out["cost_per_million_usd"] == out["total_cost_per_million_usd"] == out[
        "end_to_end_cost_per_million_usd"]


def test_several_dispatcher_tasks_split_the_traffic() -> None:
    # GIVEN tasks that carry 0.01 req/s each: minute 0 runs 2/60 req/s -> 4 tasks, minutes 1
    # and 2 run 1/60 -> 2 tasks, and scale-in waits 15 minutes: 4 tasks for all 150 s
    fleet = FleetSettings(capacity_rps=0.01)
    est, sim = _both(no_batching_plan(1024), fleet)
    expected = _online(tasks=4)
    for cost in (est.cost, sim.cost):
        for item in ("dispatcher_compute_usd", "dispatcher_ipv4_usd", "front_door_usd"):
            assert getattr(cost, item) == pytest.approx(expected[item], rel=1e-9), item
    billing = RunBilling.for_arrivals(ARRIVALS, PRICING, fleet=fleet)
    assert (billing.duration_s, billing.task_seconds) == (150.0, 600.0)


@pytest.mark.parametrize("which", ["estimator", "simulator"])
def test_managed_plan_rides_the_bulk_path_by_hand(which: str) -> None:
    plan = Plan(buffers=(BufferSpec("all", 1, 256, 1, 0, 1024, DispatchMode.MANAGED),))
    est, sim = _both(plan)
    cost = (est if which == "estimator" else sim).cost
    assert cost.path == RequestPath.BULK
    assert cost.infer_usd == pytest.approx(INFER, rel=1e-9)
    # per request a send; per batch of one a receive and a delete
    assert cost.queue_usd == pytest.approx((4 + 2 * 4) * 0.40e-6, rel=1e-9)
    # the queue and its DLQ, 5 pollers each, one 20 s wait per empty receive: 75 polls, less
    # the 4 that returned a message
    assert cost.queue_polling_usd == pytest.approx((75 - 4) * 0.40e-6, rel=1e-9)
    assert cost.api_usd == pytest.approx(4 * 2 * 1.00e-6)  # POST and GET
    # 1 WRU PENDING + 1 WRU result (float16, < 1 KB) + 1 RRU read, per request
    assert cost.store_usd == pytest.approx(4 * (2 * 0.625e-6 + 0.125e-6))
    assert cost.ingest_usd == pytest.approx(4 * 2 * (0.00375 * GB_S_X86 + 0.20e-6))
    assert cost.logs_usd == pytest.approx((4 * (2 * 350 + 450) + 4 * 350) / GB * 0.50)
    assert cost.egress_usd == pytest.approx(4 * (ONE_RESPONSE + 300 + 150) / GB * 0.09)
    assert cost.dispatcher_usd == cost.front_door_usd == 0.0


def test_a_plan_mixing_modes_has_no_single_path_but_every_item() -> None:
    plan = Plan(buffers=(BufferSpec("short", 1, 32, 1, 0, 1024),
                         BufferSpec("long", 33, 256, 1, 0, 1024, DispatchMode.MANAGED)))
    est, sim = _both(plan)
    for m in (est, sim):
        assert m.cost.path is None
        assert m.per_buffer["short"].cost.path == RequestPath.ONLINE
        assert m.per_buffer["long"].cost.path == RequestPath.BULK
        parts = sum(b.cost.total_usd for b in m.per_buffer.values())
        fleet = HOURS * (TASK_HOUR + 0.005) + HOURS / 730 * 0.10  # one task: some are online
        assert m.cost.total_usd == pytest.approx(parts + fleet, rel=1e-9)


def test_plain_lambda_prices_the_no_batching_run_by_hand() -> None:
    # GIVEN the no-batching run with a 6 s cold start: the first request starts cold, the
    # rest reuse its environment (10 min keep-alive)
    rules = LambdaRules(cold_start_ms=6000.0)
    run = simulate(no_batching_plan(1024), ARRIVALS, LENGTHS, _constant, PRICING, 1000.0, rules)
    billing = RunBilling.for_arrivals(ARRIVALS, PRICING)
    plain = repriced(run, 1000.0, billing, RequestPath.PLAIN_LAMBDA)
    cost = plain.metrics.cost
    # THEN the same invocations, INIT billed once, behind the HTTP API and nothing else
    assert cost.path == RequestPath.PLAIN_LAMBDA
    assert cost.infer_compute_usd == pytest.approx((4 * 0.010 + 6.0) * GB_S_X86, rel=1e-9)
    assert cost.infer_request_usd == pytest.approx(4 * 0.20e-6)
    assert cost.api_usd == pytest.approx(4 * 1.00e-6)
    assert cost.logs_usd == pytest.approx(4 * 350 / GB * 0.50)  # Lambda's own lines only
    assert cost.egress_usd == pytest.approx(4 * ONE_RESPONSE / GB * 0.09)
    assert cost.dispatcher_usd == cost.front_door_usd == cost.queue_usd == cost.store_usd == 0
    # AND its latency is the single request's, cold start included
    assert plain.latency_ms.tolist() == pytest.approx([6010.0, 10.0, 10.0, 10.0])
    assert plain.metrics.p99_ms == pytest.approx(np.percentile([6010.0, 10, 10, 10], 99))
