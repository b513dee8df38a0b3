"""`mbs plan`: validate or print a plan file (or a shipped plan)."""

from __future__ import annotations

import argparse
from typing import Any

from infra.cli.common import resolve_plan


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs plan` to the subcommands."""
    parser = sub.add_parser("plan", help="validate or print a plan file",
                            description="validate: check a plan and say what it covers; show: "
                            "print it as JSON.")
    parser.add_argument("action", choices=["validate", "show"])
    parser.add_argument("plan", nargs="?", help="plan file or shipped plan name")
    return parser


def run(args: argparse.Namespace) -> int:
    """Validate or show; an invalid plan raises PlanError naming the field (exit 2)."""
    plan = resolve_plan(args.plan)
    if args.action == "validate":
        print(f"ok: plan {plan.name!r}, {len(plan.buffers)} buffers covering 1..{plan.max_length}")
    else:
        print(plan.to_json(), end="")
    return 0
