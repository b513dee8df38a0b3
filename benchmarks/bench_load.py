"""Bounded load test of the local stack on loopback: the real model, then 10x with a stand-in.

Phase 1 steps up a constant arrival rate with the real model (--step-s per step) while a step's
p99 stays within the 1 s SLO with nothing lost, then holds the highest such rate for --hold-s
seconds. A short step can hide a slowly growing queue, so the hold must pass too: p99 under
2 s and every request finished; if it fails, the next lower step rate is held instead.
Phase 2 sends 10x that rate for --standin-s seconds with MBS_STANDIN_MODEL=1 (zero-cost
vectors, labelled "stand-in") from 256 client threads, to load the gateway, queues, table and
dispatcher rather than the model. On this machine the ceiling there is moto's server (one
process, one core), so this phase finds the local stack's limit, not AWS's.
Phase 3 (stand-in) fires --burst requests at once from 256 client threads, past the gateway's
in-flight limit, to show the backpressure: 429 with Retry-After, and every 202 still completes.

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
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from buffers.plan_files import default_plan_path, load_plan  # noqa: E402
from infra.client.audit import audit_stack  # noqa: E402
from infra.client.replay import replay  # noqa: E402
from infra.local.stack import LocalStack  # noqa: E402
from optimizer.workload.texts import pang_lee_corpus, sample_texts  # noqa: E402
from optimizer.workload.workloads import Workload, WorkloadSpec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
STEP_P99_LIMIT_MS = 1000.0  # the default SLO
HOLD_P99_LIMIT_MS = 2000.0


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


def _audit(stack: LocalStack) -> dict:
    """`mbs audit` on the stack's table and queues: a replay's "lost" may be still in flight."""
    import boto3

    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    res = stack.resources
    return audit_stack(ddb, sqs, res.table_name, list(res.queue_urls.values()),
                       list(res.dlq_urls.values()), since_ms=0,
                       now_ms=int(time.time() * 1000), grace_ms=0).to_dict()


def _run(stack: LocalStack, rate: float, duration_s: float, seed: int,
         workers: int = 64) -> dict:
    before = _rss_mb()
    report = replay(stack.url, _constant(rate, duration_s, seed), speedup=1.0,
                    collect_timeout_s=120.0, workers=workers, progress=False)
    req, audit = report["requests"], _audit(stack)
    return {"rate_per_s": rate, "duration_s": duration_s, "sent": req["sent"],
            "accepted": req["accepted"], "completed": req["done"], "failed": req["failed"],
            # accepted but not finished when the client stopped waiting (120 s after the last
            # send); the audit then says whether each is still in flight or truly lost
            "unfinished_at_cap": req["lost"], "lost": audit["unaccounted"], "audit": audit,
            "rejected_by_status": req["rejected_by_status"],
            "p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
            "throughput_rps": report["throughput_rps"], "wall_s": report["wall_s"],
            "rss_before_mb": before, "rss_after_mb": _rss_mb()}


def _sustained(run: dict, p99_limit_ms: float) -> bool:
    return (not run["lost"] and not run["unfinished_at_cap"] and run["p99_ms"] is not None
            and run["p99_ms"] <= p99_limit_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="4,8,10,12,14,16", help="phase-1 rate steps, req/s")
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds per phase-1 step")
    parser.add_argument("--hold-s", type=float, default=120.0,
                        help="seconds to hold the sustained rate with the real model")
    parser.add_argument("--standin-s", type=float, default=30.0,
                        help="seconds of 10x that rate with the stand-in model")
    parser.add_argument("--burst", type=int, default=2000,
                        help="requests fired at once in phase 3")
    args = parser.parse_args()
    plan = load_plan(default_plan_path())
    out: dict = {"kind": "measured", "machine": f"{os.cpu_count()} CPU, loopback only",
                 "plan": plan.name, "steps": []}

    with LocalStack(plan) as stack:
        passed: list[float] = []
        for rate in [float(r) for r in args.rates.split(",")]:
            step = _run(stack, rate, args.step_s, seed=int(rate))
            out["steps"].append(step)
            print(f"step {rate:g}/s: p99 {step['p99_ms']} ms, lost {step['lost']}", flush=True)
            if not _sustained(step, STEP_P99_LIMIT_MS):
                break
            passed.append(rate)
        out["holds"] = []
        for rate in reversed(passed):
            hold = _run(stack, rate, args.hold_s, seed=1)
            out["holds"].append(hold)
            print(f"hold {rate:g}/s: {json.dumps(hold)}", flush=True)
            if _sustained(hold, HOLD_P99_LIMIT_MS):
                out["sustained_rate_per_s"], out["real_model"] = rate, hold
                break
        if "real_model" not in out:
            print("no rate sustained; stopping", file=sys.stderr)
            return 1
        best = out["sustained_rate_per_s"]

    os.environ["MBS_STANDIN_MODEL"] = "1"
    from functions.shared.model import get_embedder

    get_embedder.cache_clear()
    try:
        with LocalStack(plan) as stack:
            out["standin_10x"] = _run(stack, 10 * best, args.standin_s, seed=2, workers=256)
            out["standin_burst"] = _run(stack, 1e6, args.burst / 1e6, seed=3, workers=256)
    finally:
        os.environ.pop("MBS_STANDIN_MODEL")
        get_embedder.cache_clear()
    out["standin_10x"]["model"] = "stand-in (zero-cost vectors, not embeddings)"
    out["standin_burst"]["model"] = out["standin_10x"]["model"]
    print("10x stand-in:", json.dumps(out["standin_10x"]), flush=True)
    print("burst stand-in:", json.dumps(out["standin_burst"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    lost = sum(out[k]["lost"] for k in ("real_model", "standin_10x", "standin_burst"))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
