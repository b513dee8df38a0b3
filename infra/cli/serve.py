"""`mbs serve`: run the local stack (moto + HTTP API + dispatcher) for a plan until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from infra.cli.common import add_plan_flag, resolve_plan


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs serve` to the subcommands."""
    parser = sub.add_parser("serve", help="run the local stack (moto + HTTP API + dispatcher)",
                            description="Serve a plan locally: moto on 127.0.0.1 holds the "
                            "queues and the results table; the handlers run in-process.")
    add_plan_flag(parser)
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port (default 8080; 0 = any)")
    parser.add_argument("--log-level", default="WARNING", help="handler log level")
    parser.add_argument("--metrics", action="store_true", help="print EMF metrics per batch")
    parser.add_argument("--policy", choices=["size_timeout", "deadline", "vtc"],
                        help="batching policy (default: the plan's)")
    parser.add_argument("--slo-ms", type=float, default=None, metavar="MS",
                        help="deadline for requests that send no slo_ms (deadline policy)")
    parser.add_argument("--state-file", metavar="FILE",
                        help="write the URL, moto endpoint, queue URLs and table name here once "
                             "the stack is up")
    return parser


def write_state(path: str, stack: Any) -> None:
    """Where the running stack lives: API URL, moto endpoint, queues and table (for tools)."""
    res = stack.resources
    state = {"url": stack.url, "aws_endpoint_url": stack.aws_endpoint_url,
             "table_name": res.table_name, "queue_urls": res.queue_urls,
             "dlq_urls": res.dlq_urls, "plan": stack.plan.to_dict()}
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)  # atomic: a reader never sees half a file


def run(args: argparse.Namespace) -> int:
    """Start the stack, print where it serves, and stop cleanly on SIGINT or SIGTERM."""
    from infra.local.stack import LocalStack

    plan = resolve_plan(args.plan)
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
        write_state(args.state_file, stack)
    print("Ctrl-C to stop.", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    print("stopping: finishing buffered batches...", flush=True)
    stack.stop()
    print("stopped.")
    return 0
