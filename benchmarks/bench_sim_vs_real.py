"""The simulator against a real run: the same trace slice served locally (measured) and
replayed by the simulator with this machine's measured service times (modelled).

Measured side: `mbs serve`'s service in-process (infra/local/serving.py), `mbs replay`'s client
through the online path (POST /v1/embeddings, the default; --path bulk for the async one), the
real model on this CPU. Simulated side: optimizer.sim.engine with the CPU profile's predict_ms
(this machine, not Lambda), no cold starts (the local service loads the model before serving),
and its one-forward-pass-at-a-time rule approximated by max_concurrency 2 per buffer (the
minimum a plan allows; the lock makes the whole process run one batch at a time, so the
simulator is optimistic under load). Writes benchmarks/results/sim_vs_real.json.

    .venv/bin/python benchmarks/bench_sim_vs_real.py [--start 600] [--duration 90] [--path P]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from buffers.plan_files import default_plan_path, load_plan, plan_from_dict  # noqa: E402
from infra.client.replay import replay  # noqa: E402
from infra.local.serving import LocalService  # noqa: E402
from optimizer.platform.lambda_rules import LambdaRules  # noqa: E402
from optimizer.platform.latency_model import load_profile  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.sim.engine import simulate  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.workloads import WorkloadSpec, build_workload  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "sim_vs_real.json"


def _simulated(plan, workload, model) -> dict:
    raw = plan.to_dict()
    for buffer in raw["buffers"]:
        buffer["max_concurrency"] = 2
    local = plan_from_dict(raw)
    result = simulate(local, np.asarray(workload.arrivals_s), token_lengths(workload),
                      lambda b, n, m: model.predict_ms(b, n), Pricing(), 1000.0,
                      rules=LambdaRules(cold_start_ms=0.0, keep_alive_s=1e9))
    log = result.batches
    per_buffer = {}
    for i, name in enumerate(result.buffer_names):
        mine = log.buffer == i
        per_buffer[name] = {"batches": int(mine.sum()),
                            "mean_batch_size": float(log.size[mine].mean()) if mine.any() else 0,
                            "mean_batch_ms": float(log.service_ms[mine].mean()) if mine.any()
                            else 0}
    p50, p99 = np.percentile(result.latency_ms, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "batches": len(log),
            "padding_overhead": result.metrics.padding_overhead, "buffers": per_buffer}


def _measured(report: dict) -> dict:
    return {"p50_ms": report["latency_ms"]["p50"], "p99_ms": report["latency_ms"]["p99"],
            "batches": report["totals"]["batches"], "lost": report["requests"]["lost"],
            "padding_overhead": report["padding_overhead"],
            "buffers": {name: {"batches": b["batches"], "mean_batch_size": b["mean_batch_size"],
                               "mean_batch_ms": b["mean_inference_ms"]}
                        for name, b in report["buffers"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=float, default=600.0)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--path", choices=["online", "bulk"], default="online")
    args = parser.parse_args()
    spec = WorkloadSpec(preset="azure-code", start_s=args.start, duration_s=args.duration)
    workload = build_workload(spec)
    plan = load_plan(default_plan_path())
    _, model = load_profile()
    with LocalService(plan) as service:
        measured = _measured(replay(service.url, workload, progress=False, path=args.path))
    simulated = _simulated(plan, workload, model)
    out = {"workload": spec.describe(), "plan": plan.name, "requests": workload.count,
           "path": args.path,
           "measured": {"kind": f"measured: the {args.path} path served locally, real model, "
                                "this machine", **measured},
           "simulated": {"kind": "modelled: simulator with this machine's profile", **simulated}}
    print(json.dumps(out, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
