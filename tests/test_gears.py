"""Gears: the selector's hysteresis and dwell, gear sets in plan meta, and geared replays."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from buffers.geared import GearedBatcher
from buffers.gears import GearConfig, GearSelector, GearSet, gears_from_plan
from buffers.plan import BufferSpec, Plan, PlanError
from buffers.plan_files import load_plan, save_plan
from buffers.types import FlushReason, Request
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.search.gears import assign_gears, gear_clock, gear_config, measured_rates
from optimizer.sim.engine import simulate

TWO = GearConfig(up_rps=(10.0,), down_rps=(5.0,), tau_s=1.0, min_dwell_s=0.0)


def feed(selector: GearSelector, rate_rps: float, seconds: float, start_s: float) -> list[int]:
    """Arrivals evenly spaced at rate_rps for `seconds`; the gear after each."""
    times = start_s + np.arange(1, int(rate_rps * seconds) + 1) / rate_rps
    return [selector.observe(float(t)) for t in times]


def test_selector_switches_up_above_hi_and_down_only_below_lo() -> None:
    selector = GearSelector(TWO)
    assert feed(selector, 7.0, 10, 0.0)[-1] == 0  # between lo and hi: stays low
    assert feed(selector, 12.0, 10, 10.0)[-1] == 1  # above hi: up
    assert feed(selector, 7.0, 10, 20.0)[-1] == 1  # between: stays high (hysteresis)
    assert feed(selector, 4.0, 10, 30.0)[-1] == 0  # below lo: down
    assert selector.switches == 2


def test_selector_holds_a_gear_for_the_minimum_dwell() -> None:
    selector = GearSelector(replace(TWO, min_dwell_s=30.0))
    gears = feed(selector, 12.0, 10, 0.0)
    up_at = gears.index(1)
    # a drop right after the switch does not move it back until 30 s have passed
    assert set(feed(selector, 2.0, 20, 10.0)) == {1}
    assert feed(selector, 2.0, 20, 30.0)[-1] == 0
    assert up_at > 0 and selector.switches == 2


def test_selector_jumps_several_gears_and_decays_without_arrivals() -> None:
    config = GearConfig(up_rps=(2.0, 4.0), down_rps=(1.5, 3.0), tau_s=1.0, min_dwell_s=0.0)
    selector = GearSelector(config)
    assert selector.observe(0.0, arrivals=10) == 2  # rate 10 > both up thresholds
    assert selector.observe(10.0) == 0  # 10 s quiet: rate ~1 + 1e-3 -> below both downs
    assert selector.observe(9.0, arrivals=0) == 0  # a clock stepping back: no time passes


@pytest.mark.parametrize("kwargs, message", [
    ({"up_rps": (5.0,), "down_rps": (5.0,)}, "down_rps < up_rps"),
    ({"up_rps": (5.0, 3.0), "down_rps": (1.0, 2.0)}, "up_rps must be ascending"),
    ({"up_rps": (5.0,), "down_rps": (1.0, 2.0)}, "one entry per gear boundary"),
    ({"up_rps": (5.0,), "down_rps": (1.0,), "tau_s": 0.0}, "tau_s must be > 0"),
    ({"up_rps": (5.0,), "down_rps": (1.0,), "initial_gear": 2}, "initial_gear must be in"),
])
def test_gear_config_names_the_bad_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GearConfig(**kwargs)


def _plan(batches: tuple[int, int], timeouts: tuple[int, int], memory_mb: int = 1769) -> Plan:
    return Plan(buffers=(
        BufferSpec("short", 1, 48, batches[0], timeouts[0], memory_mb, max_concurrency=4),
        BufferSpec("long", 49, 256, batches[1], timeouts[1], memory_mb, max_concurrency=4)))


def test_gears_share_one_layout() -> None:
    with pytest.raises(ValueError, match=r"gear 1 buffers\[0\].memory_mb must equal"):
        GearSet((_plan((4, 2), (100, 50)), _plan((8, 4), (200, 100), 3008)), TWO)
    with pytest.raises(ValueError, match="needs 2 plans"):
        GearSet((_plan((4, 2), (100, 50)),), TWO)


def test_gear_set_round_trips_through_plan_meta(tmp_path: Path) -> None:
    gears = GearSet((_plan((4, 2), (100, 50)), _plan((16, 8), (300, 200))), TWO)
    static = Plan(buffers=gears.plans[0].buffers, name="static",
                  meta={"gears": gears.to_meta([{"note": "x"}, {"note": "y"}])})
    save_plan(static, tmp_path / "p.json")
    loaded = gears_from_plan(load_plan(tmp_path / "p.json"))
    assert loaded is not None and loaded.config == TWO
    assert [p.buffers for p in loaded.plans] == [p.buffers for p in gears.plans]
    assert gears_from_plan(_plan((4, 2), (100, 50))) is None
    broken = replace(static, meta={"gears": {"selector": {"up_rps": [1]}, "levels": []}})
    with pytest.raises(PlanError, match="meta.gears is not a valid gear set"):
        gears_from_plan(broken)


def test_geared_batcher_sends_arrivals_to_the_active_gear() -> None:
    # GIVEN two gears over one layout, and a rate just under the up threshold
    low, high = _plan((4, 2), (100, 50)), _plan((16, 8), (300, 200))
    config = GearConfig(up_rps=(10.0,), down_rps=(5.0,), tau_s=1.0, min_dwell_s=0.0,
                        initial_rps=8.5)
    batcher = GearedBatcher(low, GearSet((low, high), config))
    # WHEN one request arrives (rate 9.5: low gear), then another at once (10.5: high gear)
    assert batcher.add(Request("r0", 10, 0.0), 0.0) == []
    assert batcher.gear == 0
    assert batcher.add(Request("r1", 10, 0.0), 0.0) == []
    assert batcher.gear == 1 and batcher.pending() == 2
    # THEN each leaves under its own gear's timeout, whatever gear is active
    assert batcher.next_due_s() == pytest.approx(0.1)
    (first,) = batcher.poll(0.1)
    assert [r.id for r in first.requests] == ["r0"] and first.reason is FlushReason.TIMEOUT
    assert batcher.next_due_s() == pytest.approx(0.3)
    (second,) = batcher.poll(0.3)
    assert [r.id for r in second.requests] == ["r1"]
    # AND a later arrival between the thresholds stays in the high gear, until drained
    assert batcher.add_to(1, Request("r2", 100, 0.4), 0.4) == []
    assert batcher.gear == 1 and len(batcher.buffer_queues(1)[1]) == 1
    (last,) = batcher.drain(0.5)
    assert last.buffer_name == "long" and last.reason is FlushReason.DRAIN
    assert batcher.pending() == 0 and batcher.next_due_s() is None


def test_geared_batcher_refuses_gears_over_another_layout() -> None:
    other = _plan((4, 2), (100, 50), memory_mb=3008)
    with pytest.raises(ValueError, match=r"buffers\[0\].memory_mb must equal"):
        GearedBatcher(_plan((4, 2), (100, 50)), GearSet((other, other), TWO))


def test_measured_rates_are_the_selectors_own() -> None:
    arrivals = np.cumsum(np.random.default_rng(3).exponential(0.2, 500))
    config = GearConfig(up_rps=(1e9,), down_rps=(1.0,), tau_s=7.0, initial_rps=2.5)
    selector = GearSelector(config)
    seen = []
    for t in arrivals.tolist():
        selector.observe(t)
        seen.append(selector.rate_rps)
    assert measured_rates(arrivals, 7.0, 2.5).tolist() == seen


def bursty(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2 req/s for 5 min, 25 req/s for 2 min, 2 req/s for 5 min; 70/30 short/long."""
    rng = np.random.default_rng(seed)
    parts, start = [], 0.0
    for rate, span in ((2.0, 300.0), (25.0, 120.0), (2.0, 300.0)):
        parts.append(start + np.sort(rng.uniform(0, span, int(rate * span))))
        start += span
    arrivals = np.concatenate(parts)
    lengths = np.where(rng.random(arrivals.size) < 0.3, rng.integers(49, 257, arrivals.size),
                       rng.integers(5, 49, arrivals.size))
    return arrivals, lengths.astype(np.int64)


def service(batch: int, length: int, memory_mb: int) -> float:
    return 5.0 + 0.05 * batch * length


def test_geared_replay_serves_every_request_once_under_its_gears_rules() -> None:
    # GIVEN a bursty trace and two gears that batch differently over one layout
    arrivals, lengths = bursty()
    low, high = _plan((2, 1), (50, 20)), _plan((16, 8), (400, 300))
    config = GearConfig(up_rps=(10.0,), down_rps=(5.0,), tau_s=10.0, min_dwell_s=20.0)
    result = simulate(low, arrivals, lengths, service, Pricing(), 1000.0,
                      rules=LambdaRules(cold_start_ms=0.0), gears=GearSet((low, high), config))
    log, gear_of = result.batches, result.gear_of_request
    # THEN every request is served exactly once, by one batch
    assert np.all(result.batch_of_request >= 0)
    assert np.array_equal(np.bincount(result.batch_of_request, minlength=len(log)), log.size)
    assert int(log.size.sum()) == arrivals.size
    # AND both gears served, the burst in the high gear
    assert set(np.unique(gear_of)) == {0, 1}
    assert np.mean(gear_of[(arrivals > 330) & (arrivals < 420)] == 1) > 0.9
    # AND each batch holds one gear's requests, within that gear's batch size
    for row in range(len(log)):
        members = np.flatnonzero(result.batch_of_request == row)
        gears = set(gear_of[members].tolist())
        assert len(gears) == 1
        plan = (low, high)[gears.pop()]
        assert log.size[row] <= plan.buffers[log.buffer[row]].max_batch_size


def test_gear_config_splits_the_requests_and_gear_clocks_run_forward() -> None:
    arrivals, _ = bursty()
    config = gear_config(arrivals, gears=2)
    gear_of = assign_gears(arrivals, config)
    assert set(np.unique(gear_of)) == {0, 1}
    for g in (0, 1):
        clock = gear_clock(arrivals, gear_of, g)
        assert clock.size == int(np.sum(gear_of == g))
        assert np.all(np.diff(clock) >= 0) and clock[-1] <= arrivals[-1]
