"""compare's adapter to the real Bayesian search (optimizer/search/optimize.py), on a tiny budget.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from optimizer.compare.tuning import DEFAULT_EVALS, search_settings, search_tuner, space_for
from optimizer.compare.workbench import Workbench
from optimizer.platform.backends import GPU_MEMORY_MB, backend_from_model, make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import LatencyModel
from optimizer.platform.pricing import Pricing
from optimizer.search.space import LAMBDA_MEMORIES_MB
from optimizer.workload.lengths import token_lengths
from optimizer.workload.workloads import WorkloadSpec, build_workload

NO_COLD = LambdaRules(cold_start_ms=0.0)


@cache
def _slice() -> tuple[np.ndarray, np.ndarray]:
    workload = build_workload(WorkloadSpec(start_s=600.0, duration_s=120.0))
    return workload.arrivals_s, token_lengths(workload)


def _bench(slo_ms: float) -> Workbench:
    arrivals, lengths = _slice()
    return Workbench(arrivals, lengths, make_backend("lambda", None, Pricing()), slo_ms,
                     rules=NO_COLD)


def test_the_real_search_returns_a_plan_within_its_buffers() -> None:
    tuned = search_tuner(seed=0, progress=False)(_bench(1000.0), 2, 8)
    assert 1 <= len(tuned.plan.buffers) <= 2
    assert tuned.evaluations <= 8 and tuned.wall_s > 0
    assert tuned.feasible and "meets p99 <= 1000 ms" in tuned.message


def test_no_feasible_plan_still_reports_the_closest_one() -> None:
    tuned = search_tuner(seed=0, progress=False)(_bench(5.0), 1, 6)
    assert not tuned.feasible and "no plan met" in tuned.message
    assert len(tuned.plan.buffers) == 1


def test_settings_follow_the_search_space() -> None:
    backend = make_backend("lambda", None, Pricing())
    settings = search_settings(backend, 4, None)
    assert settings.memory_choices_mb == LAMBDA_MEMORIES_MB
    assert settings.oracle_max_batch == 64 and settings.evals == DEFAULT_EVALS


def test_the_gpu_space_has_one_memory_size() -> None:
    # SYNTHETIC GPU latency model (a test fixture, not a measurement)
    model = LatencyModel("cuda:synthetic-test-fixture", 1, 4.0, 0.05, 0.004, 0.0)
    backend = backend_from_model("gpu", model, Pricing(), "synthetic")
    assert space_for(backend, "dispatcher", 4, "x86", 1000.0).memories_mb == (GPU_MEMORY_MB,)
    assert search_settings(backend, 4, 10).memory_choices_mb == (GPU_MEMORY_MB,)


def test_mbs_and_batch_search_the_same_concurrencies() -> None:
    backend = make_backend("lambda", None, Pricing())
    one = space_for(backend, "dispatcher", 1, "x86", 1000.0)
    four = space_for(backend, "dispatcher", 4, "x86", 1000.0)
    assert one.concurrencies == four.concurrencies == (2, 4, 8, 16)
    assert (one.memories_mb, one.batch_sizes, one.timeouts_ms) == (
        four.memories_mb, four.batch_sizes, four.timeouts_ms)
