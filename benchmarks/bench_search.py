"""Benchmark (not a test): the plan search's speed, its gap to an exhaustive grid, and gears.

(a) `mbs optimize`'s default settings (GP rounds, space, SLO p99 <= 1 s, dispatcher mode) on the
    default workload (the whole bursty Azure code trace, default texts): wall seconds per
    search seed (target <= 60 s on the 2-core machine), the GP phase's best against the final.
(b) A space small enough to enumerate (up to 2 buffers over the workload's boundary candidates,
    3 batch sizes, 3 timeouts, 3 memories): the search's best modelled cost against the
    exhaustive optimum over every plan of the grid (target within 3%).
(c) Gears against the best static plan (a)'s plan, both replayed by the simulator over the whole
    trace with cold starts: cost and p99.
Writes benchmarks/results/search.json.

    .venv/bin/python benchmarks/bench_search.py [--seeds 3] [--gear-evals 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.cli.optimize import DEFAULT_EVALS  # noqa: E402
from optimizer.estimator.estimate import EstimatorContext  # noqa: E402
from optimizer.platform.latency_model import load_profile  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.search.gears import plan_gears  # noqa: E402
from optimizer.search.optimize import exhaustive, optimize  # noqa: E402
from optimizer.search.space import SearchSpace, make_space  # noqa: E402
from optimizer.sim.inputs import SimInputs  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.workloads import WorkloadSpec, build_workload  # noqa: E402

SLO_MS, PERCENTILE = 1000.0, 99.0
WALL_TARGET_S, GAP_TARGET = 60.0, 0.03
SMALL_EVALS = 500  # 1.6% of the small grid's plans
SMALL = SearchSpace(max_buffers=2, batch_sizes=(4, 8, 16), timeouts_ms=(100, 300, 600),
                    memories_mb=(1024, 1769, 3538))


def _buffers(plan) -> list[dict]:
    return [{"lengths": [s.min_length, s.max_length], "batch": s.max_batch_size,
             "timeout_ms": s.timeout_ms, "memory_mb": s.memory_mb} for s in plan.buffers]


def default_runs(ctx, sim, seeds: int) -> tuple[list[dict], object]:
    space = make_space("dispatcher", 4, "x86", slo_ms=SLO_MS)
    runs, first = [], None
    for seed in range(seeds):
        result = optimize(ctx, sim, space, SLO_MS, PERCENTILE, DEFAULT_EVALS, seed)
        first = first or result
        gp_best = min((e.cost_per_million_usd for e in result.history
                       if e.feasible and e.phase != "polish"), default=None)
        runs.append({
            "seed": seed, "wall_s": result.wall_s, "evaluations": result.evaluations,
            "budget": DEFAULT_EVALS, "feasible": result.feasible,
            "gp_phase_best_modelled_cost": gp_best,
            "modelled": {"cost_per_million_usd": result.estimated.cost_per_million_usd,
                         "p99_ms": result.estimated.p99_ms},
            "simulated": {"cost_per_million_usd": result.simulated.cost_per_million_usd,
                          "p99_ms": result.simulated.p99_ms},
            "simulator_rechecks": len(result.rechecks), "plan": _buffers(result.plan)})
        print(f"(a) seed {seed}: {result.wall_s:.1f} s, {result.evaluations} estimates, "
              f"modelled ${result.estimated.cost_per_million_usd:.4f}/1M, simulated "
              f"${result.simulated.cost_per_million_usd:.4f}/1M p99 "
              f"{result.simulated.p99_ms:.0f} ms", flush=True)
    return runs, first


def gap_runs(ctx, sim, seeds: int) -> dict:
    started = time.perf_counter()
    best, tried = exhaustive(ctx, SMALL, sim.lengths, SLO_MS, PERCENTILE)
    grid_s = time.perf_counter() - started
    print(f"(b) exhaustive: {tried} plans in {grid_s:.0f} s, optimum "
          f"${best.cost_per_million_usd:.4f}/1M", flush=True)
    runs = []
    for seed in range(seeds):
        result = optimize(ctx, sim, SMALL, SLO_MS, PERCENTILE, SMALL_EVALS, seed)
        found = min(e.cost_per_million_usd for e in result.history if e.feasible)
        runs.append({"seed": seed, "wall_s": result.wall_s, "evaluations": result.evaluations,
                     "best_modelled_cost": found,
                     "gap": found / best.cost_per_million_usd - 1.0,
                     "returned_after_simulator": result.estimated.cost_per_million_usd
                     if result.plan else None})
        print(f"(b) seed {seed}: gap {runs[-1]['gap']:.2%} after {result.evaluations} "
              f"estimates", flush=True)
    return {"space": {"max_buffers": 2, "boundaries": "workload candidates",
                      "batch_sizes": SMALL.batch_sizes, "timeouts_ms": SMALL.timeouts_ms,
                      "memories_mb": SMALL.memories_mb},
            "grid_plans": tried, "grid_wall_s": grid_s,
            "optimum_modelled_cost": best.cost_per_million_usd, "optimum": _buffers(best.plan),
            "search_evals": SMALL_EVALS, "runs": runs,
            "max_gap": max(r["gap"] for r in runs), "target": GAP_TARGET}


def gears_run(first, sim, gear_evals: int) -> dict:
    space = make_space("dispatcher", 4, "x86", slo_ms=SLO_MS)
    started = time.perf_counter()
    gears = plan_gears(first.plan, sim, space, SLO_MS, PERCENTILE, gear_evals, 0)
    cfg = gears.gears.config
    out = {"wall_s": time.perf_counter() - started, "gears": cfg.gears,
           "up_rps": list(cfg.up_rps), "down_rps": list(cfg.down_rps),
           "requests_per_gear": list(gears.requests),
           "gear_search_percentile": gears.gear_percentile,
           "static": {"cost_per_million_usd": gears.static.cost_per_million_usd,
                      "p99_ms": gears.static_percentile_ms,
                      "invocations": gears.static.invocations},
           "geared": {"cost_per_million_usd": gears.geared.cost_per_million_usd,
                      "p99_ms": gears.geared_percentile_ms,
                      "invocations": gears.geared.invocations},
           "meets_slo": gears.meets_slo,
           "gear_batching": [[[s.max_batch_size, s.timeout_ms] for s in p.buffers]
                             for p in gears.gears.plans]}
    out["cost_change"] = (out["geared"]["cost_per_million_usd"]
                          / out["static"]["cost_per_million_usd"] - 1.0)
    print(f"(c) static ${out['static']['cost_per_million_usd']:.4f}/1M p99 "
          f"{out['static']['p99_ms']:.0f} ms; geared ${out['geared']['cost_per_million_usd']:.4f}"
          f"/1M p99 {out['geared']['p99_ms']:.0f} ms ({out['cost_change']:+.1%})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--gear-evals", type=int, default=DEFAULT_EVALS // 4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    args = parser.parse_args()
    spec = WorkloadSpec()
    workload = build_workload(spec)
    lengths = token_lengths(workload)
    profile, model = load_profile()
    pricing = Pricing()
    ctx = EstimatorContext.build(workload.arrivals_s, lengths, model, pricing, SLO_MS)
    sim = SimInputs(workload.arrivals_s, lengths, model, pricing)
    runs, first = default_runs(ctx, sim, args.seeds)
    report = {
        "benchmark": "plan search", "workload": spec.describe(), "requests": workload.count,
        "slo": f"p{PERCENTILE:g} <= {SLO_MS:g} ms", "mode": "dispatcher",
        "profile": f"{profile.get('device_name')} ({profile.get('date')})",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python "
                   f"{platform.python_version()}",
        "a_default_search": {"runs": runs, "max_wall_s": max(r["wall_s"] for r in runs),
                             "target_wall_s": WALL_TARGET_S},
        "b_gap_to_exhaustive": gap_runs(ctx, sim, args.seeds),
        "c_gears_vs_static": gears_run(first, sim, args.gear_evals),
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    Path(args.out).write_text(json.dumps(report, indent=2, default=float) + "\n",
                              encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
