"""Benchmark (not a test): managed mode under the SQS event source mapping as AWS runs it.

Every figure is modelled: the estimator and the simulator, with the ESM's rules
(optimizer/platform/esm_rules.py: windows that begin when a poller's previous invocation
completes, five pollers that batch on their own, MaximumConcurrency capping invocations, the
low-traffic wait as a p99 bound), the shipped CPU profile and the dated price table.
1. accuracy: for both presets (whole Azure code and conv traces, default text mix, seed 0) and
   managed plans (the shipped managed plan, re-optimised under these rules, and varied ones),
   the estimator's relative error against the simulator in end-to-end cost (target 10%) and
   p99 (target 15%), with the infer cost's error and the low-traffic figures beside them.
2. sensitivity: the shipped managed plan simulated on azure-code under other values of the
   undocumented assumptions (pollers, how records split over them, the low-traffic wait),
   with the estimator beside each. The SQS polling line item is priced at five pollers
   (request_paths.ESM_POLLERS_PER_QUEUE); "polling_scaled" shows it scaled to the pollers.
3. compare: `mbs compare --mode managed`'s logic on azure-code at p99 <= 30 s and <= 120 s: MBS
   and BATCH on the bulk path, MBS planned for the online path beside them, every cost end
   to end with the infer and batching costs.
Writes benchmarks/results/managed.json and prints the tables.

    nice -n 5 .venv/bin/python benchmarks/bench_managed.py [--evals N] [--skip-compare]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buffers.plan import Plan  # noqa: E402
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict  # noqa: E402
from optimizer.compare.comparison import ONLINE_REFERENCE, compare  # noqa: E402
from optimizer.compare.tuning import search_settings, search_tuner  # noqa: E402
from optimizer.compare.workbench import Workbench  # noqa: E402
from optimizer.estimator.estimate import EstimatorContext, estimate  # noqa: E402
from optimizer.platform.backends import make_backend  # noqa: E402
from optimizer.platform.esm_rules import LOW_TRAFFIC_WAIT_S, EsmRules  # noqa: E402
from optimizer.platform.lambda_rules import LambdaRules  # noqa: E402
from optimizer.platform.latency_model import load_profile  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.platform.request_paths import ESM_POLLERS_PER_QUEUE  # noqa: E402
from optimizer.sim.engine import simulate  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.workloads import WorkloadSpec, build_workload  # noqa: E402

PRESETS = ("azure-code", "azure-conv")
COST_TARGET, P99_TARGET = 0.10, 0.15
SLO_MS = 30_000.0
COMPARE_SLOS_MS = (30_000.0, 120_000.0)
SENSITIVITY = (("documented/assumed defaults", EsmRules()),
               ("2 pollers", EsmRules(pollers=2)),
               ("10 pollers", EsmRules(pollers=10)),
               ("round-robin split", EsmRules(split="round_robin")),
               ("split seed 1", EsmRules(seed=1)),
               ("low-traffic wait 20 s (pessimistic)",
                EsmRules(low_traffic_wait_s=LOW_TRAFFIC_WAIT_S)))


def _managed(name: str, buffers: list[tuple[int, int, int, int, int, int]]) -> Plan:
    """A managed plan from (min_len, max_len, batch, window_ms, memory_mb, concurrency)."""
    return plan_from_dict({"version": 1, "name": name, "buffers": [
        {"name": f"b{i}", "min_length": lo, "max_length": hi, "max_batch_size": b,
         "timeout_ms": t, "memory_mb": mem, "dispatch_mode": "managed", "max_concurrency": c}
        for i, (lo, hi, b, t, mem, c) in enumerate(buffers)]})


def plans() -> list[Plan]:
    return [load_plan(default_plan_path("managed")),
            _managed("one-1s", [(1, 256, 16, 1000, 1769, 4)]),
            _managed("one-5s", [(1, 256, 64, 5000, 2048, 4)]),
            _managed("two-10s", [(1, 40, 64, 10000, 1769, 4), (41, 256, 32, 10000, 3008, 8)]),
            _managed("two-25s", [(1, 60, 64, 25000, 1769, 2), (61, 256, 64, 25000, 3008, 2)]),
            _managed("three-3s", [(1, 24, 32, 3000, 1024, 4), (25, 96, 16, 3000, 1769, 4),
                                  (97, 256, 8, 2000, 3008, 4)]),
            _managed("fills-20s", [(1, 256, 8, 20000, 1769, 4)]),
            _managed("no-window", [(1, 64, 10, 0, 1769, 4), (65, 256, 4, 0, 3008, 4)])]


def _rel(estimated: float, simulated: float) -> float:
    return (estimated - simulated) / simulated if simulated else float("nan")


def _figures(m: Any) -> dict[str, float]:
    return {"end_to_end_cost_per_million_usd": m.end_to_end_cost_per_million_usd,
            "infer_cost_per_million_usd": m.infer_cost_per_million_usd,
            "batching_cost_per_million_usd": m.batching_cost_per_million_usd,
            "p50_ms": m.p50_ms, "p99_ms": m.p99_ms, "invocations": m.invocations,
            "mean_batch_size": m.mean_batch_size, "cold_starts": m.cold_starts,
            "low_traffic_share": m.low_traffic_share,
            "low_traffic_p99_bound_ms": m.low_traffic_p99_bound_ms}


def _case(preset: str, plan: Plan, arrivals: np.ndarray, lengths: np.ndarray, ctx: Any,
          service: Any, rules: LambdaRules) -> dict[str, Any]:
    start = time.perf_counter()
    sim = simulate(plan, arrivals, lengths, service, Pricing(), SLO_MS, rules=rules).metrics
    sim_ms = 1e3 * (time.perf_counter() - start)
    estimate(plan, ctx)  # warm the per-memory service rows, as the search would
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        est = estimate(plan, ctx)
        walls.append(time.perf_counter() - start)
    cost_err = _rel(est.end_to_end_cost_per_million_usd, sim.end_to_end_cost_per_million_usd)
    p99_err = _rel(est.p99_ms, sim.p99_ms)
    return {"preset": preset, "plan": plan.name, "buffers": len(plan.buffers),
            "windows_s": [s.timeout_ms / 1000 for s in plan.buffers],
            "cost_rel_err": cost_err, "p99_rel_err": p99_err,
            "cost_ok": abs(cost_err) <= COST_TARGET, "p99_ok": abs(p99_err) <= P99_TARGET,
            "infer_cost_rel_err": _rel(est.infer_cost_per_million_usd,
                                       sim.infer_cost_per_million_usd),
            "invocations_rel_err": _rel(est.invocations, sim.invocations),
            "estimator_ms_median": 1e3 * float(np.median(walls)), "simulator_ms": sim_ms,
            "estimated": _figures(est), "simulated": _figures(sim)}


def accuracy(service: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Estimator against simulator on both presets, every plan."""
    cases, workloads = [], {}
    rules = LambdaRules()
    for preset in PRESETS:
        workload = build_workload(WorkloadSpec(preset=preset, seed=0))
        arrivals, lengths = workload.arrivals_s, token_lengths(workload)
        ctx = EstimatorContext.build(arrivals, lengths, service, Pricing(), SLO_MS, rules)
        workloads[preset] = {"requests": int(arrivals.size),
                             "span_s": float(arrivals[-1] - arrivals[0]),
                             "spec": workload.spec.describe()}
        cases += [_case(preset, plan, arrivals, lengths, ctx, service, rules)
                  for plan in plans()]
    return cases, workloads


def sensitivity(service: Any) -> list[dict[str, Any]]:
    """The shipped managed plan on azure-code under each assumption (simulated, estimated)."""
    workload = build_workload(WorkloadSpec(preset="azure-code", seed=0))
    arrivals, lengths = workload.arrivals_s, token_lengths(workload)
    plan = load_plan(default_plan_path("managed"))
    rows = []
    for label, esm in SENSITIVITY:
        rules = LambdaRules(esm=esm)
        sim = simulate(plan, arrivals, lengths, service, Pricing(), SLO_MS, rules=rules).metrics
        polling = sim.cost.queue_polling_usd * 1e6 / sim.requests
        scaled = polling * (esm.pollers / ESM_POLLERS_PER_QUEUE - 1.0)
        row = {"assumption": label, "esm": esm.__dict__, "simulated": _figures(sim),
               "polling_per_million_usd": polling,
               "end_to_end_polling_scaled_per_million_usd":
                   sim.end_to_end_cost_per_million_usd + scaled}
        if esm.low_traffic_wait_s == 0:
            ctx = EstimatorContext.build(arrivals, lengths, service, Pricing(), SLO_MS, rules)
            row["estimated"] = _figures(estimate(plan, ctx))
        rows.append(row)
    return rows


def comparisons(evals: int | None, seed: int) -> list[dict[str, Any]]:
    """`mbs compare --mode managed` on azure-code at each SLO of seconds."""
    workload = build_workload(WorkloadSpec(preset="azure-code", seed=0))
    backend = make_backend("lambda", None, Pricing())
    settings = search_settings(backend, 4, evals, "managed")
    out = []
    for slo_ms in COMPARE_SLOS_MS:
        bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, slo_ms,
                          mode="managed")
        start = time.perf_counter()
        result = compare(bench, search_tuner(seed=seed, progress=False), settings,
                         progress=lambda msg: print(f"[bench_managed] {msg}", file=sys.stderr,
                                                    flush=True))
        report = result.to_dict(workload.spec.describe(), backend)
        report["wall_s"] = time.perf_counter() - start
        report["search_evals"] = settings.evals
        out.append(report)
    return out


def _accuracy_table(cases: list[dict[str, Any]]) -> str:
    head = (f"{'preset':10} {'plan':14} {'e2e $/1M sim':>12} {'est':>7} {'err':>7} "
            f"{'infer err':>9} {'p99 sim ms':>10} {'est':>8} {'err':>7} {'inv err':>8} "
            f"{'exposed':>8} {'p99 bound sim':>13} {'est':>7} {'est ms':>7}")
    rows = [head, "-" * len(head)]
    for c in cases:
        s, e = c["simulated"], c["estimated"]
        flag = "" if c["cost_ok"] and c["p99_ok"] else "  MISS"
        rows.append(
            f"{c['preset']:10} {c['plan']:14} {s['end_to_end_cost_per_million_usd']:12.3f} "
            f"{e['end_to_end_cost_per_million_usd']:7.3f} {c['cost_rel_err']:+7.1%} "
            f"{c['infer_cost_rel_err']:+9.1%} {s['p99_ms']:10.0f} {e['p99_ms']:8.0f} "
            f"{c['p99_rel_err']:+7.1%} {c['invocations_rel_err']:+8.1%} "
            f"{s['low_traffic_share']:8.3f} {s['low_traffic_p99_bound_ms']:13.0f} "
            f"{e['low_traffic_p99_bound_ms']:7.0f} {c['estimator_ms_median']:7.1f}{flag}")
    return "\n".join(rows)


def _sensitivity_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'assumption':38} {'e2e $/1M':>9} {'polling scaled':>14} {'infer $/1M':>10} "
            f"{'invocations':>11} {'p99 ms':>8} {'bound ms':>9} {'est e2e':>8} {'est p99':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        s, e = r["simulated"], r.get("estimated")
        lines.append(
            f"{r['assumption']:38} {s['end_to_end_cost_per_million_usd']:9.3f} "
            f"{r['end_to_end_polling_scaled_per_million_usd']:14.3f} "
            f"{s['infer_cost_per_million_usd']:10.3f} {s['invocations']:11.0f} "
            f"{s['p99_ms']:8.0f} {s['low_traffic_p99_bound_ms']:9.0f} "
            + (f"{e['end_to_end_cost_per_million_usd']:8.3f} {e['p99_ms']:8.0f}" if e else
               f"{'(sim only)':>17}"))
    return "\n".join(lines)


def _compare_table(reports: list[dict[str, Any]]) -> str:
    head = (f"{'SLO p99':>8} {'policy':22} {'path':>6} {'e2e $/1M':>9} {'infer $/1M':>10} "
            f"{'batching $/1M':>13} {'p99 ms':>8} {'met':>4}")
    lines = [head, "-" * len(head)]
    for report in reports:
        for name in ("mbs", "batch", ONLINE_REFERENCE, "plain_lambda", "oracle"):
            p = report["policies"][name]
            met = {True: "yes", False: "NO", None: "n/a"}[p["feasible"]]
            lines.append(f"{report['slo_ms'] / 1000:7.0f}s {name:22} {p['cost']['path']:>6} "
                         f"{p['end_to_end_cost_per_million_usd']:9.3f} "
                         f"{p['infer_cost_per_million_usd']:10.3f} "
                         f"{p['batching_cost_per_million_usd']:13.3f} {p['p99_ms']:8.0f} "
                         f"{met:>4}")
    return "\n".join(lines)


def _summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cases": len(cases), "cost_within_target": sum(c["cost_ok"] for c in cases),
            "p99_within_target": sum(c["p99_ok"] for c in cases),
            "max_abs_cost_rel_err": max(abs(c["cost_rel_err"]) for c in cases),
            "max_abs_p99_rel_err": max(abs(c["p99_rel_err"]) for c in cases),
            "max_abs_infer_cost_rel_err": max(abs(c["infer_cost_rel_err"]) for c in cases),
            "misses": [f"{c['preset']}/{c['plan']}" for c in cases
                       if not (c["cost_ok"] and c["p99_ok"])]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=None,
                        help="search evaluations per searched policy in the comparisons "
                             "(default: compare's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "managed.json"))
    args = parser.parse_args(argv)
    profile, service = load_profile()
    service_name = (f"optimizer.platform.latency_model.load_profile(): shipped CPU profile "
                    f"({profile.get('device_name', profile.get('device'))})")
    cases, workloads = accuracy(service)
    print(_accuracy_table(cases), flush=True)
    rows = sensitivity(service)
    print("\n" + _sensitivity_table(rows), flush=True)
    reports = [] if args.skip_compare else comparisons(args.evals, args.seed)
    if reports:
        print("\n" + _compare_table(reports), flush=True)
    report = {
        "benchmark": "managed mode: estimator vs simulator under the ESM rules, sensitivity, "
                     "compare --mode managed",
        "figures": "modelled (estimator and simulator), none measured",
        "service_model": service_name, "workloads": workloads, "slo_ms": SLO_MS,
        "targets": {"cost_rel_err": COST_TARGET, "p99_rel_err": P99_TARGET},
        "esm_rules": EsmRules().__dict__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python "
                   f"{platform.python_version()}",
        "load_average_1m_at_end": os.getloadavg()[0],
        "summary": _summary(cases), "cases": cases,
        "sensitivity": {"plan": load_plan(default_plan_path("managed")).to_dict(),
                        "workload": "azure-code, seed 0", "rows": rows},
        "compare_managed": reports,
        "notes": NOTES,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n",
                              encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    return 0


NOTES = [
    "Both sides use the same service-time callable (the shipped CPU profile), the dated price "
    "table and LambdaRules() (6 s cold start billed as INIT, 10 min keep-alive, EsmRules()); "
    "the simulator replays one draw (text seed 0, split seed 0), the estimator reports "
    "expectations.",
    "e2e cost is dominated by the bulk path's per-request items (two HTTP API calls, two front "
    "functions, DynamoDB, SQS sends), which both sides price alike, so its error is small; the "
    "infer cost's error is reported beside it. Its largest misses (-10% on the shipped plan, "
    "azure-code) are cold starts in the middle of the run: a burst hands records to several "
    "lapsed pollers at once, which then stay in phase, so more environments are needed than "
    "phase-independent pollers would need; the estimator counts the start-up cascade as the "
    "pollers make it, not these.",
    "The estimator models the literal lapse rule (a lapsed poller invokes at once); the "
    "pessimistic variant (20 s wait) is simulated only, and both report "
    "low_traffic_p99_bound_ms. Where windows exceed 20 s (the shipped plan) the bound equals "
    "p99; with short windows and over 1% of requests exposed it is about 20 s.",
    "sensitivity: polling_scaled prices the ESM's empty receives at the row's pollers (the "
    "cost model's line item assumes five, request_paths.ESM_POLLERS_PER_QUEUE).",
    "compare_managed: MBS and BATCH are searched in managed mode and priced on the bulk path; "
    "mbs_online is MBS searched in dispatcher mode and priced on the online path; "
    "plain_lambda and the Triton-style and no-batching baselines dispatch per request on the "
    "online path either way; the oracle is priced on the bulk path.",
]


if __name__ == "__main__":
    sys.exit(main())
