"""Benchmark (not a test): wall time of simulate() on 1M requests.

Arrivals: the Azure code trace tiled end to end, then rate-scaled; lengths: drawn (seeded) from
the token lengths of the real texts the workload samples for that trace. Writes the median of
three runs per plan to benchmarks/results/simulator.json and prints it.

    .venv/bin/python benchmarks/bench_simulator.py [--requests 1000000] [--rate-scale 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from buffers.plan_files import default_plan_path, load_plan
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import no_batching_plan, triton_plan
from optimizer.sim.engine import simulate
from optimizer.workload.lengths import token_lengths
from optimizer.workload.workloads import WorkloadSpec, build_workload

ROOT = Path(__file__).resolve().parents[1]

RUNS = 3
GAP_S = 1.0  # between the end of one tile of the trace and the start of the next


def _service_model():
    """The shipped CPU latency model if there is one, else a linear fit to the reference grid."""
    try:
        from optimizer.platform.latency_model import load_profile

        _, model = load_profile()
        return model, "optimizer.platform.latency_model (shipped cpu profile)"
    except (ImportError, FileNotFoundError, KeyError, ValueError):
        # shared/reference/minilm_cpu2_ms.json: 64x256 in ~3.2 s on 2 cores, ~0.2 ms per token
        return (lambda b, n, m: 8.0 + 0.2 * b * n * max(1.0, 3538 / m)), "linear fallback"


def _workload(requests: int, rate_scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    workload = build_workload(WorkloadSpec(seed=seed))
    base = workload.arrivals_s
    tiles = -(-requests // base.size)
    period_s = float(base[-1]) + GAP_S
    arrivals = (base[None, :] + period_s * np.arange(tiles)[:, None]).ravel()[:requests]
    lengths = np.random.default_rng(seed).choice(token_lengths(workload), size=requests)
    return arrivals / rate_scale, lengths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate-scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "simulator.json"))
    args = parser.parse_args(argv)
    arrivals, lengths = _workload(args.requests, args.rate_scale, args.seed)
    service, service_name = _service_model()
    plans = [load_plan(default_plan_path("default")), load_plan(default_plan_path("batch")),
             no_batching_plan(3008), triton_plan(16, 50, 3008, 16)]
    results = {}
    for plan in plans:
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            result = simulate(plan, arrivals, lengths, service, Pricing(), slo_ms=1000.0)
            times.append(time.perf_counter() - start)
        results[plan.name] = {"median_s": float(np.median(times)), "runs_s": times,
                              "invocations": int(result.metrics.invocations),
                              "mean_batch_size": result.metrics.mean_batch_size,
                              "cost_per_million_usd": result.metrics.cost_per_million_usd,
                              "p99_ms": result.metrics.p99_ms}
    report = {
        "benchmark": "simulate() wall time",
        "requests": args.requests,
        "arrivals": f"azure-code tiled x{-(-args.requests // 8819)}, rate x{args.rate_scale:g}",
        "trace_span_s": float(arrivals[-1]),
        "service_model": service_name,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "runs": RUNS,
        "plans": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
