"""`mbs audit`: reconcile a stack's accepted requests against their outcomes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from infra.cli.common import add_json_flag


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs audit` to the subcommands."""
    parser = sub.add_parser("audit", help="reconcile accepted requests against their outcomes",
                            description="Count accepted, done, failed and in-flight requests and "
                            "exit 1 if any stale PENDING request has no message left that could "
                            "complete or fail it.")
    parser.add_argument("--state-file", required=True, metavar="FILE",
                        help="the file `mbs serve --state-file` wrote (table and queue names)")
    parser.add_argument("--since", type=float, metavar="S",
                        help="only requests accepted in the last S seconds (default: all)")
    parser.add_argument("--grace", type=float, default=300.0, metavar="S",
                        help="PENDING older than this is stale (default 300)")
    add_json_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Audit the stack the state file names; exit 1 if anything is unaccounted for."""
    import boto3

    from functions.shared.jobs import S3ResultObjects
    from infra.client.audit import audit_stack, format_audit
    from infra.local.events import REGION

    state = json.loads(Path(args.state_file).read_text(encoding="utf-8"))
    endpoint = state.get("aws_endpoint_url")
    # A local stack's state file names its moto endpoint: use the stack's region and moto's
    # placeholder credentials; without one, boto3's usual configuration (a real account).
    clients = {"endpoint_url": endpoint, "region_name": REGION,
               "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"} if endpoint else {}  # nosec B105
    ddb, sqs = boto3.client("dynamodb", **clients), boto3.client("sqs", **clients)
    # Jobs with S3 output have no per-text items: their parts are read from the bucket.
    bucket = state.get("bucket")
    objects = None if bucket is None else S3ResultObjects(bucket, boto3.client("s3", **clients))
    now_ms = int(time.time() * 1000)
    report = audit_stack(ddb, sqs, state["table_name"], list(state["queue_urls"].values()),
                         list(state["dlq_urls"].values()),
                         since_ms=now_ms - int(args.since * 1000) if args.since else 0,
                         now_ms=now_ms, grace_ms=int(args.grace * 1000), objects=objects)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_audit(report))
    return 0 if report.ok else 1
