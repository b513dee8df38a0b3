"""`mbs replay`: send a workload to a running MBS at its recorded arrival times and report."""

from __future__ import annotations

import argparse
from typing import Any

from infra.cli.common import add_report_flags, add_workload_flags, emit, workload_spec
from optimizer.workload.workloads import build_workload


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs replay` to the subcommands."""
    parser = sub.add_parser("replay", help="replay a real trace with real texts over HTTP",
                            description="Send a workload to a running MBS at its recorded "
                            "arrival times (divided by --speedup), collect every result and "
                            "report measured latency, throughput, padding, batch sizes and "
                            "losses.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="base URL of the API")
    parser.add_argument("--path", choices=["online", "bulk"], default="online",
                        help="online: POST /v1/embeddings, answered with the embedding "
                        "(default); bulk: POST /v1/requests, then poll for each result")
    parser.add_argument("--speedup", type=float, default=1.0, help="replay X times faster")
    parser.add_argument("--collect-timeout", type=float, default=120.0, metavar="S",
                        help="how long to wait for results after the last send")
    add_report_flags(parser)
    add_workload_flags(parser, duration=60.0)
    return parser


def run(args: argparse.Namespace) -> int:
    """Replay, print the measured report; exit 1 if any request was lost."""
    from infra.client.replay import replay
    from infra.client.replay_report import format_report

    workload = build_workload(workload_spec(args))
    report = replay(args.url, workload, speedup=args.speedup,
                    collect_timeout_s=args.collect_timeout, progress=not args.json,
                    path=args.path)
    emit(report, args, format_report)
    return 0 if report["requests"]["lost"] == 0 else 1
