"""No silent rounding: what `mbs render` and `mbs deploy` say about dispatcher-mode buffers.

The stack's bulk path (POST /v1/requests) batches with SQS event source mappings, whose windows
are whole seconds (infra/aws/template/buffers.py, esm_settings). A buffer the plan puts in
dispatcher mode therefore runs there with its timeout rounded up. The warning gives each rounded
window and the p99 the simulator models for the plan as deployed, beside the p99 as planned, on
the bundled default workload; `--strict` refuses instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from buffers.plan import DispatchMode, Plan
from infra.aws.template.buffers import deployed_bulk_plan, esm_settings


class RoundingRefused(ValueError):
    """--strict and a plan whose dispatcher-mode buffers would fall back to managed windows."""


@dataclass(frozen=True)
class Rounded:
    """One dispatcher-mode buffer as the bulk path's event source mapping runs it."""

    buffer: str
    timeout_ms: int
    window_s: int
    batch_size: int


@dataclass(frozen=True)
class FallbackReport:
    plan: str
    rounded: tuple[Rounded, ...]
    workload: str
    slo_ms: float
    p99_planned_ms: float
    p99_deployed_ms: float


def rounded_buffers(plan: Plan) -> tuple[Rounded, ...]:
    """The plan's dispatcher-mode buffers with the windows their mappings get. Pure."""
    out = []
    for spec in plan.buffers:
        if spec.dispatch_mode is DispatchMode.DISPATCHER:
            esm = esm_settings(spec)
            out.append(Rounded(spec.name, spec.timeout_ms, esm.window_s, esm.batch_size))
    return tuple(out)


def fallback_report(plan: Plan, slo_ms: float) -> FallbackReport | None:
    """None for a plan with no dispatcher-mode buffer; else the rounding and the modelled p99."""
    rounded = rounded_buffers(plan)
    if not rounded:
        return None
    from optimizer.platform.latency_model import load_profile
    from optimizer.platform.pricing import load_pricing
    from optimizer.sim.engine import simulate
    from optimizer.workload.lengths import token_lengths
    from optimizer.workload.workloads import WorkloadSpec, build_workload

    spec = WorkloadSpec()
    workload = build_workload(spec)
    lengths = token_lengths(workload)
    _, model = load_profile()
    pricing = load_pricing(None)

    def p99(candidate: Plan) -> float:
        result = simulate(candidate, workload.arrivals_s, lengths, model, pricing, slo_ms)
        return result.metrics.p99_ms

    return FallbackReport(plan.name, rounded, f"bundled trace {spec.preset}", slo_ms, p99(plan),
                          p99(deployed_bulk_plan(plan)))


def format_warning(report: FallbackReport) -> str:
    """The loud warning: every rounded window, and the p99 as planned and as deployed."""
    lines = [f"WARNING: plan {report.plan!r} has {len(report.rounded)} dispatcher-mode "
             f"buffer(s); the stack's bulk path (POST /v1/requests) batches them with SQS event "
             f"source mappings, whose windows are whole seconds:"]
    lines += [f"  {r.buffer}: timeout {r.timeout_ms} ms -> MaximumBatchingWindowInSeconds "
              f"{r.window_s} (BatchSize {r.batch_size})" for r in report.rounded]
    verdict = "over" if report.p99_deployed_ms > report.slo_ms else "within"
    lines.append(f"  modelled p99 (simulator, {report.workload}): {report.p99_planned_ms:,.0f} "
                 f"ms as planned -> {report.p99_deployed_ms:,.0f} ms as deployed, {verdict} "
                 f"the {report.slo_ms:,.0f} ms SLO")
    lines.append("  The online path (POST /v1/embeddings) keeps the plan's millisecond timers. "
                 "For the bulk path, deploy a managed plan (--plan managed), or pass --strict "
                 "to refuse plans that round.")
    return "\n".join(lines)


def add_strict_flag(parser: argparse.ArgumentParser) -> None:
    """--strict: refuse, instead of warning, when dispatcher-mode buffers would round."""
    parser.add_argument("--strict", action="store_true",
                        help="refuse a plan whose dispatcher-mode buffers fall back to "
                             "whole-second managed windows on the bulk path (default: warn)")


def check_rounding(plan: Plan, args: argparse.Namespace) -> None:
    """Warn on stderr, or raise RoundingRefused under --strict, when the plan's windows round."""
    if args.strict:
        rounded = rounded_buffers(plan)
        if rounded:
            names = ", ".join(f"{r.buffer} ({r.timeout_ms} ms -> {r.window_s} s)"
                              for r in rounded)
            raise RoundingRefused(f"--strict: plan {plan.name!r} has dispatcher-mode buffers "
                                  f"that the bulk path would run with whole-second windows: "
                                  f"{names}; use a managed plan")
        return
    report = fallback_report(plan, float(args.slo_ms))
    if report is not None:
        print(format_warning(report), file=sys.stderr)
