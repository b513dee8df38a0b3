"""`mbs compare`: MBS against every baseline on one workload and SLO, all simulated."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra.cli.common import (
    add_arch_flag,
    add_json_flag,
    add_max_buffers_flag,
    add_model_flags,
    add_percentile_flag,
    add_slo_flag,
    add_workload_flags,
    check_slo,
    workload_spec,
)
from optimizer.compare.comparison import POLICIES, CompareSettings, Comparison, compare, sweep
from optimizer.compare.grid import BaselineGrids
from optimizer.compare.tuning import DEFAULT_EVALS
from optimizer.compare.workbench import MODES, Tuner, Workbench
from optimizer.platform.backends import BackendType, make_backend
from optimizer.platform.pricing import load_pricing

DEFAULT_SWEEP_SLOS_MS = (250.0, 500.0, 1000.0, 2000.0)
_NAMES = {"mbs": "MBS", "batch": "BATCH tuned", "no_batching": "no batching",
          "triton": "Triton-style", "oracle": "oracle floor (SLO-blind)",
          "bound": "lower bound (SLO)", "clairvoyant": "clairvoyant"}
_COLUMNS = ("policy", "$/1M", "vs MBS", "p50 ms", "p99 ms", "tail ms", "in SLO", "SLO met",
            "padding", "invocations", "batch")


def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _row(comparison: Comparison, name: str) -> tuple[str, ...]:
    out = comparison.outcomes[name]
    m = out.metrics
    ratio = comparison.ratios()["cost_vs_mbs"].get(name)
    met = {True: "yes", False: "NO", None: "n/a"}[out.feasible]
    timed = name != "bound"  # the bound is computed, not simulated: it has no latencies
    return (_NAMES[name], f"{m.cost_per_million_usd:.3f}", _fmt(ratio, ".2f") + "x" * (
        ratio is not None), f"{m.p50_ms:.0f}" if timed else "-",
            f"{m.p99_ms:.0f}" if timed else "-", _fmt(out.tail_ms, ".0f"),
            f"{m.slo_attainment:.2%}" if out.feasible is not None else "n/a", met,
            f"{m.padding_overhead:.1%}", f"{m.invocations:.0f}", f"{m.mean_batch_size:.2f}")


def format_comparison(comparison: Comparison, workload: str, backend: str) -> str:
    """The comparison table, every figure marked simulated."""
    rows = [_COLUMNS, *(_row(comparison, n) for n in POLICIES)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["mbs compare: every figure below is SIMULATED (modelled by the discrete-event "
             "simulator on the workload's exact trace), none measured",
             f"  workload: {workload}", f"  backend:  {backend}",
             f"  SLO: p{comparison.percentile:g} <= {comparison.slo_ms:g} ms, "
             f"mode {comparison.mode}", ""]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths, strict=True))))
    ratios = comparison.ratios()
    lines += ["", f"$/1M: simulated batching cost (infer function + queue) per 1M requests; "
                  f"vs MBS: that cost over MBS's; tail: simulated p{comparison.percentile:g}",
              f"MBS / oracle floor (simulated cost): {_fmt(ratios['mbs_vs_oracle'], '.2f')}x "
              "(SLO-blind: no plan that meets the SLO reaches it)"]
    for key, label in (("mbs_vs_bound", "MBS / lower bound"),
                       ("mbs_vs_clairvoyant", "MBS / clairvoyant"),
                       ("clairvoyant_vs_bound", "clairvoyant / lower bound (the bracket)")):
        pair = ratios[key]
        lines.append(f"{label}: end to end {_fmt(pair['end_to_end'], '.2f')}x, "
                     f"infer {_fmt(pair['infer'], '.2f')}x")
    for name in ("mbs", "batch"):
        search = comparison.outcomes[name].search
        if search is not None:
            lines.append(f"search for {_NAMES[name]}: {search.evaluations} evaluations in "
                         f"{search.wall_s:.1f} s wall")
    for name in POLICIES:
        out = comparison.outcomes[name]
        settings = ", ".join(f"{k}={v}" for k, v in out.settings.items())
        lines.append(f"{_NAMES[name]}: {out.tuning} ({settings})")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> None:
    check_slo(args.slo_ms, args.percentile)
    if args.sweep_evals is not None and args.sweep_evals < 1:
        raise ValueError(f"--sweep-evals must be >= 1, got {args.sweep_evals}")
    _sweep_slos(args.sweep_slos)  # fail before the searches, not after


def _sweep_slos(text: str) -> tuple[float, ...]:
    try:
        slos = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--sweep-slos must be comma-separated ms, got {text!r}") from None
    if not slos or any(not s > 0 for s in slos):
        raise ValueError(f"--sweep-slos must be positive ms, got {text!r}")
    return tuple(sorted(slos))


def _say(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def _tuning(args: argparse.Namespace, backend: Any, tuner: Tuner | None,
            settings: CompareSettings | None) -> tuple[Tuner, CompareSettings]:
    """The Bayesian search and its space's settings, unless a tuner is injected."""
    if tuner is not None:
        return tuner, settings or CompareSettings(
            max_buffers=args.max_buffers, evals=args.evals or CompareSettings.evals,
            **({"memory_choices_mb": backend.memory_choices_mb}
               if backend.memory_choices_mb else {}))
    from optimizer.compare.tuning import search_settings, search_tuner

    return (search_tuner(seed=args.seed, progress=not args.json),
            settings or search_settings(backend, args.max_buffers, args.evals, args.mode,
                                        args.arch))


def run(args: argparse.Namespace, tuner: Tuner | None = None,
        settings: CompareSettings | None = None) -> int:
    """The command's body; `tuner` (with `settings`) replaces the Bayesian search in tests."""
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import build_workload

    _check(args)
    backend = make_backend(args.backend, args.profile, load_pricing(args.pricing))
    spec = workload_spec(args)
    workload = build_workload(spec)
    bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, args.slo_ms,
                      args.percentile, args.mode, args.arch)
    tuner, settings = _tuning(args, backend, tuner, settings)
    _say(f"simulating the Triton-style and no-batching grids on {len(bench.lengths)} requests")
    grids = BaselineGrids.build(bench, settings.memory_choices_mb)
    result = compare(bench, tuner, settings, progress=_say, grids=grids)
    report = result.to_dict(spec.describe(), backend)
    if args.plots:
        from optimizer.compare.plots import write_plots

        sweep_settings = replace(settings, evals=args.sweep_evals or max(settings.evals // 3, 1))
        points = sweep(bench, tuner, sweep_settings, _sweep_slos(args.sweep_slos), grids, _say)
        subtitle = f"{spec.describe()}; {backend.kind.value} backend"
        paths = write_plots(result, points, Path(args.plots), subtitle)
        report["plots"] = {"files": [str(p) for p in paths],
                           "sweep": [p.to_dict() for p in points],
                           "sweep_evals": sweep_settings.evals}
        _say("plots (simulated): " + ", ".join(str(p) for p in paths))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_comparison(result, spec.describe(), backend.describe()))
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs compare` to the subcommands."""
    parser = sub.add_parser(
        "compare", help="MBS against every baseline for one workload and SLO, simulated",
        description="Optimize MBS (the Bayesian search over up to --max-buffers buffers) and "
        "every baseline (BATCH: the same search with one buffer; a Triton-style batcher and no "
        "batching: small grids; the oracle floor) for the same workload and SLO, replay them "
        "all in the simulator on the same trace and print one table. Every figure is simulated.")
    add_slo_flag(parser)
    add_percentile_flag(parser)
    parser.add_argument("--mode", choices=MODES, default="dispatcher",
                        help="dispatch mode MBS and BATCH plan for (default dispatcher); the "
                             "Triton-style and no-batching baselines dispatch per request "
                             "either way")
    add_arch_flag(parser)
    parser.add_argument("--backend", choices=[b.value for b in BackendType], default="lambda",
                        help="lambda: CPU Lambda functions (GB-second billing); gpu: a "
                             "GPU-backed function billed per second, planned with the GPU "
                             "profile (default: optimizer/profiles/gpu.json, fitted to the "
                             "reference H100 timings)")
    add_model_flags(parser, profile_default="the shipped one for the backend")
    add_max_buffers_flag(parser)
    parser.add_argument("--evals", type=int, default=None, metavar="N",
                        help=f"search evaluations per policy (default {DEFAULT_EVALS})")
    add_json_flag(parser, "print the documented JSON object")
    parser.add_argument("--plots", metavar="DIR", help="write PNG charts here (runs an SLO "
                        "sweep too, re-optimizing at each SLO)")
    parser.add_argument("--sweep-slos", default=",".join(f"{s:g}" for s in
                                                          DEFAULT_SWEEP_SLOS_MS),
                        metavar="MS,MS", help="SLOs of the cost-vs-SLO chart (default "
                        "%(default)s)")
    parser.add_argument("--sweep-evals", type=int, default=None, metavar="N",
                        help="search evaluations per policy at each swept SLO (default a third "
                             "of --evals)")
    add_workload_flags(parser, duration=None)
    return parser
