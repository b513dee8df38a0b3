"""`mbs`: serve, replay, demo and plan tools for Multi-Buffer Serving."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from buffers.plan import PlanError, default_plan_path, load_plan
from optimizer.workload.traces import DEFAULT_PRESET, TRACE_PRESETS
from optimizer.workload.workloads import WorkloadSpec, build_workload

DEMO_START_S, DEMO_DURATION_S, DEMO_SPEEDUP, DEMO_EVALS = 600.0, 90.0, 1.0, 1000


def _plan_arg(value: str | None) -> Any:
    """A plan file path, or the name of a shipped plan (default, batch, managed)."""
    if value is None:
        return load_plan(default_plan_path())
    path = Path(value)
    return load_plan(path if path.suffix == ".json" or path.exists() else default_plan_path(value))


def _add_workload_flags(parser: argparse.ArgumentParser, duration: float | None) -> None:
    group = parser.add_argument_group("workload")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--workload", choices=sorted(TRACE_PRESETS), default=None,
                        help=f"a bundled real trace (default {DEFAULT_PRESET}, the bursty one)")
    source.add_argument("--trace", metavar="CSV",
                        help="your own trace: a CSV with a timestamp column (seconds or ISO)")
    group.add_argument("--texts", metavar="FILE",
                       help="your own texts, one per line or JSONL with a 'text' field "
                            "(default: Pang & Lee, 70%% sentences / 30%% review passages)")
    group.add_argument("--start", type=float, default=0.0, metavar="S",
                       help="start of the trace window, seconds (default 0)")
    group.add_argument("--duration", type=float, default=duration, metavar="S",
                       help="length of the trace window, seconds (default: %(default)s)")
    group.add_argument("--rate-scale", type=float, default=1.0, metavar="X",
                       help="multiply the arrival rate by X (default 1)")
    group.add_argument("--seed", type=int, default=0, help="seed for text sampling (default 0)")


def _workload_spec(args: argparse.Namespace) -> WorkloadSpec:
    return WorkloadSpec(
        preset=None if args.trace else (args.workload or DEFAULT_PRESET),
        trace_csv=args.trace, texts_file=args.texts, start_s=args.start,
        duration_s=args.duration, rate_scale=args.rate_scale, seed=args.seed)


def _emit(report: dict[str, Any], as_json: bool, out: str | None, render: Any) -> None:
    text = json.dumps(report, indent=2, default=str)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    print(text if as_json else render(report))


def _write_state(path: str, stack: Any) -> None:
    """Where the running stack lives: API URL, moto endpoint, queues and table (for tools)."""
    res = stack.resources
    state = {"url": stack.url, "aws_endpoint_url": stack.aws_endpoint_url,
             "table_name": res.table_name, "queue_urls": res.queue_urls,
             "dlq_urls": res.dlq_urls, "plan": stack.plan.to_dict()}
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)  # atomic: a reader never sees half a file


def cmd_serve(args: argparse.Namespace) -> int:
    from infra.local.stack import LocalStack

    plan = _plan_arg(args.plan)
    stack = LocalStack(plan, port=args.port, log_level=args.log_level, metrics=args.metrics,
                       policy=args.policy, default_slo_ms=args.slo_ms)
    print(f"starting the local stack for plan {plan.name!r} (loading the model)...", flush=True)
    stack.start()
    print(f"MBS serving on {stack.url}  (POST /v1/requests, GET /v1/requests/{{id}}), "
          f"policy {stack.policy_name}")
    for spec in plan.buffers:
        print(f"  buffer {spec.name:<8} lengths {spec.min_length:>3}-{spec.max_length:<3} "
              f"batch<={spec.max_batch_size:<4} timeout {spec.timeout_ms} ms  "
              f"{spec.dispatch_mode.value}")
    if args.state_file:
        _write_state(args.state_file, stack)
    print("Ctrl-C to stop.", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    print("stopping: finishing buffered batches...", flush=True)
    stack.stop()
    print("stopped.")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from infra.client.replay import replay
    from infra.client.replay_report import render

    workload = build_workload(_workload_spec(args))
    report = replay(args.url, workload, speedup=args.speedup,
                    collect_timeout_s=args.collect_timeout, progress=not args.json)
    _emit(report, args.json, args.out, render)
    return 0 if report["requests"]["lost"] == 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from infra.cli.demo import run_demo

    return run_demo(args)


def cmd_audit(args: argparse.Namespace) -> int:
    import time

    import boto3

    from infra.client.audit import audit_stack, render
    from infra.local.events import REGION

    state = json.loads(Path(args.state_file).read_text(encoding="utf-8"))
    endpoint = state.get("aws_endpoint_url")
    # A local stack's state file names its moto endpoint: use the stack's region and moto's
    # placeholder credentials; without one, boto3's usual configuration (a real account).
    clients = {"endpoint_url": endpoint, "region_name": REGION,
               "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"} if endpoint else {}  # nosec B105
    ddb, sqs = boto3.client("dynamodb", **clients), boto3.client("sqs", **clients)
    now_ms = int(time.time() * 1000)
    report = audit_stack(ddb, sqs, state["table_name"], list(state["queue_urls"].values()),
                         list(state["dlq_urls"].values()),
                         since_ms=now_ms - int(args.since * 1000) if args.since else 0,
                         now_ms=now_ms, grace_ms=int(args.grace * 1000))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return 0 if report.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _plan_arg(args.plan)
    if args.action == "validate":
        print(f"ok: plan {plan.name!r}, {len(plan.buffers)} buffers covering 1..{plan.max_length}")
    else:
        print(plan.to_json(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbs", description="Multi-Buffer Serving: length-aware batching of inference "
        "requests on serverless platforms. Run `mbs demo` first.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the local stack (moto + HTTP API + dispatcher)",
                           description="Serve a plan locally: moto on 127.0.0.1 holds the queues "
                           "and the results table; the handlers run in-process.")
    serve.add_argument("--plan", help="plan file, or a shipped plan name (default: default)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 = any)")
    serve.add_argument("--log-level", default="WARNING", help="handler log level")
    serve.add_argument("--metrics", action="store_true", help="print EMF metrics per batch")
    serve.add_argument("--policy", choices=["size_timeout", "deadline", "vtc"],
                       help="batching policy (default: the plan's)")
    serve.add_argument("--slo-ms", type=float, default=None, metavar="MS",
                       help="deadline for requests that send no slo_ms (deadline policy)")
    serve.add_argument("--state-file", metavar="FILE",
                       help="write the URL, moto endpoint, queue URLs and table name here once "
                            "the stack is up")
    serve.set_defaults(func=cmd_serve)

    rep = sub.add_parser("replay", help="replay a real trace with real texts over HTTP",
                         description="Send a workload to a running MBS at its recorded arrival "
                         "times (divided by --speedup), collect every result and report measured "
                         "latency, throughput, padding, batch sizes and losses.")
    rep.add_argument("--url", default="http://127.0.0.1:8080", help="base URL of the API")
    rep.add_argument("--speedup", type=float, default=1.0, help="replay X times faster")
    rep.add_argument("--collect-timeout", type=float, default=120.0, metavar="S",
                     help="how long to wait for results after the last send")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--out", metavar="FILE", help="also write the JSON report here")
    _add_workload_flags(rep, duration=60.0)
    rep.set_defaults(func=cmd_replay)

    demo = sub.add_parser("demo", help="the main job: optimize, compare, serve and measure",
                          description="Plan MBS and every baseline for the bursty Azure code "
                          "trace (Bayesian search, simulated), then serve a slice of the same "
                          "trace with real texts through the local stack with MBS's plan and "
                          "with BATCH's, and print modelled and measured figures side by side.")
    demo.add_argument("--workload", choices=sorted(TRACE_PRESETS), default=DEFAULT_PRESET,
                      help=f"trace to plan for and replay (default {DEFAULT_PRESET})")
    demo.add_argument("--slo-ms", type=float, default=1000.0, metavar="MS",
                      help="p99 latency SLO (default 1000)")
    demo.add_argument("--evals", type=int, default=DEMO_EVALS,
                      help=f"search evaluations per plan (default {DEMO_EVALS})")
    demo.add_argument("--start", type=float, default=DEMO_START_S, metavar="S",
                      help=f"start of the served slice (default {DEMO_START_S:g})")
    demo.add_argument("--duration", type=float, default=DEMO_DURATION_S, metavar="S",
                      help=f"length of the served slice (default {DEMO_DURATION_S:g})")
    demo.add_argument("--speedup", type=float, default=DEMO_SPEEDUP, help="replay X times faster")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out-dir", default="out/demo", metavar="DIR",
                      help="plans, plots and demo.json go here (default out/demo)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.set_defaults(func=cmd_demo)

    audit = sub.add_parser("audit", help="reconcile accepted requests against their outcomes",
                           description="Count accepted, done, failed and in-flight requests and "
                           "exit 1 if any stale PENDING request has no message left that could "
                           "complete or fail it.")
    audit.add_argument("--state-file", required=True, metavar="FILE",
                       help="the file `mbs serve --state-file` wrote (table and queue names)")
    audit.add_argument("--since", type=float, metavar="S",
                       help="only requests accepted in the last S seconds (default: all)")
    audit.add_argument("--grace", type=float, default=300.0, metavar="S",
                       help="PENDING older than this is stale (default 300)")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    plan = sub.add_parser("plan", help="validate or print a plan file")
    plan.add_argument("action", choices=["validate", "show"])
    plan.add_argument("plan", nargs="?", help="plan file or shipped plan name")
    plan.set_defaults(func=cmd_plan)
    for register in _extra_commands():
        register(sub, add_workload_flags=_add_workload_flags, workload_spec=_workload_spec)
    return parser


def _extra_commands() -> list[Any]:
    """Subcommands that live beside their code (infra/cli/commands.py): each is register()."""
    from infra.cli import commands

    return list(commands.REGISTRARS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PlanError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"mbs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
