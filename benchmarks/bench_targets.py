"""Benchmark (not a test): issue 4's targets for MBS against tuned BATCH and the oracle floor.

Every figure is SIMULATED (modelled): `mbs compare`'s logic (optimizer/compare/comparison.py) tunes
MBS (the Bayesian search, up to 4 buffers), BATCH (the same search, one buffer), a Triton-style
batcher and no batching (small grids), and the oracle floor, then replays them all through the
discrete-event simulator on each workload's exact trace, with the shipped CPU profile
(optimizer/profiles/cpu.json, measured on this project's 2-core CPU and scaled to Lambda memory
by Amdahl) and the dated Lambda price table (optimizer/platform/pricing.py). Nothing is measured
on AWS.

Targets (issue 4), MBS against tuned BATCH: cost >= 2x lower, MBS padding overhead <= 5%, MBS
invocations <= 1/3 of BATCH's; against the oracle floor: within 15%. Workloads, SLO p99 <= 1 s:
- default: the bursty Azure code trace (whole), the default text mix (70% sentences, 30%
  review passages), seed 0;
- rate_x10: the same at --rate-scale 10;
- conv: the Azure conv trace, default texts;
- docs_heavy (ours): the Azure code trace with a texts file generated from the bundled corpus,
  70% review passages and 30% sentences (the default mix inverted).
BATCH is judged at its best: the targets use the cheaper SLO-meeting BATCH of the search's and
of an exhaustive enumeration of the same one-buffer space by the estimator (re-simulated), so a
search that under-tunes BATCH cannot flatter MBS. The same searches under seeds 1-4 show how
much of a figure is the search's luck ("search_spread_other_seeds").
Where a target is missed, "limits" says what bounds it: the arrivals an SLO window can hold,
the oracle floor at smaller batch caps, the floor when batches must also finish within the SLO,
and the cost parts no batching removes (request fees, queue calls, billed cold starts).
Writes benchmarks/results/targets.json and, for the default workload,
benchmarks/results/targets_{latency_cdf,cost_per_policy,cost_vs_slo}.png.

    .venv/bin/python benchmarks/bench_targets.py [--evals N] [--cases default,conv] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimizer.compare.comparison import CompareSettings, Comparison, compare, sweep  # noqa: E402
from optimizer.compare.grid import BaselineGrids  # noqa: E402
from optimizer.compare.tuning import search_settings, search_tuner, space_for  # noqa: E402
from optimizer.compare.workbench import Workbench  # noqa: E402
from optimizer.estimator.estimate import EstimatorContext  # noqa: E402
from optimizer.platform.backends import make_backend  # noqa: E402
from optimizer.platform.lambda_rules import LambdaRules  # noqa: E402
from optimizer.platform.latency_model import DEFAULT_CPU_PROFILE  # noqa: E402
from optimizer.platform.pricing import MB_PER_GB, Pricing  # noqa: E402
from optimizer.search.optimize import exhaustive  # noqa: E402
from optimizer.sim.baselines import oracle_floor  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.texts import pang_lee_corpus  # noqa: E402
from optimizer.workload.workloads import WorkloadSpec, build_workload  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SLO_MS, PERCENTILE, MAX_BUFFERS = 1000.0, 99.0, 4
TARGETS = {"batch_cost_over_mbs_min": 2.0, "mbs_padding_overhead_max": 0.05,
           "mbs_invocations_over_batch_max": 1.0 / 3.0, "mbs_cost_over_oracle_max": 1.15}
SWEEP_SLOS_MS = (250.0, 500.0, 1000.0, 2000.0)
ORACLE_CAPS = (1, 2, 4, 8, 16, 32, 64)
DOCS_HEAVY = {"long": 7000, "short": 3000}  # texts drawn from the corpus: 70% passages
SPREAD_SEEDS = (1, 2, 3, 4)  # further search seeds, for how much of a result is the search's luck


@dataclass(frozen=True)
class Case:
    name: str
    spec: WorkloadSpec
    label: str


def _docs_heavy_texts(directory: Path, seed: int) -> Path:
    """A texts file of 70% review passages and 30% sentences, drawn (seeded) from Pang & Lee."""
    corpus = pang_lee_corpus()
    rng = np.random.default_rng(seed)
    texts = ([corpus.long[i] for i in rng.integers(0, len(corpus.long), DOCS_HEAVY["long"])]
             + [corpus.short[i] for i in rng.integers(0, len(corpus.short),
                                                      DOCS_HEAVY["short"])])
    path = directory / "docs_heavy_texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _cases(texts_dir: Path, seed: int) -> list[Case]:
    docs = str(_docs_heavy_texts(texts_dir, seed))
    return [
        Case("default", WorkloadSpec(seed=seed), "azure-code, default texts (70/30), x1"),
        Case("rate_x10", WorkloadSpec(rate_scale=10.0, seed=seed),
             "azure-code, default texts, --rate-scale 10"),
        Case("conv", WorkloadSpec(preset="azure-conv", seed=seed),
             "azure-conv, default texts, x1"),
        Case("docs_heavy", WorkloadSpec(texts_file=docs, seed=seed),
             "azure-code, ours: 70% review passages / 30% sentences, x1"),
    ]


def _targets(result: Comparison, batch_usd: float,
             batch_invocations: float) -> dict[str, dict[str, float | bool | None]]:
    """The four targets, against the cheaper SLO-meeting BATCH (searched or exhaustive)."""
    mbs = result.outcomes["mbs"].metrics
    figures = {
        "batch_cost_over_mbs": batch_usd / mbs.cost_per_million_usd,
        "mbs_padding_overhead": mbs.padding_overhead,
        "mbs_invocations_over_batch": mbs.invocations / batch_invocations,
        "mbs_cost_over_oracle": result.ratios()["mbs_vs_oracle"],
    }
    out = {}
    for name, value in figures.items():
        bound = next(v for k, v in TARGETS.items() if k.startswith(name))
        met = value is not None and (value >= bound if name.startswith("batch_cost")
                                     else value <= bound)
        out[name] = {"value": value, "target": bound, "met": bool(met)}
    return out


def _batch_exhaustive(bench: Workbench) -> dict[str, object]:
    """BATCH's one-buffer space enumerated by the estimator, its optimum simulated: a guard
    against a search that under-tunes BATCH (which would flatter MBS)."""
    backend = bench.backend
    ctx = EstimatorContext.build(bench.arrivals_s, bench.lengths, backend.service_ms,
                                 backend.pricing, bench.slo_ms, bench.rules, bench.arch)
    space = space_for(backend, bench.mode, 1, bench.arch, bench.slo_ms)
    start = time.perf_counter()
    best, tried = exhaustive(ctx, space, bench.lengths, bench.slo_ms, bench.percentile)
    out: dict[str, object] = {"plans_estimated": tried, "wall_s": time.perf_counter() - start}
    if best is None:
        return {**out, "feasible": False}
    sim = bench.simulate(best.plan)
    tail = bench.tail_ms(sim.latency_ms)
    out.update(plan=best.plan.to_dict(), estimated_cost_per_million_usd=best.cost_per_million_usd,
               cost_per_million_usd=sim.metrics.cost_per_million_usd, tail_ms=tail,
               feasible=bool(tail <= bench.slo_ms), invocations=sim.metrics.invocations,
               padding_overhead=sim.metrics.padding_overhead)
    return out


def _spread(bench: Workbench, settings: CompareSettings,
            seeds: tuple[int, ...]) -> dict[str, object]:
    """The same searches under other seeds: simulated cost and SLO verdict of each plan."""
    out: dict[str, dict[str, object]] = {"mbs": {}, "batch": {}}
    for seed in seeds:
        tuner = search_tuner(seed=seed, progress=False)
        for name, buffers in (("mbs", settings.max_buffers), ("batch", 1)):
            tuned = tuner(bench, buffers, settings.evals)
            sim = bench.simulate(tuned.plan)
            out[name][str(seed)] = {"cost_per_million_usd": sim.metrics.cost_per_million_usd,
                                    "feasible": bool(bench.tail_ms(sim.latency_ms)
                                                     <= bench.slo_ms),
                                    "buffers": len(tuned.plan.buffers)}
    return out


def _slo_bounded_floor(bench: Workbench, memory_mb: int, max_batch: int) -> float:
    """The oracle floor when each batch must also finish within the SLO: per length, the
    largest batch (<= max_batch, >= 1) whose model time fits in slo_ms. $ per 1M requests."""
    service = bench.backend.service_ms
    lengths = np.asarray(bench.lengths)
    total_usd = 0.0
    for length in np.unique(lengths):
        cap = max([b for b in range(1, max_batch + 1)
                   if service(b, int(length), memory_mb) <= bench.slo_ms] or [1])
        part = oracle_floor(lengths[lengths == length], service, bench.backend.pricing,
                            memory_mb, cap, slo_ms=bench.slo_ms, arch=bench.arch)
        total_usd += part.cost.batching_usd
    return total_usd / lengths.size * 1e6


def _limits(bench: Workbench, result: Comparison, max_batch: int) -> dict[str, object]:
    """What bounds MBS here: arrivals per SLO window, floors at smaller caps, fixed parts."""
    arrivals = np.asarray(bench.arrivals_s)
    ends = np.searchsorted(arrivals, arrivals + bench.slo_ms / 1000.0, side="right")
    window = ends - np.arange(arrivals.size)  # this arrival and those within one SLO after it
    mbs = result.outcomes["mbs"]
    memory_mb = int(result.outcomes["oracle"].settings["memory_mb"])
    per_m = 1e6 / mbs.metrics.requests
    cost = mbs.metrics.cost
    cold_usd = sum(
        m.cold_starts * bench.rules.init_billed_ms(True) / 1000.0 * spec.memory_mb / MB_PER_GB
        * bench.backend.pricing.lambda_gb_s_usd(bench.arch)
        for spec, m in zip(mbs.plan.buffers, mbs.metrics.per_buffer.values(), strict=True))
    floors = {str(cap): oracle_floor(bench.lengths, bench.backend.service_ms,
                                     bench.backend.pricing, memory_mb, cap,
                                     slo_ms=bench.slo_ms).cost_per_million_usd
              for cap in ORACLE_CAPS if cap <= max_batch}
    return {
        "batch_cost_over_oracle": (result.cost_usd("batch") / result.cost_usd("oracle")),
        "note": "no plan costs less than the oracle floor, so BATCH/MBS <= BATCH/oracle",
        "arrivals_per_slo_window": {"mean": float(window.mean()),
                                    "median": float(np.median(window)),
                                    "p90": float(np.percentile(window, 90))},
        "mbs_mean_batch_size": mbs.metrics.mean_batch_size,
        "oracle_floor_by_max_batch_usd_per_1m": floors,
        "oracle_floor_batches_within_slo_usd_per_1m": _slo_bounded_floor(bench, memory_mb,
                                                                         max_batch),
        "mbs_cost_parts_usd_per_1m": {
            "infer_compute": cost.infer_compute_usd * per_m,
            "of_which_billed_cold_starts": cold_usd * per_m,
            "infer_request_fees": cost.infer_request_usd * per_m,
            "queue": cost.queue_usd * per_m},
        "mbs_padding_by_buffer": {name: m.padding_overhead
                                  for name, m in mbs.metrics.per_buffer.items()},
    }


def run_case(case: Case, args: argparse.Namespace, plots: bool) -> dict[str, object]:
    start = time.perf_counter()
    workload = build_workload(case.spec)
    backend = make_backend("lambda", None, Pricing())
    bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, SLO_MS,
                      PERCENTILE, "dispatcher")
    settings = search_settings(backend, MAX_BUFFERS, args.evals)
    tuner = search_tuner(seed=args.seed, progress=True)
    grids = BaselineGrids.build(bench, settings.memory_choices_mb)
    result = compare(bench, tuner, settings, progress=print, grids=grids)
    print("enumerating BATCH's one-buffer space (guard)", flush=True)
    batch = result.outcomes["batch"]
    guard = _batch_exhaustive(bench)
    batch_usd, batch_inv, source = (batch.metrics.cost_per_million_usd,
                                    batch.metrics.invocations, "search")
    if guard.get("feasible") and guard["cost_per_million_usd"] < batch_usd:
        batch_usd, batch_inv, source = (guard["cost_per_million_usd"], guard["invocations"],
                                        "exhaustive")
    print("the same searches under other seeds (spread)", flush=True)
    spread = _spread(bench, settings, SPREAD_SEEDS)
    out: dict[str, object] = {
        "workload": case.label, "requests": workload.count,
        "trace_span_s": float(workload.arrivals_s[-1]),
        "targets": _targets(result, batch_usd, batch_inv),
        "targets_judged_against": {"mbs": "compare's MBS (search seed 0)",
                                   "batch": f"the cheaper SLO-meeting BATCH: {source}",
                                   "batch_cost_per_million_usd": batch_usd},
        "batch_exhaustive": guard,
        "search_spread_other_seeds": spread,
        "limits": _limits(bench, result, settings.oracle_max_batch),
        "comparison": result.to_dict(case.label, backend),
    }
    if plots:
        from optimizer.compare.plots import write_plots

        swept = replace(settings, evals=max(settings.evals // 3, 1))
        points = sweep(bench, tuner, swept, SWEEP_SLOS_MS, grids, print)
        paths = write_plots(result, points, RESULTS, f"{case.label}; lambda backend",
                            prefix="targets_")
        out["sweep"] = {"evals_per_point": swept.evals,
                        "points": [p.to_dict() for p in points],
                        "plots": [str(p.relative_to(ROOT)) for p in paths]}
    out["wall_s"] = time.perf_counter() - start
    return out


def _table(cases: dict[str, dict]) -> str:
    head = ("case", "MBS $/1M", "BATCH* $/1M", "BATCH/MBS>=2", "pad<=5%", "inv<=1/3",
            "MBS/oracle<=1.15", "MBS p99", "BATCH p99")
    rows = [head]
    for name, case in cases.items():
        pol, t = case["comparison"]["policies"], case["targets"]
        mark = {name: f"{v['value']:.3g}{'' if v['met'] else ' MISS'}" for name, v in t.items()}
        rows.append((name, f"{pol['mbs']['cost_per_million_usd']:.3f}",
                     f"{case['targets_judged_against']['batch_cost_per_million_usd']:.3f}",
                     mark["batch_cost_over_mbs"], mark["mbs_padding_overhead"],
                     mark["mbs_invocations_over_batch"], mark["mbs_cost_over_oracle"],
                     f"{pol['mbs']['p99_ms']:.0f}", f"{pol['batch']['p99_ms']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["targets (every figure SIMULATED, SLO p99 <= 1000 ms, shipped CPU profile, "
             "Lambda x86 prices; BATCH*: the cheaper of the searched and the exhaustive BATCH)"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=None,
                        help="search evaluations per policy (default: the search's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", default="default,rate_x10,conv,docs_heavy")
    parser.add_argument("--out", default=str(RESULTS / "targets.json"))
    args = parser.parse_args(argv)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    profile = json.loads(DEFAULT_CPU_PROFILE.read_text(encoding="utf-8"))
    results = {}
    with tempfile.TemporaryDirectory() as texts_dir:
        cases = {c.name: c for c in _cases(Path(texts_dir), args.seed)}
        unknown = sorted(set(wanted) - set(cases))
        if unknown:
            raise SystemExit(f"unknown case(s) {unknown}; known: {sorted(cases)}")
        for name in wanted:
            print(f"== {name}: {cases[name].label}", flush=True)
            results[name] = run_case(cases[name], args, plots=name == "default")
    report = {
        "benchmark": "issue 4 targets: MBS vs tuned BATCH and the oracle floor",
        "figures": "SIMULATED (modelled) by the discrete-event simulator on each workload's "
                   "exact trace; nothing measured on AWS",
        "profile": {"file": "optimizer/profiles/cpu.json", "device": profile.get("device"),
                    "device_name": profile.get("device_name"), "date": profile.get("date"),
                    "torch": profile.get("torch"),
                    "note": "measured on this project's CPU, scaled to Lambda memory (Amdahl)"},
        "pricing": {**Pricing().to_dict(), "backend": "lambda (x86, GB-second, 1 ms billing)"},
        "platform_rules": asdict(LambdaRules()),
        "slo": {"slo_ms": SLO_MS, "percentile": PERCENTILE},
        "targets": TARGETS,
        "search": {"max_buffers": MAX_BUFFERS, "evals": args.evals or "search default",
                   "seed": args.seed},
        "docs_heavy_texts": {**DOCS_HEAVY, "source": "Pang & Lee (bundled), drawn with "
                             f"numpy default_rng({args.seed})"},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "cases": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
