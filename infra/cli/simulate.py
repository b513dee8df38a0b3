"""`mbs simulate`: replay a workload through a plan in the discrete-event simulator."""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra.cli.common import (
    add_json_flag,
    add_model_flags,
    add_plan_flag,
    add_slo_flag,
    add_workload_flags,
    check_slo,
    resolve_plan,
    workload_spec,
)
from optimizer.platform.metrics import BufferMetrics, PlanMetrics
from optimizer.platform.pricing import load_pricing
from optimizer.sim.engine import simulate
from optimizer.sim.policy import PolicyOptions, RequestAttrs, policy_names
from optimizer.workload.lengths import token_lengths
from optimizer.workload.workloads import build_workload

_COLUMNS = ("buffer", "requests", "invocations", "batch", "padding", "p50 ms", "p95 ms",
            "p99 ms", "in SLO", "cold", "$/1M batching", "$/1M end to end")


def _row(name: str, m: BufferMetrics) -> tuple[str, ...]:
    return (name, f"{m.requests:.0f}", f"{m.invocations:.0f}", f"{m.mean_batch_size:.2f}",
            f"{m.padding_overhead:.1%}", f"{m.p50_ms:.0f}", f"{m.p95_ms:.0f}", f"{m.p99_ms:.0f}",
            f"{m.slo_attainment:.2%}", f"{m.cold_starts:.0f}",
            f"{m.batching_cost_per_million_usd:.3f}", f"{m.end_to_end_cost_per_million_usd:.3f}")


def format_metrics(metrics: PlanMetrics, title: str) -> str:
    """A table: one row per buffer, then the simulated totals."""
    rows = [_COLUMNS, *(_row(n, m) for n, m in metrics.per_buffer.items()),
            _row("simulated total", metrics)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [title]
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths, strict=True))))
    cost = metrics.cost
    items = ", ".join(f"{k.removesuffix('_usd')} {v:.6f}" for k, v in cost.nonzero_items().items())
    lines.append(f"simulated cost (USD, {cost.path or 'mixed'} path): {items}; end to end "
                 f"{cost.total_usd:.6f}")
    if metrics.low_traffic_share > 0:
        lines.append(f"low traffic (managed mode): {metrics.low_traffic_share:.1%} of requests "
                     f"found their poller's window lapsed; AWS documents that Lambda may then "
                     f"wait up to 20 s: p99 bound {metrics.low_traffic_p99_bound_ms:.0f} ms")
    return "\n".join(lines)


_COMPARED = ("cost_per_million_usd", "p50_ms", "p95_ms", "p99_ms", "slo_attainment",
             "padding_overhead", "invocations")


def relative_errors(estimated: dict[str, Any], simulated: dict[str, Any]) -> dict[str, Any]:
    """(estimated - simulated) / simulated per figure; None where the simulated value is 0."""
    return {k: (estimated[k] - simulated[k]) / simulated[k] if simulated[k] else None
            for k in _COMPARED}


def format_side_by_side(estimated: dict[str, Any], simulated: dict[str, Any]) -> str:
    """The estimator's whole-plan figures beside the simulator's, with relative errors."""
    errors = relative_errors(estimated, simulated)
    lines = ["", f"{'figure':<22}{'estimated':>14}{'simulated':>14}{'rel. error':>12}"]
    for key in _COMPARED:
        err = errors[key]
        lines.append(f"{key:<22}{estimated[key]:>14.4g}{simulated[key]:>14.4g}"
                     f"{'-' if err is None else f'{err:+.1%}':>12}")
    lines.append("estimated: the analytical estimator (modelled); simulated: the discrete-event "
                 "simulator on the exact trace (modelled)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Simulate the plan on the workload; print the table beside the estimator's figures."""
    from optimizer.estimator.estimate import EstimatorContext, estimate
    from optimizer.platform.latency_model import load_profile

    check_slo(args.slo_ms)
    plan = resolve_plan(args.plan)
    spec = workload_spec(args)
    workload = build_workload(spec)
    _, model = load_profile(args.profile)
    # Every request carries the SLO as its deadline (the deadline policy's input).
    options = PolicyOptions(name=args.policy, attrs=RequestAttrs(
        slo_ms=[args.slo_ms] * workload.count))
    lengths = token_lengths(workload)
    pricing = load_pricing(args.pricing)
    result = simulate(plan, workload.arrivals_s, lengths, model, pricing, args.slo_ms,
                      policy=options)
    context = EstimatorContext.build(workload.arrivals_s, lengths, model, pricing, args.slo_ms)
    estimated = estimate(plan, context).to_dict()
    simulated = result.metrics.to_dict()
    if args.json:
        print(json.dumps({"estimated": estimated, "simulated": simulated,
                          "relative_error": relative_errors(estimated, simulated)}, indent=2))
    else:
        print(format_metrics(result.metrics, f"simulated: plan {plan.name!r}, policy "
                                             f"{args.policy or plan.policy} on "
                                             f"{spec.describe()}, SLO {args.slo_ms:g} ms"))
        print(format_side_by_side(estimated, simulated))
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs simulate` to the subcommands."""
    parser = sub.add_parser("simulate", help="replay a workload through a plan, simulated",
                            description="Replay the workload's exact arrivals and token lengths "
                            "through the plan's buffers under Lambda's rules (concurrency, cold "
                            "starts, 1 ms billing) and report cost and latency, beside the "
                            "analytical estimator's figures and their relative error.")
    add_plan_flag(parser)
    add_slo_flag(parser, "latency SLO for the attainment figure (default 1000)")
    add_model_flags(parser)
    parser.add_argument("--policy", choices=policy_names(),
                        help="batching policy (default: the plan's)")
    add_json_flag(parser, 'print {"estimated": ..., "simulated": ..., "relative_error": ...}')
    add_workload_flags(parser, duration=None)
    return parser
