"""`mbs demo`, the main job: optimize, compare, then serve real traffic with the winner and BATCH.

1. Modelled: the Bayesian search plans MBS and BATCH (one buffer) for the whole default trace
   and SLO; every baseline is tuned and all are replayed in the simulator
   (optimizer/compare/comparison.py).
2. Measured: a slice of the same trace, with real texts, is served over HTTP through the local
   stack (the real model on this machine's CPU), once with MBS's plan and once with BATCH's.
3. One table: modelled figures (Lambda, simulated) beside measured ones (this machine).
Plans, plots and a JSON report go to --out-dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from buffers.plan_files import save_plan
from infra.cli.common import add_json_flag, add_slo_flag
from infra.cli.compare import format_comparison
from optimizer.workload.traces import DEFAULT_PRESET, TRACE_PRESETS
from optimizer.workload.workloads import WorkloadSpec, build_workload

DEMO_START_S, DEMO_DURATION_S, DEMO_SPEEDUP, DEMO_EVALS = 600.0, 90.0, 1.0, 1000


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs demo` to the subcommands."""
    parser = sub.add_parser("demo", help="the main job: optimize, compare, serve and measure",
                            description="Plan MBS and every baseline for the bursty Azure code "
                            "trace (Bayesian search, simulated), then serve a slice of the same "
                            "trace with real texts through the online path (POST "
                            "/v1/embeddings, served locally) with MBS's plan and with BATCH's, "
                            "and print modelled and measured figures side by side.")
    parser.add_argument("--workload", choices=sorted(TRACE_PRESETS), default=DEFAULT_PRESET,
                        help=f"trace to plan for and replay (default {DEFAULT_PRESET})")
    add_slo_flag(parser, "p99 latency SLO (default 1000)")
    parser.add_argument("--evals", type=int, default=DEMO_EVALS,
                        help=f"search evaluations per plan (default {DEMO_EVALS})")
    parser.add_argument("--start", type=float, default=DEMO_START_S, metavar="S",
                        help=f"start of the served slice (default {DEMO_START_S:g})")
    parser.add_argument("--duration", type=float, default=DEMO_DURATION_S, metavar="S",
                        help=f"length of the served slice (default {DEMO_DURATION_S:g})")
    parser.add_argument("--speedup", type=float, default=DEMO_SPEEDUP,
                        help="replay X times faster")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the searches and of text sampling (default 0)")
    parser.add_argument("--out-dir", default="out/demo", metavar="DIR",
                        help="plans, plots and demo.json go here (default out/demo)")
    add_json_flag(parser)
    return parser


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def plan_and_compare(spec: WorkloadSpec, slo_ms: float, evals: int, seed: int,
                     quiet: bool) -> Any:
    """Step 1: the comparison on the whole trace (every figure simulated)."""
    from optimizer.compare.comparison import compare
    from optimizer.compare.tuning import search_settings, search_tuner
    from optimizer.compare.workbench import Workbench
    from optimizer.platform.backends import make_backend
    from optimizer.platform.pricing import Pricing
    from optimizer.workload.lengths import token_lengths

    backend = make_backend("lambda", None, Pricing())
    workload = build_workload(spec)
    bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, slo_ms)
    settings = search_settings(backend, 4, evals)
    return compare(bench, search_tuner(seed=seed, progress=not quiet), settings, progress=_say), \
        backend


def serve_and_measure(plan: Any, spec: WorkloadSpec, speedup: float, quiet: bool) -> dict:
    """Step 2: the slice over real HTTP through the online path, POST /v1/embeddings, served
    locally with the real model (every figure measured)."""
    from infra.client.replay import replay
    from infra.local.serving import LocalService

    workload = build_workload(spec)
    with LocalService(plan) as service:
        return replay(service.url, workload, speedup=speedup, collect_timeout_s=120.0,
                      progress=not quiet)


def _row(name: str, modelled: dict, measured: dict) -> str:
    lat = measured["latency_ms"]
    req = measured["requests"]
    mean_b = measured["totals"]["mean_batch_size"]
    return (f"  {name:<7}| {modelled['cost_per_million_usd']:>9.3f} {modelled['p99_ms']:>8.0f} "
            f"{modelled['padding_overhead']:>8.1%} {modelled['mean_batch_size']:>7.1f} | "
            f"{lat['p50'] or 0:>7.0f} {lat['p99'] or 0:>8.0f} "
            f"{measured['padding_overhead'] or 0:>8.1%} {mean_b or 0:>7.1f} {req['lost']:>5}")


def format_demo(report: dict) -> str:
    """Modelled (simulated, whole trace) beside measured (online path, locally, slice)."""
    head = (f"  {'plan':<7}| {'e2e $/1M':>9} {'p99 ms':>8} {'padding':>8} {'mean B':>7} | "
            f"{'p50 ms':>7} {'p99 ms':>8} {'padding':>8} {'mean B':>7} {'lost':>5}")
    lines = ["", "MBS demo: modelled (simulated on Lambda, whole trace) | measured (this "
             "machine's CPU, online path served locally, trace slice)", head,
             "  " + "-" * (len(head) - 2)]
    for name in ("mbs", "batch"):
        lines.append(_row(name, report["modelled"]["policies"][name], report["measured"][name]))
    ratios = report["modelled"]["ratios"]["cost_vs_mbs"]
    lines.append("")
    lines.append("  modelled cost ratio to MBS: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in ratios.items() if v is not None)
        + f"; MBS / oracle floor (SLO-blind) {report['modelled']['ratios']['mbs_vs_oracle']:.2f}"
        + "; MBS / lower bound (SLO, end to end) "
        + _ratio_text(report["modelled"]["ratios"]["mbs_vs_bound"]["end_to_end"]))
    lines.append(f"  files: {', '.join(report['files'])}")
    return "\n".join(lines)


def _ratio_text(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def run(args: argparse.Namespace) -> int:
    """Plan and compare, serve MBS's and BATCH's plans, print both; exit 1 if any was lost."""
    from optimizer.compare.plots import write_plots

    started = time.monotonic()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = WorkloadSpec(preset=args.workload, seed=args.seed)
    _say(f"1/3 planning MBS and every baseline for {full.describe()}, SLO p99 <= "
         f"{args.slo_ms:g} ms (modelled)")
    comparison, backend = plan_and_compare(full, args.slo_ms, args.evals, args.seed, args.json)
    modelled = comparison.to_dict(full.describe(), backend)
    if not args.json:
        print(format_comparison(comparison, full.describe(), backend.describe()), flush=True)
    files = [str(p) for p in write_plots(comparison, (), out_dir, f"{full.describe()}; lambda")]
    measured = {}
    part = WorkloadSpec(preset=args.workload, start_s=args.start, duration_s=args.duration,
                        seed=args.seed)
    for step, name in ((2, "mbs"), (3, "batch")):
        plan = comparison.outcomes[name].plan
        path = out_dir / f"plan-{name}.json"
        save_plan(plan, path)
        files.append(str(path))
        _say(f"{step}/3 serving {part.describe()} with the {name.upper()} plan "
             f"({len(plan.buffers)} buffers) through /v1/embeddings, locally (measured)")
        measured[name] = serve_and_measure(plan, part, args.speedup, args.json)
    report = {"modelled": modelled, "measured": measured, "files": files,
              "wall_s": time.monotonic() - started}
    (out_dir / "demo.json").write_text(json.dumps(report, indent=2, default=str) + "\n",
                                       encoding="utf-8")
    report["files"].append(str(out_dir / "demo.json"))
    print(json.dumps(report, indent=2, default=str) if args.json else format_demo(report))
    lost = sum(m["requests"]["lost"] for m in measured.values())
    return 0 if lost == 0 else 1
