"""Benchmark (not a test): how simulate() and estimate() scale with the request count.

Arrivals: the azure-code hour superposed 1x/10x/100x/1000x (`--rate-mode superpose`, seeded: the
rate grows, the hour stays; 1000x is 8.8M requests); lengths: drawn (seeded) from the token
lengths of the texts the 1x workload samples. Plan: a typical 3-buffer GPU plan. Per scale:
- simulate(): the batch-by-batch replay (optimizer/sim/bulk.py) and, up to 100x, the event
  loop it replaces (the "before"), with a check that both give identical runs;
- estimate(): one evaluation on a built context (the context is built once per workload);
- at 100x and 1000x, both on whole-minute samples (optimizer/workload/sampling.py, run warm),
  with the sample's deviation from the whole trace's figures;
- the Triton-style and ragged baselines (still the event loop: their batches depend on the
  instances), on the whole trace up to 100x and on one minute at 1000x.
The machine is shared (2 cores, other jobs running): quote ratios, not absolute seconds.
Writes benchmarks/results/scale.json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py [--skip-full-1000-estimate]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from buffers.plan import BufferSpec, Plan
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.platform.backends import make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim import buffered
from optimizer.sim.baselines import triton_plan
from optimizer.sim.bulk import bulk_eligible
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.ragged import ragged_plan
from optimizer.workload.lengths import token_lengths
from optimizer.workload.sampling import sample_minutes, sampled
from optimizer.workload.workloads import WorkloadSpec, build_workload, load_arrivals

ROOT = Path(__file__).resolve().parents[1]
SCALES = (1.0, 10.0, 100.0, 1000.0)
LOOP_UP_TO = 100.0  # the event loop is timed up to this scale, extrapolated beyond
SLO_MS = 1000.0
FIGURES = ("end_to_end_cost_per_million_usd", "p50_ms", "p99_ms", "padding_overhead")
SAMPLE_MINUTES = (1, 6)
WARM = replace(LambdaRules(), cold_start_ms=0.0)  # sampled runs start warm (sampling.py)


def three_buffers() -> Plan:
    """A typical GPU plan: short, medium and long requests, 50 ms timeouts, 6 instances each."""
    bounds = ((1, 32, 256), (33, 96, 128), (97, 256, 32))
    return Plan(buffers=tuple(
        BufferSpec(name, low, high, batch, 50, 1024, max_concurrency=6)
        for name, (low, high, batch) in zip(("short", "medium", "long"), bounds, strict=True)),
        name="three-buffers", backend="gpu", instance_type="g6.xlarge", max_instances=6)


def _timed(run: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times, out


def _loop(plan: Plan, arrivals: np.ndarray, lengths: np.ndarray, backend: Any) -> SimResult:
    """The event loop, as simulate() ran every plan before the batch-by-batch replay."""
    buffered.bulk_eligible = lambda inputs: False
    try:
        return simulate(plan, arrivals, lengths, backend.service_ms, backend.pricing, SLO_MS)
    finally:
        buffered.bulk_eligible = bulk_eligible


def _same(a: SimResult, b: SimResult) -> bool:
    return (all(np.array_equal(v, getattr(b.batches, k)) for k, v in a.batches.__dict__.items())
            and np.array_equal(a.latency_ms, b.latency_ms)
            and a.metrics.to_dict() == b.metrics.to_dict())


def _baselines(backend: Any, arrivals: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """Seconds per simulate() of a Triton-style and a ragged plan (run warm, as a sample is)."""
    out: dict[str, Any] = {"requests": int(arrivals.size)}
    for name, plan in (("triton_s", triton_plan(64, 20, 1024, 8)),
                       ("ragged_s", ragged_plan(16_384, 0, 1024, 8))):
        pinned = backend.pin(plan)
        start = time.perf_counter()
        simulate(pinned, arrivals, lengths, backend.service_ms, backend.pricing, SLO_MS,
                 rules=WARM)
        out[name] = time.perf_counter() - start
    return out


def _one_minute(arrivals: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sample = sample_minutes(arrivals, lengths, 1, np.random.default_rng(0))
    return sample.arrivals_s, sample.lengths


def _figures(metrics: Any) -> dict[str, float]:
    return {name: float(getattr(metrics, name)) for name in FIGURES}


def _samples(plan: Plan, arrivals: np.ndarray, lengths: np.ndarray, backend: Any,
             sim_full: dict[str, float], est_full: dict[str, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for minutes in SAMPLE_MINUTES:
        sample = sample_minutes(arrivals, lengths, minutes, np.random.default_rng(0))

        def sim(a: np.ndarray, n: np.ndarray) -> dict[str, float]:
            return _figures(simulate(plan, a, n, backend.service_ms, backend.pricing, SLO_MS,
                                     rules=WARM).metrics)

        def est(a: np.ndarray, n: np.ndarray) -> dict[str, float]:
            ctx = EstimatorContext.build(a, n, backend.service_ms, backend.pricing, SLO_MS, WARM)
            return _figures(estimate(plan, ctx))

        ctx = EstimatorContext.build(sample.arrivals_s, sample.lengths, backend.service_ms,
                                     backend.pricing, SLO_MS, WARM)
        entry: dict[str, Any] = {
            "requests": int(sample.arrivals_s.size), "fraction": sample.fraction,
            "simulate_s": _timed(lambda s=sample: sim(s.arrivals_s, s.lengths), 1)[0],
            "estimate_s": _timed(lambda c=ctx: estimate(plan, c), 1)[0]}
        for name, judge, full in (("simulate", sim, sim_full), ("estimate", est, est_full)):
            replicates = sampled(judge, arrivals, lengths, minutes, 3)
            entry[f"{name}_3_replicates"] = {
                figure: {**value.to_dict(), "whole_trace": None if full is None else full[figure],
                         "deviation": None if full is None else value.mean - full[figure]}
                for figure, value in replicates.items()}
        out[f"{minutes}_minutes"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full-1000-estimate", action="store_true",
                        help="extrapolate the whole-trace 1000x estimate instead of running it")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    backend = make_backend("gpu", None, Pricing())
    plan = backend.pin(three_buffers())
    pool = token_lengths(build_workload(WorkloadSpec(seed=0)))
    scales: dict[str, Any] = {}
    for scale in SCALES:
        trace = load_arrivals(WorkloadSpec(seed=0, rate_scale=scale, rate_mode="superpose"))
        arrivals = trace.arrivals_s
        lengths = np.random.default_rng(0).choice(pool, size=arrivals.size)
        runs = 3 if scale < 1000 else 1
        bulk_s, bulk_runs, result = _timed(lambda a=arrivals, n=lengths: simulate(
            plan, a, n, backend.service_ms, backend.pricing, SLO_MS), runs)
        entry: dict[str, Any] = {"requests": int(arrivals.size), "runs": runs,
                                 "simulate_s": bulk_s, "simulate_runs_s": bulk_runs,
                                 "simulate_requests_per_s": arrivals.size / bulk_s,
                                 "invocations": int(result.metrics.invocations)}
        if scale <= LOOP_UP_TO:
            loop_s, loop_runs, before = _timed(
                lambda a=arrivals, n=lengths: _loop(plan, a, n, backend), runs)
            entry.update(loop_simulate_s=loop_s, loop_simulate_runs_s=loop_runs,
                         loop_simulate_requests_per_s=arrivals.size / loop_s,
                         simulate_speedup=loop_s / bulk_s, identical=_same(result, before))
        full_estimate = scale < 1000 or not args.skip_full_1000_estimate
        if full_estimate:
            start = time.perf_counter()
            ctx = EstimatorContext.build(arrivals, lengths, backend.service_ms,
                                         backend.pricing, SLO_MS)
            build_s = time.perf_counter() - start
            est_s, est_runs, metrics = _timed(lambda c=ctx: estimate(plan, c), runs)
            entry.update(context_build_s=build_s, estimate_s=est_s, estimate_runs_s=est_runs,
                         estimate_requests_per_s=arrivals.size / est_s,
                         estimate=_figures(metrics))
        entry["simulate"] = _figures(result.metrics)
        small = (arrivals, lengths) if scale <= LOOP_UP_TO else _one_minute(arrivals, lengths)
        entry["baselines_event_loop"] = _baselines(backend, *small)
        if scale >= 100:
            entry["samples"] = _samples(plan, arrivals, lengths, backend, entry["simulate"],
                                        entry.get("estimate"))
        scales[f"{scale:g}x"] = entry
        print(f"{scale:g}x: {json.dumps({k: v for k, v in entry.items() if k != 'samples'})}",
              flush=True)
    base = scales[f"{LOOP_UP_TO:g}x"]
    for top in (v for k, v in scales.items() if "loop_simulate_s" not in v):
        grow = top["requests"] / base["requests"]  # both linear in requests at a fixed plan
        top["loop_simulate_s_extrapolated"] = base["loop_simulate_s"] * grow
        if "estimate_s" not in top:
            top["estimate_s_extrapolated"] = base["estimate_s"] * grow
    report = {
        "benchmark": "simulate() and estimate() against the request count (superposed rates)",
        "plan": plan.to_dict(), "backend": "gpu (shipped profile)", "slo_ms": SLO_MS,
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "note": "shared machine (2 cores, other jobs running): quote ratios"},
        "scales": scales,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
