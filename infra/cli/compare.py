"""`mbs compare`: MBS against every baseline on one workload and SLO, all simulated.

`--backend lambda` (the default) compares every baseline on CPU Lambda (this module);
`--backend gpu` or `--backend lambda,gpu` compares MBS and BATCH on each backend at each rate,
gpu plans on the LMI fleet billed by instance time (infra/cli/compare_backends.py).
"""

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
    resolve_profile,
    workload_spec,
)
from optimizer.compare.comparison import (
    CompareSettings,
    Comparison,
    RatePoint,
    compare,
    rates_to_dict,
    sweep,
)
from optimizer.compare.grid import BaselineGrids
from optimizer.compare.tuning import DEFAULT_EVALS
from optimizer.compare.workbench import MODES, Tuner, Workbench
from optimizer.platform.backends import make_backend
from optimizer.platform.pricing import load_pricing

DEFAULT_SWEEP_SLOS_MS = (250.0, 500.0, 1000.0, 2000.0)
_NAMES = {"mbs": "MBS", "batch": "BATCH tuned", "no_batching": "no batching",
          "triton": "Triton-style", "plain_lambda": "plain Lambda",
          "oracle": "oracle floor (SLO-blind)", "bound": "lower bound (SLO)",
          "clairvoyant": "clairvoyant", "mbs_online": "MBS online (ref.)"}
_COLUMNS = ("policy", "e2e $/1M", "infer $/1M", "batching $/1M", "vs MBS", "p50 ms", "p99 ms",
            "tail ms", "in SLO", "SLO met", "padding", "invocations", "batch")
_ITEMS = {"infer_compute_usd": "infer GB-s", "infer_request_usd": "infer req",
          "queue_usd": "SQS", "api_usd": "HTTP API", "ingest_usd": "front fns",
          "store_usd": "DynamoDB", "front_door_usd": "Cloud Map",
          "dispatcher_compute_usd": "Fargate", "dispatcher_ipv4_usd": "IPv4",
          "queue_polling_usd": "SQS poll", "logs_usd": "logs", "egress_usd": "egress"}


def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _row(comparison: Comparison, name: str) -> tuple[str, ...]:
    out = comparison.outcomes[name]
    m = out.metrics
    ratio = comparison.ratios()["cost_vs_mbs"].get(name)
    met = {True: "yes", False: "NO", None: "n/a"}[out.feasible]
    timed = name != "bound"  # the bound is computed, not simulated: it has no latencies
    return (_NAMES[name], f"{m.end_to_end_cost_per_million_usd:.3f}",
            f"{m.infer_cost_per_million_usd:.3f}", f"{m.batching_cost_per_million_usd:.3f}",
            _fmt(ratio, ".2f") + "x" * (ratio is not None),
            f"{m.p50_ms:.0f}" if timed else "-", f"{m.p99_ms:.0f}" if timed else "-",
            _fmt(out.tail_ms, ".0f"),
            f"{m.slo_attainment:.2%}" if out.feasible is not None else "n/a", met,
            f"{m.padding_overhead:.1%}", f"{m.invocations:.0f}", f"{m.mean_batch_size:.2f}")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                      for j, (c, w) in enumerate(zip(row, widths, strict=True))) for row in rows]


def _line_items(comparison: Comparison) -> list[str]:
    """Each policy's end-to-end cost per 1M requests by line item (the items not all zero)."""
    per_million = {}
    names = comparison.names
    for name in names:
        m = comparison.outcomes[name].metrics
        scale = 1e6 / m.requests if m.requests else 0.0
        per_million[name] = {k: v * scale for k, v in m.cost.line_items().items()}
    items = [k for k in _ITEMS if any(per_million[n][k] for n in names)]
    rows = [("$/1M by line item", *(_ITEMS[k] for k in items)),
            *((_NAMES[n], *(f"{per_million[n][k]:.3f}" for k in items)) for n in names)]
    return _table(rows)


def format_comparison(comparison: Comparison, workload: str, backend: str) -> str:
    """The comparison table, every figure marked simulated."""
    rows = [_COLUMNS, *(_row(comparison, n) for n in comparison.names)]
    lines = ["mbs compare: every figure below is SIMULATED (modelled by the discrete-event "
             "simulator on the workload's exact trace), none measured",
             f"  workload: {workload}", f"  backend:  {backend}",
             f"  SLO: p{comparison.percentile:g} <= {comparison.slo_ms:g} ms, "
             f"mode {comparison.mode}", ""]
    lines += _table(rows)
    lines += ["", *_line_items(comparison)]
    ratios = comparison.ratios()
    lines += ["", "e2e $/1M: simulated end-to-end cost per 1M requests (every line item of the "
                  "policy's request path, the dispatcher fleet included); infer: the inference "
                  "function alone (GB-seconds with INIT, request fees); batching: infer + queue, "
                  "what batching changes; vs MBS: end-to-end cost over MBS's; tail: simulated "
                  f"p{comparison.percentile:g}; the lower bound is computed, not simulated",
              f"MBS / oracle floor (simulated end-to-end cost): "
              f"{_fmt(ratios['mbs_vs_oracle'], '.2f')}x (SLO-blind: no plan that meets the SLO "
              "reaches it)"]
    for key, label in (("mbs_vs_bound", "MBS / lower bound"),
                       ("mbs_vs_clairvoyant", "MBS / clairvoyant"),
                       ("clairvoyant_vs_bound", "clairvoyant / lower bound (the bracket)")):
        pair = ratios[key]
        lines.append(f"{label}: end to end {_fmt(pair['end_to_end'], '.2f')}x, "
                     f"infer {_fmt(pair['infer'], '.2f')}x")
    if "mbs_online" in comparison.outcomes:
        lines.append(f"MBS on the bulk path / MBS on the online path (simulated end-to-end "
                     f"cost): {_fmt(ratios.get('mbs_vs_online'), '.2f')}x; MBS online (ref.) "
                     "is MBS planned in dispatcher mode for the same workload and SLO")
    for name in ("mbs", "batch", "mbs_online"):
        if name not in comparison.outcomes:
            continue
        search = comparison.outcomes[name].search
        if search is not None:
            lines.append(f"search for {_NAMES[name]}: {search.evaluations} evaluations in "
                         f"{search.wall_s:.1f} s wall")
    for name in comparison.names:
        out = comparison.outcomes[name]
        settings = ", ".join(f"{k}={v}" for k, v in out.settings.items())
        lines.append(f"{_NAMES[name]}: {out.tuning} ({settings})")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> None:
    if not args.slo_ms > 0:
        raise ValueError(f"--slo-ms must be > 0, got {args.slo_ms}")
    if not 0 < args.percentile < 100:
        raise ValueError(f"--percentile must be in (0, 100), got {args.percentile}")
    if args.sweep_evals is not None and args.sweep_evals < 1:
        raise ValueError(f"--sweep-evals must be >= 1, got {args.sweep_evals}")
    _sweep_slos(args.sweep_slos)  # fail before the searches, not after
    _rate_scales(args.rate_scale)


def _rate_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--rate-scale must be comma-separated numbers, got {text!r}") from None
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"--rate-scale must be positive, got {text!r}")
    return tuple(sorted(set(scales)))


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


def _at_rate(args: argparse.Namespace, backend: Any, tuner: Tuner,
             settings: CompareSettings, rate_scale: float,
             prefix: str) -> tuple[RatePoint, dict[str, Any]]:
    """One comparison on the workload at rate_scale, and its JSON object (with any plots)."""
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import build_workload

    spec = workload_spec(argparse.Namespace(**{**vars(args), "rate_scale": rate_scale}))
    workload = build_workload(spec)
    bench = Workbench(workload.arrivals_s, token_lengths(workload), backend, args.slo_ms,
                      args.percentile, args.mode, args.arch)
    _say(f"simulating the Triton-style and no-batching grids on {len(bench.lengths)} requests"
         f" (rate x{rate_scale:g})")
    grids = BaselineGrids.build(bench, settings.memory_choices_mb)
    result = compare(bench, tuner, settings, progress=_say, grids=grids)
    report = result.to_dict(spec.describe(), backend, rate_scale)
    if args.plots:
        from optimizer.compare.plots import write_plots

        sweep_settings = replace(settings, evals=args.sweep_evals or max(settings.evals // 3, 1))
        points = sweep(bench, tuner, sweep_settings, _sweep_slos(args.sweep_slos), grids, _say)
        subtitle = f"{spec.describe()}; {backend.kind.value} backend"
        paths = write_plots(result, points, Path(args.plots), subtitle, prefix)
        report["plots"] = {"files": [str(p) for p in paths],
                           "sweep": [p.to_dict() for p in points],
                           "sweep_evals": sweep_settings.evals}
        _say("plots (simulated): " + ", ".join(str(p) for p in paths))
    return RatePoint(rate_scale, spec.describe(), result), report


def _render_rates(points: list[RatePoint]) -> str:
    """End-to-end cost per 1M requests at each rate: MBS, BATCH and plain Lambda."""
    rows = [("rate", "MBS e2e $/1M", "BATCH e2e $/1M", "plain Lambda e2e $/1M",
             "MBS / plain Lambda", "MBS / BATCH")]
    for p in points:
        c = p.comparison
        mbs, batch, plain = (c.cost_usd(n) for n in ("mbs", "batch", "plain_lambda"))
        rows.append((f"{p.rate_scale:g}x", f"{mbs:.3f}", f"{batch:.3f}", f"{plain:.3f}",
                     _fmt(mbs / plain if plain else None, ".2f"),
                     _fmt(mbs / batch if batch else None, ".2f")))
    return "\n".join(["", "end-to-end cost against the request rate (SIMULATED):", *_table(rows)])


def run(args: argparse.Namespace, tuner: Tuner | None = None,
        settings: CompareSettings | None = None) -> int:
    """The command's body; `tuner` (with `settings`) replaces the Bayesian search in tests."""
    _check(args)
    from infra.cli.compare_backends import backend_kinds

    kinds = backend_kinds(args.backend)
    scales = _rate_scales(args.rate_scale)
    if kinds != ("lambda",):  # the gpu backend is the LMI fleet: MBS and BATCH per backend
        from infra.cli import compare_backends

        return compare_backends.run(args, kinds, scales)
    backend = make_backend(args.backend, resolve_profile(args.profile, "lambda"),
                           load_pricing(args.pricing))
    tuner, settings = _tuning(args, backend, tuner, settings)
    points, reports = [], []
    for scale in scales:
        prefix = "" if len(scales) == 1 else f"rate{scale:g}x_"
        point, report = _at_rate(args, backend, tuner, settings, scale, prefix)
        points.append(point)
        reports.append(report)
    if len(points) == 1:
        out = reports[0]
    else:
        out = {**rates_to_dict(points, backend), "comparisons": reports}
        if args.plots:
            from optimizer.compare.plots import cost_vs_rate

            subtitle = f"{points[0].workload}; {backend.kind.value} backend"
            path = cost_vs_rate(points, Path(args.plots) / "cost_vs_rate.png", subtitle)
            out["plots"] = {"files": [str(path)]}
            _say(f"plot (simulated): {path}")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print("\n\n".join(format_comparison(p.comparison, p.workload, backend.describe())
                        for p in points))
    if len(points) > 1:
        print(_render_rates(points))
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs compare` to the subcommands."""
    parser = sub.add_parser(
        "compare", conflict_handler="resolve",  # --rate-scale takes a list here (below)
        help="MBS against every baseline for one workload and SLO, simulated",
        description="Optimize MBS (the Bayesian search over up to --max-buffers buffers) and "
        "every baseline (BATCH: the same search with one buffer; a Triton-style batcher, no "
        "batching and a plain Lambda per request: small grids) for the same workload and SLO, "
        "replay them all in the simulator on the same trace and print one table, with the "
        "floors: the SLO-blind oracle, a proven lower bound on any plan that meets the SLO "
        "(computed) and a clairvoyant schedule that knows the whole trace (simulated); the two "
        "bracket the best possible cost. Every other figure is simulated.")
    add_slo_flag(parser)
    add_percentile_flag(parser)
    parser.add_argument("--mode", choices=MODES, default="dispatcher",
                        help="dispatch mode MBS and BATCH plan for (default dispatcher); the "
                             "Triton-style and no-batching baselines dispatch per request "
                             "either way. managed: MBS and BATCH on the bulk path (the SQS "
                             "event source mapping's windows, use SLOs of seconds, e.g. "
                             "--slo-ms 30000), with MBS planned for the online path beside "
                             "them for reference")
    add_arch_flag(parser)
    parser.add_argument("--backend", default="lambda", metavar="lambda|gpu|lambda,gpu",
                        help="lambda (default): CPU Lambda functions (GB-second billing), "
                             "every baseline; gpu: a GPU-backed function on Lambda Managed "
                             "Instances, a fleet billed per instance-second, planned with the "
                             "GPU profile (default: optimizer/profiles/gpu.json, fitted to the "
                             "reference H100 timings, moved to each instance type's GPU); "
                             "lambda,gpu: MBS and BATCH on both at each --rate-scale, and the "
                             "rate where the cheaper backend changes. With two backends, "
                             "--profile takes CPU,GPU files or a shipped encoder's name "
                             "(a float16 GPU function: --profile minilm,minilm-fp16; gpu plans "
                             "record the profile's dtype in meta.gpu_dtype)")
    parser.add_argument("--instance-types", metavar="T,T", default=None,
                        help="gpu: the instance types the fleet search tries (default: every "
                             "catalogued one, optimizer/platform/gpu_instances.py)")
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
    parser.add_argument("--rate-scale", default="1", metavar="X,X",
                        help="multiply the arrival rate by each X (the trace's times divided "
                             "by X) and compare at each: one comparison per rate, and with "
                             "--plots a chart of end-to-end cost against the rate (default 1)")
    return parser
