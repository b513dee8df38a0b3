"""Bounded load test of the local stack on loopback: the real model, then 10x with a stand-in.

Phase 1 steps up a constant arrival rate with the real model (15 s per step) and keeps the
highest rate whose p99 stays under 2 s with nothing lost, then holds it for --hold-s seconds.
Phase 2 sends 10x that rate with MBS_STANDIN_MODEL=1 (zero-cost vectors, labelled "stand-in")
to load the gateway, queues, table and dispatcher rather than the model.

Every request count is fixed and every phase has a time cap; traffic goes to 127.0.0.1 only.
Figures are written to benchmarks/results/load.json.

    .venv/bin/python benchmarks/bench_load.py [--hold-s 120] [--rates 4,8,12,16,24]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from buffers.plan import default_plan_path, load_plan  # noqa: E402
from infra.local_stack import LocalStack  # noqa: E402
from infra.replay import replay  # noqa: E402
from optimizer.texts import pang_lee_corpus, sample_texts  # noqa: E402
from optimizer.workloads import Workload, WorkloadSpec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
P99_LIMIT_MS = 2000.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _constant(rate_per_s: float, duration_s: float, seed: int) -> Workload:
    n = max(1, int(rate_per_s * duration_s))
    arrivals = np.arange(n, dtype=float) / rate_per_s
    texts = sample_texts(n, np.random.default_rng(seed), pang_lee_corpus())
    spec = WorkloadSpec(preset=None, duration_s=duration_s, seed=seed)
    return Workload(arrivals_s=arrivals, texts=tuple(texts), spec=spec)


def _run(stack: LocalStack, rate: float, duration_s: float, seed: int) -> dict:
    before = _rss_mb()
    report = replay(stack.url, _constant(rate, duration_s, seed), speedup=1.0,
                    collect_timeout_s=120.0, workers=64, progress=False)
    req = report["requests"]
    return {"rate_per_s": rate, "duration_s": duration_s, "sent": req["sent"],
            "accepted": req["accepted"], "completed": req["done"], "failed": req["failed"],
            "lost": req["lost"], "rejected_by_status": req["rejected_by_status"],
            "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
            "throughput_rps": report["throughput_rps"], "wall_s": report["wall_s"],
            "rss_before_mb": before, "rss_after_mb": _rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="4,8,12,16,24", help="phase-1 rate steps, req/s")
    parser.add_argument("--step-s", type=float, default=15.0)
    parser.add_argument("--hold-s", type=float, default=120.0)
    args = parser.parse_args()
    plan = load_plan(default_plan_path())
    out: dict = {"kind": "measured", "machine": f"{os.cpu_count()} CPU, loopback only",
                 "plan": plan.name, "steps": []}

    with LocalStack(plan) as stack:
        best = None
        for rate in [float(r) for r in args.rates.split(",")]:
            step = _run(stack, rate, args.step_s, seed=int(rate))
            out["steps"].append(step)
            print(f"step {rate:g}/s: p99 {step['p99_ms']} ms, lost {step['lost']}", flush=True)
            if step["lost"] or step["p99_ms"] is None or step["p99_ms"] > P99_LIMIT_MS:
                break
            best = rate
        if best is None:
            print("no rate sustained; stopping", file=sys.stderr)
            return 1
        out["sustained_rate_per_s"] = best
        out["real_model"] = _run(stack, best, args.hold_s, seed=1)
        print("real model:", json.dumps(out["real_model"]), flush=True)

    os.environ["MBS_STANDIN_MODEL"] = "1"
    from functions.shared.model import get_embedder

    get_embedder.cache_clear()
    try:
        with LocalStack(plan) as stack:
            out["standin_10x"] = _run(stack, 10 * best, args.hold_s, seed=2)
    finally:
        os.environ.pop("MBS_STANDIN_MODEL")
        get_embedder.cache_clear()
    out["standin_10x"]["model"] = "stand-in (zero-cost vectors, not embeddings)"
    print("10x stand-in:", json.dumps(out["standin_10x"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    lost = out["real_model"]["lost"] + out["standin_10x"]["lost"]
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
