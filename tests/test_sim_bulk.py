"""The batch-by-batch replay (optimizer/sim/bulk.py) gives the event loop's run, field by field."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from buffers.plan import BufferSpec, Plan
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim import buffered
from optimizer.sim.bulk import BulkSizeTimeout
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import PolicyInputs, PolicyOptions, make_policy

PRICING = Pricing()


def service(b: int, length: int, memory_mb: int) -> float:
    return 5.0 + 0.4 * b + 0.01 * b * length * 3008 / memory_mb


def _plan(buffers: list[tuple[int, int, int, int]]) -> Plan:
    """Buffers as (max_length, max_batch, timeout_ms, concurrency), in order."""
    specs, low = [], 1
    for i, (top, batch, timeout_ms, concurrency) in enumerate(buffers):
        specs.append(BufferSpec(f"b{i}", low, top, batch, timeout_ms, 1024 + 512 * i,
                                max_concurrency=concurrency))
        low = top + 1
    return Plan(buffers=tuple(specs))


def _trace(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Bursty arrivals with ties (several at one instant, some on a timer's due time)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(0.01, count) * rng.choice([0.0, 0.1, 1.0, 20.0], count,
                                                     p=[0.2, 0.3, 0.4, 0.1])
    arrivals = np.cumsum(gaps)
    arrivals[5::37] = arrivals[4::37][: arrivals[5::37].size] + 0.05  # on a 50 ms due time
    arrivals[100:180] = arrivals[100]  # a burst that fills every buffer's batches
    return np.sort(np.round(arrivals, 3)), rng.integers(1, 257, count)


def _both(plan: Plan, arrivals: np.ndarray, lengths: np.ndarray, rules: LambdaRules,
          monkeypatch: pytest.MonkeyPatch) -> tuple[SimResult, SimResult]:
    bulk = simulate(plan, arrivals, lengths, service, PRICING, 300.0, rules=rules)
    with monkeypatch.context() as patch:
        patch.setattr(buffered, "bulk_eligible", lambda inputs: False)
        loop = simulate(plan, arrivals, lengths, service, PRICING, 300.0, rules=rules)
    return bulk, loop


PLANS = {
    "four-buffers": [(32, 8, 50, 2), (64, 4, 0, 3), (128, 16, 250, 2), (256, 1, 0, 2)],
    "one-busy-buffer": [(256, 32, 50, 2)],
    "no-batching": [(256, 1, 0, 1000)],
    "zero-timeouts": [(100, 4, 0, 2), (256, 64, 0, 5)],
}


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("seed", [0, 1])
def test_the_replay_matches_the_event_loop_exactly(name: str, seed: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    arrivals, lengths = _trace(seed, 3_000)
    rules = LambdaRules(keep_alive_s=0.5, cold_start_ms=120.0)  # environments age out often
    bulk, loop = _both(_plan(PLANS[name]), arrivals, lengths, rules, monkeypatch)
    for field, column in bulk.batches.__dict__.items():
        np.testing.assert_array_equal(column, getattr(loop.batches, field), err_msg=field)
        assert column.dtype == getattr(loop.batches, field).dtype, field
    np.testing.assert_array_equal(bulk.latency_ms, loop.latency_ms)
    np.testing.assert_array_equal(bulk.batch_of_request, loop.batch_of_request)
    assert bulk.metrics.to_dict() == loop.metrics.to_dict()
    # THEN the runs compared exercise cold starts and batches that waited for an instance
    log = loop.batches
    last_arrival = np.zeros(len(log))
    np.maximum.at(last_arrival, loop.batch_of_request, arrivals)
    timeout_s = np.array([s.timeout_s for s in _plan(PLANS[name]).buffers])[log.buffer]
    waited = np.any(log.start_s > last_arrival + timeout_s + 1e-9)
    assert log.cold.any() and (waited or name == "no-batching")
    max_batch = np.array([s.max_batch_size for s in _plan(PLANS[name]).buffers])[log.buffer]
    assert np.any((log.size == max_batch) & (max_batch > 1) | (max_batch.max() == 1))


@pytest.mark.parametrize("caps", [(64, 64), (2, 3)])  # the fleet bounds, or the buffers' caps
def test_a_gpu_fleet_replays_batch_by_batch_as_the_event_loop(
        caps: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a gpu plan on a fleet that must scale out: bursts of a long trace
    rng = np.random.default_rng(3)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 1800, 6_000),
                                       rng.uniform(600, 900, 24_000)]).round(3))
    lengths = rng.integers(1, 257, arrivals.size)
    plan = Plan(buffers=(BufferSpec("short", 1, 96, 16, 50, 1024, max_concurrency=caps[0]),
                         BufferSpec("long", 97, 256, 8, 100, 1024, max_concurrency=caps[1])),
                backend="gpu", instance_type="g6.xlarge", min_instances=3, max_instances=12)

    def gpu_service(b: int, length: int, memory_mb: int) -> float:
        return max(4.0, 0.5 * b * length)

    # WHEN it is replayed batch by batch and by the event loop
    bulk = simulate(plan, arrivals, lengths, gpu_service, PRICING, 300.0)
    with monkeypatch.context() as patch:
        patch.setattr(buffered, "bulk_eligible", lambda inputs: False)
        loop = simulate(plan, arrivals, lengths, gpu_service, PRICING, 300.0)
    # THEN every batch, latency, lifetime and figure is the same
    for field, column in bulk.batches.__dict__.items():
        np.testing.assert_array_equal(column, getattr(loop.batches, field), err_msg=field)
    np.testing.assert_array_equal(bulk.latency_ms, loop.latency_ms)
    np.testing.assert_array_equal(bulk.instance_lifetimes_s, loop.instance_lifetimes_s)
    assert bulk.metrics.to_dict() == loop.metrics.to_dict()
    # and the run compared scaled out past the floor
    assert len(loop.instance_lifetimes_s) > plan.min_instances


def test_only_runs_whose_batches_ignore_the_instances_replay() -> None:
    plan = _plan(PLANS["four-buffers"])
    arrivals, lengths = _trace(0, 200)
    launcher = Launcher(plan, service, PRICING, LambdaRules())
    args = (plan, arrivals.tolist(), lengths.tolist(), [0] * 200, launcher, service)
    assert isinstance(make_policy(PolicyInputs("size_timeout", *args)), BulkSizeTimeout)
    for name, options in (("size_timeout", PolicyOptions(hold_when_busy=True)),
                          ("deadline", PolicyOptions()), ("vtc", PolicyOptions())):
        policy = make_policy(PolicyInputs(name, *args, options=options))
        assert not isinstance(policy, BulkSizeTimeout), name


def test_a_launcher_that_overrides_launch_alone_is_stepped_by_the_loop() -> None:
    class OtherPlatform(Launcher):
        def launch(self, buffer: int, members: Sequence[int], padded_length: int | float,
                   now_s: float, service_length: int | None = None) -> float:
            return super().launch(buffer, members, padded_length, now_s, service_length)

    plan = _plan(PLANS["one-busy-buffer"])
    arrivals, lengths = _trace(0, 200)
    args = (plan, arrivals.tolist(), lengths.tolist(), [0] * 200)
    other = OtherPlatform(plan, service, PRICING, LambdaRules())
    assert not isinstance(make_policy(PolicyInputs("size_timeout", *args, other, service)),
                          BulkSizeTimeout)
