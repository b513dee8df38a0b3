"""`mbs optimize`: search a plan for a workload and an SLO, re-check it in the simulator, write it.

The plan file's meta records what the plan was made for (workload, profile, pricing, SLO, mode,
seed) and what it is predicted to do (modelled by the estimator, simulated by the replay).
With --gears, meta["gears"] holds one batching per load level (buffers/gears.py).
Backend: by default the estimator first says which backend is cheaper end to end for this
workload (optimizer/search/backend_choice.py: short estimator-only searches, modelled), prints
why in one line, and the plan is searched for that backend; `--backend lambda|gpu` forces one.
A gpu plan runs on an LMI fleet (buffers and fleet bounds searched on each instance type,
optimizer/search/gpu.py), billed by instance time; its meta["gpu_dtype"] is the dtype its GPU
profile was measured in (float16 for `--profile minilm-fp16`), which the template deploys.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from buffers.plan import DEFAULT_GPU_DTYPE, Plan
from buffers.plan_files import save_plan
from infra.cli.common import (
    SHIPPED_ENCODERS,
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
from optimizer.platform.latency_model import DEFAULT_CPU_PROFILE
from optimizer.platform.metrics import PlanMetrics

DEFAULT_EVALS = 3000  # plan estimates: 60 GP rounds, then the polish; 15-30 s here
_FIGURES = (("cost $/1M requests (end to end)", "end_to_end_cost_per_million_usd", "{:.4f}"),
            ("cost $/1M requests (infer)", "infer_cost_per_million_usd", "{:.4f}"),
            ("cost $/1M requests (batching)", "batching_cost_per_million_usd", "{:.4f}"),
            ("p50 ms", "p50_ms", "{:.0f}"), ("p95 ms", "p95_ms", "{:.0f}"),
            ("p99 ms", "p99_ms", "{:.0f}"),
            ("p99 bound, low-traffic wait ms", "low_traffic_p99_bound_ms", "{:.0f}"),
            ("SLO attainment", "slo_attainment", "{:.2%}"),
            ("padding overhead", "padding_overhead", "{:.1%}"),
            ("invocations", "invocations", "{:.0f}"), ("mean batch", "mean_batch_size", "{:.2f}"),
            ("cold starts", "cold_starts", "{:.0f}"))


class _Bars:
    """A tqdm bar on stderr over the budget of plan estimates (none if stderr is no terminal)."""

    def __init__(self, desc: str = "search") -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int, best: float | None) -> None:
        from tqdm import tqdm

        if self.bar is None or done < self.bar.n:  # a new search (the next gear)
            self.close()
            self.bar = tqdm(total=total, desc=self.desc, unit="plan", file=sys.stderr,
                            leave=False, disable=None)
        self.bar.set_postfix_str("best (modelled) " + (f"${best:.4f}/1M" if best else "none"),
                                 refresh=False)
        self.bar.update(min(done, total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _profile_meta(path: str | None, profile: dict[str, Any]) -> dict[str, Any]:
    keys = ("device", "device_name", "date", "torch", "threads", "model")
    return {"path": str(path or DEFAULT_CPU_PROFILE), **{k: profile.get(k) for k in keys}}


def plan_meta(args: argparse.Namespace, description: str, arrivals_s: np.ndarray,
              profile: dict[str, Any], pricing: Any, result: Any) -> dict[str, Any]:
    """What the plan was made for and what it is predicted to do."""
    span_s = float(arrivals_s[-1] - arrivals_s[0]) if arrivals_s.size > 1 else 0.0
    return {
        "generated_by": "mbs optimize",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "workload": {"description": description, "requests": int(arrivals_s.size),
                     "span_s": span_s},
        "profile": _profile_meta(args.profile, profile),
        "pricing": {"path": args.pricing, "as_of": pricing.as_of, "region": pricing.region,
                    "version": pricing.version, "arch": args.arch},
        "slo_ms": args.slo_ms, "percentile": args.percentile, "mode": args.mode,
        "arch": args.arch, "max_buffers": args.max_buffers, "seed": args.search_seed,
        "search": {"budget": args.evals, "evaluations": result.evaluations,
                   "wall_s": round(result.wall_s, 3), "message": result.message,
                   "rechecks": len(result.rechecks)},
        "predicted": {"modelled": result.estimated.to_dict(),
                      "simulated": result.simulated.to_dict()},
    }


def format_plan(plan: Plan, modelled: PlanMetrics, simulated: PlanMetrics,
                head: list[str]) -> str:
    """The plan's buffers, then modelled against simulated figures."""
    lines = [*head, f"plan: {len(plan.buffers)} buffer(s)",
             "  buffer       lengths   batch  timeout ms  memory MB  concurrency  mode"]
    for s in plan.buffers:
        lines.append(f"  {s.name:<12} {s.min_length:>3}-{s.max_length:<4} {s.max_batch_size:>6} "
                     f"{s.timeout_ms:>11} {s.memory_mb:>10} {s.max_concurrency:>12}  "
                     f"{s.dispatch_mode.value}")
    lines.append(f"  {'figure':<30} {'modelled':>12} {'simulated':>12}")
    for label, attr, fmt in _FIGURES:
        lines.append(f"  {label:<30} {fmt.format(getattr(modelled, attr)):>12} "
                     f"{fmt.format(getattr(simulated, attr)):>12}")
    return "\n".join(lines)


def _gears(args: argparse.Namespace, plan: Plan, sim: Any, space: Any) -> Any:
    """One plan per load level; a gpu plan's gears also size its fleet (fleet_gears.py)."""
    from optimizer.search.fleet_gears import plan_fleet_gears
    from optimizer.search.gears import plan_gears

    search, bars = (plan_fleet_gears if plan.backend == "gpu" else plan_gears), _Bars("gears")
    try:
        return search(plan, sim, space, args.slo_ms, args.percentile,
                      max(args.evals // 4, 50), args.search_seed, progress=bars)
    finally:
        bars.close()


def _gear_lines(gears: Any, percentile: float) -> list[str]:
    cfg = gears.gears.config
    lines = [f"gears: {cfg.gears} (switch up at {', '.join(f'{r:.2f}' for r in cfg.up_rps)} "
             f"req/s, down at {', '.join(f'{r:.2f}' for r in cfg.down_rps)} req/s, "
             f"dwell {cfg.min_dwell_s:g} s)"]
    for g, plan in enumerate(gears.gears.plans):
        fleet = f"; fleet {plan.min_instances}-{plan.max_instances} x {plan.instance_type}" \
            if plan.backend == "gpu" else ""
        lines.append(f"  gear {g}: {gears.requests[g]} requests; batch/timeout ms " + ", ".join(
            f"{s.max_batch_size}/{s.timeout_ms}" for s in plan.buffers) + fleet)
    def run(m: PlanMetrics, p_ms: float) -> str:
        hours = "" if m.instance_hours is None else f", {m.instance_hours:.2f} instance-hours"
        return f"${m.cost_per_million_usd:.4f}/1M, p{percentile:g} {p_ms:.0f} ms{hours}"

    lines.append(f"  simulated on the whole trace: static "
                 f"{run(gears.static, gears.static_percentile_ms)}; geared "
                 f"{run(gears.geared, gears.geared_percentile_ms)}"
                 + ("" if gears.meets_slo else " (misses the SLO: gears not written)"))
    return lines


def _choose(args: argparse.Namespace, arrivals_s: np.ndarray, lengths: np.ndarray,
            pricing: Any) -> Any:
    """The backend choice (modelled), or None where --backend forces one or mode is managed."""
    if args.backend != "auto" or args.mode != "dispatcher":
        return None  # the GPU fleet runs the online path only (the bulk path stays on Lambda)
    from optimizer.platform.latency_model import load_profile
    from optimizer.search.backend_choice import choose_backend

    _, cpu = load_profile(_profile_for(args, "lambda"))
    _, gpu = load_profile(_profile_for(args, "gpu"), backend="gpu")
    return choose_backend(arrivals_s, lengths, cpu, gpu, pricing, args.slo_ms,
                          args.percentile, seed=args.search_seed, max_buffers=args.max_buffers,
                          arch=args.arch, instance_types=_types(args))


def _profile_for(args: argparse.Namespace, backend: str) -> str | None:
    """The profile file for `backend`: --gpu-profile, a shipped encoder's or a 'CPU,GPU' pair
    named by --profile, or --profile itself where it is that backend's only one."""
    if backend == "gpu" and args.gpu_profile:
        return resolve_profile(args.gpu_profile, "gpu")
    value = args.profile
    if value is None or "," in value or value in SHIPPED_ENCODERS:
        return resolve_profile(value, backend, ("lambda", "gpu"))
    forced = args.backend if args.backend != "auto" else "lambda"
    return value if backend == forced else None


def _types(args: argparse.Namespace) -> tuple[str, ...] | None:
    return tuple(t.strip() for t in args.instance_types.split(",")) \
        if args.instance_types else None


def _search(args: argparse.Namespace, backend: str, arrivals_s: np.ndarray,
            lengths: np.ndarray, pricing: Any, bars: _Bars) -> tuple[Any, Any, Any, dict]:
    """The search on `backend`: (result, sim inputs, space, profile) of the winner."""
    from optimizer.estimator.estimate import EstimatorContext
    from optimizer.platform.latency_model import load_profile
    from optimizer.search.optimize import optimize
    from optimizer.search.space import make_space
    from optimizer.sim.inputs import SimInputs

    if backend == "gpu":
        from optimizer.compare.across import RateWork
        from optimizer.compare.backend_search import fitted_result, sampled_gpu_search
        from optimizer.search.gpu import gpu_space, service_for

        profile, model = load_profile(_profile_for(args, "gpu"), backend="gpu")
        work = RateWork(args.rate_scale, "", arrivals_s, lengths, args.slo_ms, args.percentile)
        found, note = sampled_gpu_search(work, model, pricing, args.evals, args.search_seed,
                                         instance_types=_types(args),
                                         max_buffers=args.max_buffers, progress=bars)
        result = found.best or min(found.by_type.values(), key=lambda r: r.evaluations)
        if note and result.plan is not None:  # a dense trace: fit the fixed fleet to it all
            result = fitted_result(work, result, model, pricing, note)
        kind = str(result.plan.instance_type) if result.plan else "g6.xlarge"
        sim = SimInputs(arrivals_s, lengths, service_for(model, kind), pricing)
        return result, sim, gpu_space(kind, args.max_buffers, slo_ms=args.slo_ms), profile
    profile, model = load_profile(_profile_for(args, "lambda"))
    space = make_space(args.mode, args.max_buffers, args.arch, slo_ms=args.slo_ms)
    ctx = EstimatorContext.build(arrivals_s, lengths, model, pricing, args.slo_ms,
                                 arch=args.arch)
    sim = SimInputs(arrivals_s, lengths, model, pricing)
    result = optimize(ctx, sim, space, args.slo_ms, args.percentile, args.evals,
                      args.search_seed, bars)
    return result, sim, space, profile


def run(args: argparse.Namespace) -> int:
    """Search, re-check and write the plan; exit 1 when no plan meets the SLO."""
    from dataclasses import replace

    from optimizer.platform.pricing import load_pricing
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import build_workload

    if args.search_seed is None:
        args.search_seed = args.seed
    spec = workload_spec(args)
    workload = build_workload(spec)
    lengths = token_lengths(workload)
    pricing = load_pricing(args.pricing)
    choice = _choose(args, workload.arrivals_s, lengths, pricing)
    backend = choice.backend if choice is not None else (
        "lambda" if args.backend == "auto" else args.backend)
    if choice is not None and not args.json:
        print(f"backend: {choice.reason()}", flush=True)
    bars = _Bars()
    try:
        result, sim, space, profile = _search(args, backend, workload.arrivals_s, lengths,
                                              pricing, bars)
    finally:
        bars.close()
    if not result.feasible:
        print(f"mbs optimize: no plan written: {result.message}", file=sys.stderr)
        return 1
    meta = plan_meta(args, spec.describe(), workload.arrivals_s, profile, pricing, result)
    meta["backend"] = {"name": backend, **({"choice": choice.to_dict()} if choice else
                                           {"forced": args.backend != "auto"})}
    if backend == "gpu":  # the template deploys the function in the dtype it was planned for
        meta["gpu_dtype"] = profile["latency_model"].get("dtype", DEFAULT_GPU_DTYPE)
    plan = replace(result.plan, name="mbs-optimized", meta=meta)
    gears = _gears(args, plan, sim, space) if args.gears else None
    if gears is not None and gears.meets_slo:
        plan.meta["gears"] = gears.meta()
    save_plan(plan, args.out)
    head = [f"mbs optimize: {spec.describe()}, {workload.count} requests; SLO "
            f"p{args.percentile:g} <= {args.slo_ms:g} ms; {args.mode} mode, {args.arch}",
            f"search: {result.evaluations} of {args.evals} plans estimated in "
            f"{result.wall_s:.1f} s (seed {args.search_seed}); {result.message}"]
    if args.json:
        out = {"plan": plan.to_dict(), "out": str(Path(args.out)),
               "search": plan.meta["search"], "backend": plan.meta["backend"],
               **({"gears": gears.meta()} if gears is not None else {})}
        print(json.dumps(out, indent=2, default=str))
    else:
        print(format_plan(plan, result.estimated, result.simulated, head))
        if gears is not None:
            print("\n".join(_gear_lines(gears, args.percentile)))
        print(f"wrote {args.out}")
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs optimize` to the subcommands."""
    parser = sub.add_parser(
        "optimize", help="find the cheapest plan that meets a latency SLO (modelled)",
        description="Bayesian search (GP, scikit-optimize) over the number of buffers, their "
        "length boundaries and each buffer's batch size, timeout and memory, scored by the "
        "analytical estimator; the winner is re-checked by the simulator before it is written.")
    add_slo_flag(parser)
    add_percentile_flag(parser)
    parser.add_argument("--mode", choices=["managed", "dispatcher"], default="dispatcher",
                        help="dispatch mode the plan is for (default dispatcher)")
    add_arch_flag(parser)
    add_max_buffers_flag(parser)
    parser.add_argument("--evals", type=int, default=DEFAULT_EVALS, metavar="N",
                        help=f"budget of plan estimates: 1 in 25 GP ask/tell rounds (8-60), "
                             f"the rest a local polish (default {DEFAULT_EVALS})")
    parser.add_argument("--search-seed", type=int, default=None, metavar="S",
                        help="seed of the search (default: --seed)")
    add_model_flags(parser)
    parser.add_argument("--backend", choices=("auto", "lambda", "gpu"), default="auto",
                        help="auto (default): plan for the backend the estimator finds "
                             "cheaper end to end for this workload (modelled; says why in one "
                             "line); lambda: CPU Lambda; gpu: a GPU fleet on Lambda Managed "
                             "Instances (dispatcher mode only)")
    parser.add_argument("--gpu-profile", metavar="FILE", default=None,
                        help="the GPU profile for auto and gpu, a file or a shipped "
                             f"encoder ({', '.join(SHIPPED_ENCODERS)}; default: --profile if "
                             "it names a shipped encoder, else optimizer/profiles/gpu.json). "
                             "The plan records the profile's dtype (meta.gpu_dtype), which "
                             "the GPU function is deployed to run")
    parser.add_argument("--instance-types", metavar="T,T", default=None,
                        help="gpu: instance types to search (default: every catalogued one)")
    parser.add_argument("--out", required=True, metavar="PLAN",
                        help="where to write the plan (atomically)")
    parser.add_argument("--gears", action="store_true",
                        help="also plan one batching per load level into meta.gears")
    add_json_flag(parser, "print the plan and the search summary as JSON")
    add_workload_flags(parser, duration=None)
    return parser
