"""`mbs compare --backend lambda,gpu` (or `--backend gpu`): MBS and BATCH on each backend at
each rate, end to end, and where the cheaper backend changes. The flags are `mbs compare`'s
(infra/cli/compare.py); the report is optimizer/compare/across.py's (its JSON is documented
there)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra.cli.common import resolve_profile, workload_spec
from optimizer.compare.across import (
    ORDER,
    BackendSweep,
    Figures,
    RateWork,
    Searcher,
    run_sweep,
)
from optimizer.compare.tuning import DEFAULT_EVALS
from optimizer.platform.backends import BackendError, backend_type, make_backend
from optimizer.platform.latency_model import GPU_FORM, GpuLatencyModel
from optimizer.platform.pricing import load_pricing


def backend_kinds(text: str) -> tuple[str, ...]:
    """The backends `--backend` names ('lambda', 'gpu' or 'lambda,gpu'), in ORDER."""
    kinds = {backend_type(k.strip()).value for k in str(text).split(",") if k.strip()}
    if not kinds:
        raise ValueError(f"--backend must name lambda, gpu or both, got {text!r}")
    return tuple(k for k in ORDER if k in kinds)


def _instance_types(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    from optimizer.platform.gpu_instances import instance

    return tuple(instance(t.strip()).instance_type for t in text.split(",") if t.strip())


def _with_gpu_dtype(search: Searcher, dtype: str) -> Searcher:
    """`search`, its plans recording the dtype their GPU profile ran in (meta.gpu_dtype)."""
    def stamped(work: RateWork, policy: str) -> Figures:
        figures = search(work, policy)
        if figures.plan is None:
            return figures
        plan = replace(figures.plan, meta={**figures.plan.meta, "gpu_dtype": dtype})
        return replace(figures, plan=plan)

    return stamped


def real_searchers(args: argparse.Namespace, kinds: tuple[str, ...],
                   ) -> tuple[dict[str, dict[str, Searcher]], dict[str, dict[str, str]]]:
    """The searchers of each backend, and each backend's profile and model for the report."""
    from optimizer.compare.backend_search import gpu_searcher, lambda_searcher

    pricing = load_pricing(args.pricing)
    evals = args.evals or DEFAULT_EVALS
    searchers: dict[str, dict[str, Searcher]] = {}
    described: dict[str, dict[str, str]] = {}
    for kind in kinds:
        backend = make_backend(kind, resolve_profile(args.profile, kind, kinds), pricing)
        described[kind] = {"profile": backend.profile,
                           "model": getattr(backend.service_ms, "describe", lambda: "")()
                           or backend.service_ms.device}
        if kind == "gpu" and not isinstance(backend.service_ms, GpuLatencyModel):
            raise BackendError(f"the gpu fleet needs a GPU-form profile (form "
                               f"{GPU_FORM!r}, with the GPU's name, to move it to each "
                               f"instance type), got an additive one: {backend.profile}")
        if kind == "lambda":
            search = lambda_searcher(backend, evals, args.seed, args.max_buffers, args.arch)
        else:
            search = _with_gpu_dtype(gpu_searcher(
                backend.service_ms, pricing, evals, args.seed, args.max_buffers,
                _instance_types(args.instance_types)), backend.service_ms.dtype)
        searchers[kind] = {"batch": search, "mbs": search}  # BATCH first: it seeds MBS
        if kind == "gpu":
            searchers[kind]["ragged"] = search
    return searchers, described


def _say(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_sweep(sweep: BackendSweep) -> str:
    """The table: per rate and backend, each policy's end-to-end $/1M and instance-hours."""
    policies = sorted({p for r in sweep.rows for f in r.figures.values() for p in f},
                      key=lambda p: ("mbs", "batch", "ragged").index(p)
                      if p in ("mbs", "batch", "ragged") else 9)
    head = ["rate", "backend"]
    for p in policies:
        head += [f"{p.upper()} e2e $/1M", f"{p.upper()} inst-h", f"{p.upper()} padding"]
    rows = [tuple(head)]
    for r in sweep.rows:
        for backend, figures in r.figures.items():
            row = [f"{r.rate_scale:g}x", backend]
            for p in policies:
                f = figures.get(p)
                m = f.metrics if f else None
                row += [_fmt(f.cost_usd if f else None, ".3f") + ("" if not f or f.feasible
                                                                   else " (SLO missed)"),
                        _fmt(m.instance_hours if m else None, ".2f"),
                        _fmt(m.padding_overhead if m else None, ".1%")]
            rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"mbs compare across backends: every figure SIMULATED (rate mode "
             f"{sweep.rate_mode}; SLO p{sweep.percentile:g} <= {sweep.slo_ms:g} ms)"]
    lines += [f"  {name}: {d['model']} ({d['profile']})" for name, d in sweep.backends.items()]
    lines.append("")
    lines += ["  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    lines.append("")
    for p in ("mbs", "batch"):
        found = sweep.crossovers(p)
        cheaper = ", ".join(f"{r.rate_scale:g}x: {r.cheaper(p) or '-'}" for r in sweep.rows)
        lines.append(f"cheaper backend for {p.upper()} (end to end): {cheaper}")
        lines += [f"  crossover for {p.upper()}: {c.below} -> {c.above} at about "
                  f"{c.rate_scale:.3g}x the trace's rate (interpolated between {c.bracket[0]:g}x "
                  f"and {c.bracket[1]:g}x)" for c in found]
    lines.append("e2e: end-to-end cost per 1M requests on the online path (every line item); "
                 "inst-h: the GPU fleet's instance-hours (billed instance time); gpu figures "
                 "on a GPU other than the profile's are scaled estimates")
    return "\n".join(lines)


def run(args: argparse.Namespace, kinds: tuple[str, ...], scales: tuple[float, ...],
        searchers: dict[str, dict[str, Searcher]] | None = None,
        described: dict[str, dict[str, str]] | None = None) -> int:
    """The sweep over rates and backends; `searchers` replace the real searches in tests."""
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import build_workload

    if searchers is None:
        searchers, described = real_searchers(args, kinds)
    works = []
    for scale in scales:
        spec = workload_spec(argparse.Namespace(**{**vars(args), "rate_scale": scale}))
        workload = build_workload(spec)
        works.append(RateWork(scale, spec.describe(), workload.arrivals_s,
                              token_lengths(workload), args.slo_ms, args.percentile))
        _say(f"workload at x{scale:g}: {workload.count} requests ({args.rate_mode})")
    sweep = run_sweep(works, searchers, described or {k: {"profile": "", "model": ""}
                                                      for k in kinds},
                      args.rate_mode, None if args.json else _say)
    out: dict[str, Any] = sweep.to_dict()
    if args.plots:
        from optimizer.compare.plots import cost_vs_rate_backends

        path = cost_vs_rate_backends(sweep, Path(args.plots) / "cost_vs_rate_backends.png",
                                     works[0].workload.replace(f" x{scales[0]:g} rate", ""))
        out["plots"] = {"files": [str(path)]}
        _say(f"plot (simulated): {path}")
    print(json.dumps(out, indent=2) if args.json else format_sweep(sweep))
    return 0
