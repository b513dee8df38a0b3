"""`mbs`: serve, replay, demo and plan tools for Multi-Buffer Serving.

Every subcommand is one module of this package with `add_parser(subparsers)` and
`run(args) -> exit code`; COMMANDS lists them in the order `mbs --help` shows. Flags that
several commands share, and the plan-name lookup, live in infra/cli/common.py.
"""

from __future__ import annotations

import argparse
import sys

from buffers.plan import PlanError
from infra.cli import (
    audit,
    compare,
    demo,
    deploy,
    optimize,
    plan,
    profile,
    render,
    replay,
    serve,
    simulate,
    smoke,
)

COMMANDS = (serve, replay, demo, audit, plan, profile, simulate, render, deploy, smoke,
            compare, optimize)


def build_parser() -> argparse.ArgumentParser:
    """The `mbs` parser: each command's subparser, its func set to the command's run."""
    parser = argparse.ArgumentParser(
        prog="mbs", description="Multi-Buffer Serving: length-aware batching of inference "
        "requests on serverless platforms. Run `mbs demo` first.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse argv and run the command; a user error prints `mbs: error: ...` and exits 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PlanError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"mbs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
