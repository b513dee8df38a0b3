"""Minute samples of a dense trace: how they are drawn, and that their figures land within the
stated error bars of the whole trace's, in the simulator and in the estimator."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from optimizer.compare.workbench import Workbench
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.estimator.fleet import estimate_gpu, fleet_context
from optimizer.platform.backends import make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.engine import simulate
from optimizer.workload.sampling import MINUTE_S, sample_minutes, sampled
from optimizer.workload.workloads import WorkloadSpec, load_arrivals

FIGURES = ("end_to_end_cost_per_million_usd", "infer_cost_per_million_usd", "p50_ms",
           "p99_ms", "padding_overhead")
# The stated error bar of a 6-minute sample mean (3 replicates) of a stable plan: 3 standard
# deviations of one replicate plus 3% for the seams (sampling.py's module docstring).
SDS, BIAS = 3.0, 0.03
WARM = replace(LambdaRules(), cold_start_ms=0.0)  # sampled runs start warm (sampling.py)


def test_one_minute_is_drawn_from_each_stratum_and_glued_in_order() -> None:
    rng = np.random.default_rng(0)
    arrivals = np.sort(rng.uniform(0.0, 600.0, 5_000))  # ten minutes
    lengths = np.arange(arrivals.size)
    sample = sample_minutes(arrivals, lengths, 5, np.random.default_rng(1))
    assert sample.fraction == 0.5
    assert [m // 2 for m in sample.minutes.tolist()] == [0, 1, 2, 3, 4]  # one per stratum
    assert np.all(np.diff(sample.arrivals_s) >= 0) and sample.arrivals_s[-1] < 5 * MINUTE_S
    # each drawn minute keeps its arrivals' offsets, and lengths travel with their arrivals
    slot = (sample.arrivals_s // MINUTE_S).astype(int)
    np.testing.assert_allclose(sample.arrivals_s - slot * MINUTE_S,
                               arrivals[sample.picks] - sample.minutes[slot] * MINUTE_S)
    assert sample.lengths.tolist() == sample.picks.tolist()
    inside = (arrivals // MINUTE_S).astype(int)
    assert sample.picks.tolist() == np.flatnonzero(np.isin(inside, sample.minutes)).tolist()
    again = sample_minutes(arrivals, lengths, 5, np.random.default_rng(1))
    assert again.picks.tolist() == sample.picks.tolist()
    with pytest.raises(ValueError, match="minutes must be in 1..10"):
        sample_minutes(arrivals, lengths, 11, rng)
    with pytest.raises(ValueError, match="replicates must be >= 2"):
        sampled(lambda a, b: {}, arrivals, lengths, 5, 1)


def test_pieces_shorter_than_a_minute_are_drawn_and_glued_the_same_way() -> None:
    arrivals = np.sort(np.random.default_rng(0).uniform(0.0, 60.0, 3_000))  # twelve 5 s pieces
    sample = sample_minutes(arrivals, np.arange(arrivals.size), 3, np.random.default_rng(2),
                            piece_s=5.0)
    assert sample.fraction == 0.25 and sample.arrivals_s[-1] < 15.0
    assert [m // 4 for m in sample.minutes.tolist()] == [0, 1, 2]
    slot = (sample.arrivals_s // 5.0).astype(int)
    np.testing.assert_allclose(sample.arrivals_s - slot * 5.0,
                               arrivals[sample.picks] - sample.minutes[slot] * 5.0)
    with pytest.raises(ValueError, match="5 s pieces"):
        sample_minutes(arrivals, arrivals, 13, np.random.default_rng(2), piece_s=5.0)
    with pytest.raises(ValueError, match="piece_s must be > 0"):
        sample_minutes(arrivals, arrivals, 1, np.random.default_rng(2), piece_s=0.0)


@cache
def _dense() -> tuple[np.ndarray, np.ndarray]:
    """The azure-code hour superposed 30x (265k requests), lengths drawn as short texts."""
    trace = load_arrivals(WorkloadSpec(rate_scale=30.0, rate_mode="superpose"))
    lengths = np.minimum(np.random.default_rng(0).lognormal(3.2, 0.8, trace.count), 256)
    return trace.arrivals_s, np.maximum(lengths, 1).astype(np.int64)


@pytest.mark.parametrize("kind,plan_name,judge", [("gpu", "gpu", "simulate"),
                                                  ("lambda", "default", "simulate"),
                                                  ("gpu", "gpu", "estimate")])
def test_a_sample_lands_within_its_error_bars(kind: str, plan_name: str, judge: str) -> None:
    arrivals, lengths = _dense()
    backend = make_backend(kind, None, Pricing())
    plan = backend.pin(load_plan(default_plan_path(plan_name)))

    def figures(a: np.ndarray, n: np.ndarray, rules: LambdaRules) -> dict[str, float]:
        if judge == "simulate":
            metrics = simulate(plan, a, n, backend.service_ms, backend.pricing, 1000.0,
                               rules=rules).metrics
        elif kind == "gpu":  # a fleet: the fleet estimator (LMI instances serve warm)
            metrics = estimate_gpu(plan, fleet_context(a, n, backend.service_ms,
                                                       backend.pricing, 1000.0, rules))
        else:
            metrics = estimate(plan, EstimatorContext.build(a, n, backend.service_ms,
                                                            backend.pricing, 1000.0, rules))
        return {name: getattr(metrics, name) for name in FIGURES}

    full = figures(arrivals, lengths, LambdaRules())
    sample = sampled(lambda a, n: figures(a, n, WARM), arrivals, lengths, 6, 3)
    for name in FIGURES:
        bar = SDS * sample[name].sd + BIAS * abs(full[name])
        assert abs(sample[name].mean - full[name]) <= bar, (name, sample[name], full[name])


def test_a_workbench_judges_a_warm_minute_sample() -> None:
    arrivals, lengths = _dense()
    bench = Workbench(arrivals, lengths, make_backend("gpu", None, Pricing()), 1000.0)
    small = bench.minute_sample(6, seed=2)
    assert small.arrivals_s.size < arrivals.size / 5 and small.lengths.size == small.arrivals_s.size
    assert small.rules.cold_start_ms == 0.0 and bench.rules.cold_start_ms > 0.0
    assert (small.backend, small.slo_ms, small.percentile) == (bench.backend, 1000.0, 99.0)
    again = bench.minute_sample(6, seed=2)
    np.testing.assert_array_equal(again.arrivals_s, small.arrivals_s)
