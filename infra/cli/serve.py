"""`mbs serve`: both request paths of a plan on one local port until Ctrl-C: the online
dispatcher service (POST /v1/embeddings) and the bulk path on the local stack (moto)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from buffers.plan import DEFAULT_GPU_DTYPE, Plan
from infra.cli.common import add_plan_flag, resolve_plan


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs serve` to the subcommands."""
    parser = sub.add_parser("serve", help="serve a plan locally: /v1/embeddings and the bulk API",
                            description="Serve a plan locally on one port. Online: POST "
                            "/v1/embeddings (OpenAI-compatible), batched by the dispatcher "
                            "service with the infer function in this process. Bulk: POST "
                            "/v1/requests and GET /v1/requests/{id}, through SQS and DynamoDB "
                            "on moto (127.0.0.1). Both share one model.")
    add_plan_flag(parser)
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port (default 8080; 0 = any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--model", default="minilm", metavar="minilm|stand-in|DIR",
                        help="minilm: the real all-MiniLM-L6-v2 (default); stand-in: "
                        "deterministic unit vectors at zero cost, reported as model "
                        "'stand-in', for load tests of the service itself; DIR: a local "
                        "sentence-transformers encoder directory (both paths serve it, "
                        "reported under the directory's name)")
    parser.add_argument("--log-level", default="WARNING", help="handler log level")
    parser.add_argument("--metrics", action="store_true", help="print EMF metrics per batch")
    parser.add_argument("--policy", choices=["size_timeout", "deadline", "vtc"],
                        help="batching policy (default: the plan's)")
    parser.add_argument("--slo-ms", type=float, default=None, metavar="MS",
                        help="deadline for requests that send none: the deadline policy's "
                        "target, and online requests past it get a fast 504")
    parser.add_argument("--state-file", metavar="FILE",
                        help="write the URL, moto endpoint, queue URLs and table name here once "
                             "the stack is up")
    return parser


def dtype_warning(plan: Plan) -> str | None:
    """The line that says the local stack runs float32 where the plan asks for half precision."""
    if plan.gpu_dtype == DEFAULT_GPU_DTYPE:
        return None
    # The local stack does not apply the plan's dtype: half precision is for a GPU function
    # (functions/shared/model.py refuses it on a CPU), and the local stack serves on the CPU.
    return (f"warning: plan {plan.name!r} was planned for a {plan.gpu_dtype} GPU function "
            f"(meta.gpu_dtype); the local stack keeps {DEFAULT_GPU_DTYPE}, so its latencies "
            f"and the embeddings' last digits differ from the deployed function's")


def write_state(path: str, url: str, stack: Any) -> None:
    """Where the running service lives: its URL, moto endpoint, queues and table (for tools)."""
    res = stack.resources
    state = {"url": url, "aws_endpoint_url": stack.aws_endpoint_url,
             "table_name": res.table_name, "queue_urls": res.queue_urls,
             "dlq_urls": res.dlq_urls, "bucket": res.bucket, "plan": stack.plan.to_dict()}
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)  # atomic: a reader never sees half a file


def run(args: argparse.Namespace) -> int:
    """Start both paths, print where they serve, and stop cleanly on SIGINT or SIGTERM."""
    from infra.local.serving import LocalService, ServeOptions

    plan = resolve_plan(args.plan)
    if (warning := dtype_warning(plan)) is not None:
        print(warning, file=sys.stderr, flush=True)
    service = LocalService(plan, ServeOptions(
        port=args.port, host=args.host, model=args.model, policy=args.policy,
        slo_ms=args.slo_ms, log_level=args.log_level, metrics=args.metrics))
    print(f"starting MBS for plan {plan.name!r} (model {args.model})...", flush=True)
    service.start()
    print(f"MBS serving on {service.url}, policy {service.stack.policy_name}\n"
          f"  online: POST {service.url}/v1/embeddings (OpenAI-compatible)\n"
          f"  bulk:   POST {service.url}/v1/requests, GET {service.url}/v1/requests/{{id}}")
    for spec in plan.buffers:
        print(f"  buffer {spec.name:<8} lengths {spec.min_length:>3}-{spec.max_length:<3} "
              f"batch<={spec.max_batch_size:<4} timeout {spec.timeout_ms} ms  "
              f"{spec.dispatch_mode.value}")
    if args.state_file:
        write_state(args.state_file, service.url, service.stack)
    print("Ctrl-C to stop.", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    print("stopping: finishing buffered batches...", flush=True)
    service.stop()
    print("stopped.")
    return 0
