"""Benchmark (not a test): issue 12's cost targets, end to end, MBS against BATCH and plain Lambda.

Every figure is SIMULATED (modelled): `mbs compare`'s logic (optimizer/compare/comparison.py)
tunes MBS (the Bayesian search, up to 4 buffers, compare's default budget), BATCH (the same
search, one buffer), and picks plain Lambda's memory from the no-batching runs, then replays
them all through the discrete-event simulator on each workload's exact trace with the shipped
CPU profile and the dated price table (optimizer/platform/pricing.py). Costs are end to end
(optimizer/platform/plan_cost.py): MBS and BATCH on the online path (HTTP API, Cloud Map, the
dispatcher's Fargate fleet sized from the trace's per-minute rates, logs, egress), plain Lambda
behind the HTTP API with nothing else; the infer and batching figures sit beside them.

Targets (issue 12), azure-code, p99 <= 1 s: MBS no dearer than plain Lambda at 1x, MBS <= 0.75x
plain Lambda at 10x, MBS below BATCH at every rate. Where a target is missed, "stopped_by" lists
the line items (per 1M requests) where MBS pays more than the policy it is judged against.
Workloads:
- azure_code: the whole Azure code trace, the default text mix (70% sentences, 30% review
  passages), seed 0;
- heldout_conv_passages (ours): the whole Azure conv trace with the mix inverted: 70% review
  passages, 30% sentences, drawn from the bundled corpus with seed 0.
Assumptions that move the result (request_paths.py, dispatcher_fleet.py): one billed Cloud Map
DiscoverInstances call per request (DISCOVER_CALLS_PER_REQUEST, the worst case: "what_if"
shows MBS without it) and 100 req/s per 0.25-vCPU dispatcher task (not yet measured).
Writes benchmarks/results/online_cost.json and online_cost_{vs_rate,per_policy_x1}.png.

    nice -n 5 .venv/bin/python benchmarks/bench_online_cost.py [--rates 1,10,100] [--evals N]
        [--rate-mode compress|superpose]
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

from optimizer.compare.comparison import (  # noqa: E402
    Comparison,
    RatePoint,
    compare,
    rates_to_dict,
)
from optimizer.compare.grid import BaselineGrids  # noqa: E402
from optimizer.compare.plots import cost_bars, cost_vs_rate  # noqa: E402
from optimizer.compare.tuning import search_settings, search_tuner  # noqa: E402
from optimizer.compare.workbench import Workbench  # noqa: E402
from optimizer.platform.backends import make_backend  # noqa: E402
from optimizer.platform.dispatcher_fleet import DISPATCHER_TASK_CAPACITY_RPS  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.platform.request_paths import DISCOVER_CALLS_PER_REQUEST  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.texts import pang_lee_corpus, sample_texts  # noqa: E402
from optimizer.workload.workloads import (  # noqa: E402
    Workload,
    WorkloadSpec,
    build_workload,
    load_arrivals,
)

RESULTS = ROOT / "benchmarks" / "results"
SLO_MS, PERCENTILE, MAX_BUFFERS, SEED = 1000.0, 99.0, 4, 0
CASES = {"azure_code": ("azure-code", None), "heldout_conv_passages": ("azure-conv", 0.7)}
JUDGED = ("mbs", "batch", "plain_lambda")
TARGETS = {"mbs_over_plain_lambda_at_1x_max": 1.0, "mbs_over_plain_lambda_at_10x_max": 0.75,
           "mbs_below_batch_at_every_rate": True}


def _workbench(preset: str, long_fraction: float | None, rate: float,
               backend: Any, rate_mode: str) -> tuple[Workbench, str]:
    spec = WorkloadSpec(preset=preset, rate_scale=rate, rate_mode=rate_mode, seed=SEED)
    if long_fraction is None:
        workload, texts = build_workload(spec), spec.describe()
    else:
        trace = load_arrivals(spec)
        drawn = sample_texts(trace.count, np.random.default_rng(SEED), pang_lee_corpus(),
                             long_fraction)
        workload = Workload(np.asarray(trace.arrivals_s), tuple(drawn), spec)
        texts = (f"{preset} [whole trace] x{rate:g} rate ({rate_mode}), texts: Pang & Lee "
                 f"({1 - long_fraction:.0%} sentences, {long_fraction:.0%} review passages), "
                 f"seed {SEED}")
    bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, SLO_MS, PERCENTILE)
    return bench, texts


def _per_million(comparison: Comparison, name: str) -> dict[str, float]:
    m = comparison.outcomes[name].metrics
    scale = 1e6 / m.requests if m.requests else 0.0
    return {k: v * scale for k, v in m.cost.nonzero_items().items()}


def _figures(comparison: Comparison, name: str) -> dict[str, Any]:
    out = comparison.outcomes[name]
    m = out.metrics
    return {**comparison.costs(name), "line_items_per_million_usd": _per_million(comparison, name),
            "path": m.cost.path, "p99_ms": m.p99_ms, "tail_ms": out.tail_ms,
            "feasible": out.feasible, "invocations": m.invocations,
            "mean_batch_size": m.mean_batch_size, "cold_starts": m.cold_starts,
            "padding_overhead": m.padding_overhead, "settings": out.settings,
            "buffers": len(out.plan.buffers) if out.plan else None}


def _stopped_by(comparison: Comparison, name: str, other: str, ratio: float) -> dict[str, float]:
    """Line items ($/1M) where MBS pays more than ratio x `other`'s, largest first."""
    mine, theirs = _per_million(comparison, name), _per_million(comparison, other)
    excess = {k: mine.get(k, 0.0) - ratio * theirs.get(k, 0.0) for k in {*mine, *theirs}}
    return dict(sorted(((k, v) for k, v in excess.items() if v > 0), key=lambda kv: -kv[1]))


def _judge(points: list[RatePoint]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for point in points:
        c, rate = point.comparison, point.rate_scale
        mbs, batch, plain = (c.cost_usd(n) for n in JUDGED)
        key = f"x{rate:g}"
        limit = {1.0: 1.0, 10.0: 0.75}.get(rate)
        row: dict[str, Any] = {"mbs_over_plain_lambda": mbs / plain, "mbs_over_batch": mbs / batch,
                               "mbs_below_batch": mbs < batch,
                               "feasible": {n: c.outcomes[n].feasible for n in JUDGED}}
        if limit is not None:
            row["plain_lambda_target"] = limit
            row["plain_lambda_target_met"] = mbs <= limit * plain
            if not row["plain_lambda_target_met"]:
                row["stopped_by_vs_plain_lambda"] = _stopped_by(c, "mbs", "plain_lambda", limit)
        if not row["mbs_below_batch"]:
            row["stopped_by_vs_batch"] = _stopped_by(c, "mbs", "batch", 1.0)
        discovery = DISCOVER_CALLS_PER_REQUEST * Pricing().cloud_map_discover_call_usd * 1e6
        row["what_if_no_discovery_calls"] = {"mbs_e2e_per_million_usd": mbs - discovery,
                                             "mbs_over_plain_lambda": (mbs - discovery) / plain}
        out[key] = row
    return out


def run_case(name: str, rates: tuple[float, ...], evals: int | None,
             rate_mode: str) -> tuple[dict[str, Any], list[RatePoint]]:
    preset, long_fraction = CASES[name]
    backend = make_backend("lambda", None, Pricing())
    settings = search_settings(backend, MAX_BUFFERS, evals)
    tuner = search_tuner(seed=SEED, progress=False)
    points, walls = [], []
    for rate in rates:
        started = time.perf_counter()
        bench, described = _workbench(preset, long_fraction, rate, backend, rate_mode)
        grids = BaselineGrids.build(bench, settings.memory_choices_mb)
        points.append(RatePoint(rate, described, compare(bench, tuner, settings, grids=grids)))
        walls.append(time.perf_counter() - started)
        print(f"[online_cost] {name} x{rate:g}: {walls[-1]:.0f} s; e2e $/1M "
              + ", ".join(f"{n} {points[-1].comparison.cost_usd(n):.3f}" for n in JUDGED),
              file=sys.stderr, flush=True)
    return {"workload": points[0].workload, "evals": settings.evals,
            "wall_s": dict(zip([f"x{r:g}" for r in rates], walls, strict=True)),
            "by_rate": {f"x{p.rate_scale:g}": {n: _figures(p.comparison, n)
                                               for n in p.comparison.outcomes}
                        for p in points},
            "targets": _judge(points),
            "comparisons": rates_to_dict(points, backend)}, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,10,100")
    parser.add_argument("--evals", type=int, default=None, help="search budget per policy "
                        "(default: compare's)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rate-mode", choices=["compress", "superpose"], default="compress",
                        help="compress: the trace's times divided by X (the hour shrinks); "
                        "superpose: X shifted copies over the same hour (bursts and duration "
                        "kept). superpose writes online_cost_superpose.json")
    args = parser.parse_args()
    suffix = "" if args.rate_mode == "compress" else "_superpose"
    rates = tuple(float(r) for r in args.rates.split(","))
    report: dict[str, Any] = {
        "benchmark": "issue 12: end-to-end cost, MBS vs BATCH vs plain Lambda (SIMULATED)",
        "figures": "simulated", "rate_mode": args.rate_mode,
        "slo": f"p{PERCENTILE:g} <= {SLO_MS:g} ms", "targets": TARGETS,
        "assumptions": {"discover_calls_per_request": DISCOVER_CALLS_PER_REQUEST,
                        "dispatcher_task_capacity_rps": DISPATCHER_TASK_CAPACITY_RPS,
                        "pricing_as_of": Pricing().as_of},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "cases": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.cases.split(","):
        case, points = run_case(name, rates, args.evals, args.rate_mode)
        report["cases"][name] = case
        if name == "azure_code":
            subtitle = f"{points[0].workload}; lambda backend"
            cost_vs_rate(points, RESULTS / f"online_cost{suffix}_vs_rate.png", subtitle)
            cost_bars(points[0].comparison, RESULTS / f"online_cost{suffix}_per_policy_x1.png",
                      subtitle)
        (RESULTS / f"online_cost{suffix}.json").write_text(json.dumps(report, indent=2, default=str)
                                                  + "\n", encoding="utf-8")
    print(json.dumps({n: c["targets"] for n, c in report["cases"].items()}, indent=2))


if __name__ == "__main__":
    main()
