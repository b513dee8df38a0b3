"""`mbs smoke`: a few real requests to a deployed stack's /v1/embeddings, with buffer figures."""

from __future__ import annotations

import argparse
from typing import Any

from infra.cli.common import add_json_flag, emit


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs smoke` to the subcommands."""
    parser = sub.add_parser("smoke", help="send a few real requests to a deployed stack",
                            description="Send each smoke text alone, then all as one list, "
                            "for --rounds rounds to a deployed stack's POST /v1/embeddings, and "
                            "print the round-trip latency and, per buffer, the batch sizes, "
                            "padded lengths and queue waits the dispatcher reports. Exits 1 "
                            "when any call fails. Costs a few cents at most on your account.")
    parser.add_argument("--url", required=True, help="the stack's ApiUrl output (or the full "
                        "/v1/embeddings URL)")
    parser.add_argument("--auth", choices=["iam", "jwt", "none"], default="iam",
                        help="iam: SigV4 with your AWS credentials (default); jwt: --token as "
                        "a bearer token; none: a stack deployed with AuthMode=NONE")
    parser.add_argument("--token", help="the JWT for --auth jwt")
    parser.add_argument("--region", help="region to sign for (default: from the URL)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of calls (default 3)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="calls at a time (default 4)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2",
                        help="the model name to send (default all-MiniLM-L6-v2)")
    add_json_flag(parser, "print the report as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the smoke calls and report; 1 if any call failed."""
    from infra.aws.smoke import format_smoke, run_smoke

    report = run_smoke(args.url, auth=args.auth, token=args.token, region=args.region,
                       rounds=args.rounds, concurrency=args.concurrency, model=args.model)
    args.out = None
    emit(report.to_dict(), args, lambda _: format_smoke(report))
    return 0 if report.ok else 1
