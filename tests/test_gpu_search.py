"""gpu plans in the estimator (optimizer/estimator/fleet.py) and the search
(optimizer/search/gpu.py): the fleet estimate against the simulator's fleet, the fleet's bounds
as search dimensions, and a search over buffers and fleet on more than one instance type."""

from __future__ import annotations

import numpy as np
import pytest

import optimizer.sim  # noqa: F401  (registers the policies)
from buffers.plan import BufferSpec, DispatchMode, Plan
from optimizer.estimator.estimate import estimate
from optimizer.estimator.fleet import FleetEstimator, estimate_gpu, fleet_context, fleet_over_ticks
from optimizer.platform.gpu_instances import instance
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.lmi_scaling import FleetBounds, ScalingRules
from optimizer.platform.pricing import Pricing
from optimizer.search.encoding import Encoding
from optimizer.search.gpu import GpuWorkload, gpu_space, optimize_gpu, service_for
from optimizer.search.moves import steps
from optimizer.sim.engine import simulate

# A launch floor of 3 ms, then compute: GPU-shaped, measured on an L4 (g6.xlarge's GPU).
MODEL = GpuLatencyModel(device="cuda", gpu_name="NVIDIA L4", dtype="float16", launch_ms=3.0,
                        per_token_ms=0.002, per_token_sq_ms=0.0, transfer_per_item_ms=0.0,
                        transfer_per_token_ms=0.0)


def workload(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """15 minutes at ~110 req/s with a 2-minute burst to ~440 req/s."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 900, 100_000),
                                       rng.uniform(300, 420, 40_000)]))
    lengths = np.clip(rng.lognormal(3.5, 0.7, arrivals.size).astype(int), 1, 256)
    return arrivals, lengths


def plan(max_instances: int = 12) -> Plan:
    return Plan(buffers=(BufferSpec("short", 1, 64, 64, 200, 1024, max_concurrency=64),
                         BufferSpec("long", 65, 256, 32, 200, 1024, max_concurrency=64)),
                backend="gpu", instance_type="g6.xlarge", max_instances=max_instances)


def test_fluid_fleet_bills_the_floor_when_quiet_and_lags_a_burst() -> None:
    rules = ScalingRules()
    quiet = fleet_over_ticks(np.full(10, 1.0), 570.0, 5.0, rules, FleetBounds(3, 10))
    assert quiet.instance_seconds == pytest.approx(3 * 570.0)  # the floor, last tick partial
    assert np.all(quiet.serving == 3)
    # three saturated instances (300 s of demand a tick): scale-out decided after tick 0
    # serves from tick 4 (60 s + 180 s later), and the wait grows until then
    burst = fleet_over_ticks(np.full(8, 300.0), 480.0, 5.0, rules, FleetBounds(3, 10))
    assert list(burst.serving[:5]) == [3, 3, 3, 3, 5]
    assert burst.wait_ms[3] > burst.wait_ms[0] > 1000.0
    assert burst.instance_seconds > 3 * 480.0


def test_fleet_estimate_agrees_with_the_simulated_fleet() -> None:
    arrivals, lengths = workload()
    service = service_for(MODEL, "g6.xlarge")
    ctx = fleet_context(arrivals, lengths, service, Pricing(), 1000.0)
    estimated = estimate_gpu(plan(), ctx)
    simulated = simulate(plan(), arrivals, lengths, service, Pricing(), 1000.0).metrics
    assert estimated.instance_hours == pytest.approx(simulated.instance_hours, rel=0.05)
    assert estimated.invocations == pytest.approx(simulated.invocations, rel=0.05)
    assert estimated.end_to_end_cost_per_million_usd == pytest.approx(
        simulated.end_to_end_cost_per_million_usd, rel=0.05)
    assert estimated.p99_ms == pytest.approx(simulated.p99_ms, rel=0.25)
    assert estimated.cold_starts == 0.0
    # the fleet bill: instance-hours x $0.8048 x 1.15, no GB-seconds
    assert estimated.cost.infer_compute_usd == pytest.approx(
        estimated.instance_hours * 0.8048 * 1.15)


def test_the_estimator_refuses_what_has_no_fleet() -> None:
    arrivals, lengths = workload()
    ctx = fleet_context(arrivals[:2000], lengths[:2000], MODEL, Pricing(), 1000.0)
    with pytest.raises(ValueError, match="only gpu plans have a fleet"):
        FleetEstimator(ctx)(Plan(buffers=(BufferSpec("all", 1, 256, 8, 50, 1024),)))
    managed = Plan(buffers=(BufferSpec("all", 1, 256, 8, 1000, 1024,
                                       dispatch_mode=DispatchMode.MANAGED),),
                   backend="gpu", instance_type="g6.xlarge", max_instances=4)
    with pytest.raises(ValueError, match="runs buffers dispatched online"):
        FleetEstimator(ctx)(managed)
    with pytest.raises(ValueError, match="estimate it with optimizer.estimator.fleet"):
        estimate(plan(), ctx)  # the lambda estimator would price invocations, not instances


def test_service_moves_to_the_instance_types_gpu() -> None:
    assert service_for(MODEL, "g6.xlarge") is MODEL  # measured on its L4
    on_t4 = service_for(MODEL, "g4dn.xlarge")
    assert on_t4.gpu_name == instance("g4dn.xlarge").gpu.name and on_t4.estimate
    assert on_t4(64, 128, 1024) > MODEL(64, 128, 1024)  # a T4 is slower than an L4


def test_fleet_bounds_are_dimensions_and_moves_of_a_gpu_space() -> None:
    space = gpu_space("g6.xlarge", 2, min_instances=(1, 3), max_instances=(3, 8, 16))
    enc = Encoding.build(space, np.arange(1, 257))
    assert {"min_instances", "max_instances"} <= set(enc.names)
    fastest = enc.decode(enc.fastest())
    assert (fastest.backend.value, fastest.instance_type) == ("gpu", "g6.xlarge")
    assert (fastest.min_instances, fastest.max_instances) == (3, 16)
    assert enc.decode(enc.encode(fastest)) == fastest
    assert enc.encode(Plan(buffers=fastest.buffers)) is None  # a lambda plan is outside
    moved = list(steps(enc, fastest))
    assert all(p.instance_type == "g6.xlarge" for p in moved)
    assert any(p.max_instances == 8 and p.buffers == fastest.buffers for p in moved)
    with pytest.raises(ValueError, match="Unknown GPU instance type"):
        gpu_space("p9.huge")


def test_search_picks_buffers_and_fleet_on_the_cheapest_instance_type() -> None:
    arrivals, lengths = workload(1)
    work = GpuWorkload(arrivals, lengths, MODEL, Pricing(), 1000.0)
    found = optimize_gpu(work, 99.0, 30, seed=0, instance_types=("g4dn.xlarge", "g6.xlarge"),
                         max_buffers=2, space_options={"max_instances": (3, 6, 12)})
    assert set(found.by_type) == {"g4dn.xlarge", "g6.xlarge"}
    best = found.best
    assert best is not None and best.feasible and found.plan is not None
    assert found.plan.instance_type in found.by_type
    assert best.simulated.p99_ms <= 1000.0 and best.simulated.instance_hours > 0
    costs = [r.simulated.end_to_end_cost_per_million_usd for r in found.by_type.values()
             if r.feasible]
    assert best.simulated.end_to_end_cost_per_million_usd == min(costs)
    assert 3 <= found.plan.min_instances <= found.plan.max_instances <= 12
    assert found.to_dict()[found.plan.instance_type]["plan"]["backend"] == "gpu"
