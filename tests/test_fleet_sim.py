"""The gpu fleet in the simulator (optimizer/sim/fleet.py): instance-seconds are the fleet's
lifetimes, no batch runs on a GPU that is not there, the floor of three instances holds, and a
burst meets the fleet that was there before scale-out lands."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import optimizer.sim  # noqa: F401  (registers the policies)
from buffers.gears import GearConfig, GearSet
from buffers.plan import BufferSpec, DispatchMode, Plan
from optimizer.platform.lmi_scaling import FleetBounds, ScalingRules, scale_decision
from optimizer.platform.pricing import Pricing
from optimizer.sim.engine import simulate
from optimizer.sim.fleet import FleetLauncher

RULES = ScalingRules()


def service_ms(batch: int, length: int, memory_mb: float) -> float:
    """A GPU-like pass: a 2 ms launch floor, then compute."""
    return 2.0 + 0.2 * batch * length


def gpu_plan(max_instances: int = 12, min_instances: int = 3) -> Plan:
    return Plan(buffers=(BufferSpec("short", 1, 128, 16, 100, 1024, max_concurrency=64),
                         BufferSpec("long", 129, 256, 16, 100, 1024, max_concurrency=64)),
                backend="gpu", instance_type="g6.xlarge", min_instances=min_instances,
                max_instances=max_instances)


def bursty(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 req/s for 10 min, 400 req/s for 5 min (more than doubling), 10 req/s for 20 min."""
    rng = np.random.default_rng(seed)
    parts = [rng.uniform(0, 600, 6_000), rng.uniform(600, 900, 120_000),
             rng.uniform(900, 2100, 12_000)]
    arrivals = np.sort(np.concatenate(parts))
    return arrivals, np.full(arrivals.size, 64)


@pytest.fixture(scope="module")
def burst_run():
    arrivals, lengths = bursty()
    return arrivals, simulate(gpu_plan(), arrivals, lengths, service_ms, Pricing(), 1000.0)


def _launcher_view(result) -> tuple[np.ndarray, np.ndarray]:
    log = result.batches
    return log.start_s, log.end_s


def test_instance_seconds_are_the_sum_of_the_fleets_lifetimes(monkeypatch) -> None:
    arrivals, lengths = bursty(1)
    captured: list[FleetLauncher] = []
    original = FleetLauncher.finish

    def spy(self: FleetLauncher, end_s: float) -> None:
        captured.append(self)
        original(self, end_s)

    monkeypatch.setattr(FleetLauncher, "finish", spy)  # to read the run's fleet afterwards
    result = simulate(gpu_plan(), arrivals, lengths, service_ms, Pricing(), 1000.0)
    fleet = captured[0]
    lifetimes = sum(end - start for start, end in fleet.lifetimes)
    assert fleet.instance_seconds() == pytest.approx(lifetimes)
    assert result.metrics.instance_hours == pytest.approx(lifetimes / 3600.0)
    spans = result.instance_lifetimes_s
    assert spans.shape == (len(fleet.lifetimes), 2)
    assert np.sum(spans[:, 1] - spans[:, 0]) == pytest.approx(lifetimes)
    assert len(fleet.lifetimes) > 3  # it scaled out
    # and the bill is that instance time at g6.xlarge's price plus 15%
    assert result.metrics.cost.infer_compute_usd == pytest.approx(lifetimes / 3600 * 0.8048 * 1.15)
    # no batch runs on an instance before it serves, after it retires, or beside another
    first = fleet.lifetimes
    rows = np.asarray(fleet.instance_of)
    start, end = _launcher_view(result)
    for instance_id, (launched, retired) in enumerate(first):
        mine = np.nonzero(rows == instance_id)[0]
        serves_from = launched + (RULES.launch_s if instance_id >= 3 else 0.0)
        assert np.all(start[mine] >= serves_from - 1e-9)
        assert np.all(end[mine] <= retired + 1e-9)
        order = np.argsort(start[mine])
        assert np.all(start[mine][order][1:] >= end[mine][order][:-1] - 1e-9)
    # at every batch's start, the batches running are at most the instances serving
    serving_from = np.array([lo + (RULES.launch_s if i >= 3 else 0.0)
                             for i, (lo, _) in enumerate(first)])
    retired = np.array([hi for _, hi in first])
    for s in start[:: max(1, start.size // 500)]:
        running = int(np.sum((start <= s) & (end > s)))
        serving = int(np.sum((serving_from <= s) & (retired > s)))
        assert running <= serving
        assert serving >= 3  # the floor holds through scale-in


def test_a_quiet_fleet_keeps_its_three_instances() -> None:
    rng = np.random.default_rng(2)
    arrivals = np.sort(rng.uniform(0, 1800, 900))  # 0.5 req/s for 30 min
    result = simulate(gpu_plan(), arrivals, np.full(arrivals.size, 32), service_ms, Pricing(),
                      1000.0)
    duration_s = max(float(arrivals[-1]), float(result.batches.end_s.max()))
    assert result.metrics.instance_hours == pytest.approx(3 * duration_s / 3600.0)
    assert result.metrics.cold_starts == 0


def test_a_burst_meets_the_fleet_that_was_there(burst_run) -> None:
    arrivals, result = burst_run
    latency = result.latency_ms
    before = latency[arrivals < 600].mean()
    first_minute = latency[(arrivals >= 600) & (arrivals < 660)].mean()
    assert first_minute > 20 * before  # the three instances saturate and requests queue
    # the first scale-out is decided at the 660 s tick and serves from 840 s
    start = result.batches.start_s
    assert result.metrics.instance_hours > 3 * 2100 / 3600.0
    late = latency[(arrivals >= 1500) & (arrivals < 2000)].mean()
    assert late < 2 * before  # the backlog is gone once the fleet has grown
    assert np.all(start[(start >= 600) & (start < 840)] < 840)


def test_max_instances_caps_the_fleet(burst_run) -> None:
    arrivals, lengths = bursty()
    capped = simulate(gpu_plan(max_instances=4), arrivals, lengths, service_ms, Pricing(),
                      1000.0)
    _, free = burst_run
    assert capped.metrics.instance_hours <= 4 * capped.batches.end_s.max() / 3600 + 1e-9
    assert capped.metrics.p99_ms > free.metrics.p99_ms


def test_managed_buffers_stay_off_the_fleet() -> None:
    managed = Plan(buffers=(BufferSpec("bulk", 1, 256, 8, 1000, 1024,
                                       dispatch_mode=DispatchMode.MANAGED),),
                   backend="gpu", instance_type="g6.xlarge", max_instances=4)
    with pytest.raises(ValueError, match=r"\['bulk'\] are managed"):
        simulate(managed, np.array([0.0, 1.0]), np.array([5, 6]), service_ms, Pricing(), 1000.0)


def test_lambda_plans_bill_no_instances() -> None:
    plan = Plan(buffers=(BufferSpec("all", 1, 256, 8, 50, 1769),))
    arrivals = np.linspace(0, 60, 200)
    result = simulate(plan, arrivals, np.full(200, 40), service_ms, Pricing(), 1000.0)
    assert result.metrics.instance_hours is None
    assert "instance_hours" not in result.metrics.to_dict()
    assert result.metrics.cost.infer_compute_usd > 0


def test_scale_decision_grows_to_target_and_shrinks_only_on_the_long_window() -> None:
    bounds = FleetBounds(3, 10)
    # 60 GPU-seconds busy in a 60 s window at 60% target: 100 % / 60 % = 2 -> floor 3, none
    assert scale_decision(60.0, 60.0, 600.0, 600.0, 3, 0, RULES, bounds) == 0
    # 180 busy in 60 s (three saturated instances): ceil(3 / 0.6) = 5 -> launch 2
    assert scale_decision(180.0, 60.0, 200.0, 600.0, 3, 0, RULES, bounds) == 2
    # nothing shrinks while an instance is pending
    assert scale_decision(0.0, 60.0, 0.0, 600.0, 5, 1, RULES, bounds) == 0
    # quiet: shrink to the floor, never below it
    assert scale_decision(0.0, 60.0, 0.0, 600.0, 6, 0, RULES, bounds) == -3
    # the ceiling holds
    assert scale_decision(6000.0, 60.0, 0.0, 600.0, 3, 0, RULES, bounds) == 7
    with pytest.raises(ValueError, match="scale_in_window_s must be a whole number"):
        ScalingRules(scale_in_window_s=90.0)


def test_batching_gears_run_over_one_fleet(burst_run) -> None:
    # gears switch batching with the load; the fleet below them is the static plan's
    arrivals, lengths = bursty()
    low = gpu_plan()
    high = replace(low, buffers=tuple(replace(s, max_batch_size=64, timeout_ms=200)
                                      for s in low.buffers))
    config = GearConfig(up_rps=(100.0,), down_rps=(50.0,), tau_s=10.0, min_dwell_s=20.0)
    geared = simulate(low, arrivals, lengths, service_ms, Pricing(), 1000.0,
                      gears=GearSet((low, high), config))
    assert set(np.unique(geared.gear_of_request)) == {0, 1}
    assert int(geared.batches.size.sum()) == arrivals.size
    spans = geared.instance_lifetimes_s
    assert geared.metrics.instance_hours == pytest.approx(
        float(np.sum(spans[:, 1] - spans[:, 0])) / 3600.0)
    _, static = burst_run
    assert geared.metrics.mean_batch_size > static.metrics.mean_batch_size
