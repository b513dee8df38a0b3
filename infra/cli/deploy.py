"""`mbs deploy`: render a plan, then sam build and sam deploy; or --apply a plan in place."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infra.aws.template.common import RenderOptions
from infra.cli.common import resolve_plan
from infra.cli.fallback import check_rounding
from infra.cli.render import add_stack_flags, deploy_params

DEFAULT_OUT = Path("out") / "deploy"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs deploy` to the subcommands."""
    parser = sub.add_parser("deploy", help="render, then sam build and sam deploy (or --apply)",
                            description="Render the plan into --out (default out/deploy/STACK), "
                            "then run sam build and sam deploy, printing each command. With "
                            "--apply, update a deployed stack's mappings, memory and plan in "
                            "place instead (no CloudFormation update).")
    add_stack_flags(parser)
    parser.add_argument("--out", metavar="DIR", help="render directory")
    parser.add_argument("--sam", metavar="PATH", help="SAM CLI to run (default: sam on PATH)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands, run nothing")
    parser.add_argument("--apply", action="store_true",
                        help="apply a changed plan in place via the Lambda and SQS APIs")
    parser.add_argument("--no-online", dest="online", action="store_false",
                        help="deploy the bulk path only: no dispatcher image, no Fargate "
                        "service (nothing billed by the hour)")
    parser.add_argument("--docker", default="docker", metavar="PATH",
                        help="docker CLI that builds and pushes the dispatcher image "
                        "(default: docker on PATH)")
    return parser


def _apply(args: argparse.Namespace, plan: Any) -> int:
    import boto3

    from infra.aws.apply import execute, plan_actions, read_stack

    session = boto3.session.Session(region_name=args.region)
    lam, sqs = session.client("lambda"), session.client("sqs")
    stack = read_stack(args.stack_name, session.client("cloudformation"), lam, sqs)
    actions = plan_actions(stack, plan)
    if not actions:
        print(f"stack {args.stack_name!r} already runs plan {plan.name!r}: nothing to apply")
        return 0
    for action in actions:
        print(f"$ {action.describe()}")
    if not args.dry_run:
        execute(actions, lam, sqs)
        print(f"applied {len(actions)} change(s); run `mbs deploy` without --apply later to "
              f"bring the stack's template in line (it will change nothing else)")
    return 0


def _with_dispatcher_image(args: argparse.Namespace, plan: Any, out: Path, params: Any,
                           options: RenderOptions, rendered: Any) -> Any:
    """Build and push the dispatcher image (ECR), then render the stack with it: the online
    path's resources exist only when the stack is given an image."""
    from dataclasses import replace

    import boto3

    from infra.aws.image import push_dispatcher_image
    from infra.aws.render import render_template

    ecr = boto3.session.Session(region_name=args.region).client("ecr")
    image = push_dispatcher_image(rendered, args.stack_name, ecr, dry_run=args.dry_run,
                                  docker=args.docker)
    params = replace(params, dispatcher_image_repository=image.repository,
                     dispatcher_image_tag=image.tag)
    return render_template(plan, out, params, options, stage=False)


def run(args: argparse.Namespace) -> int:
    """Render and run sam (printing each command), or apply the plan in place with --apply."""
    from infra.aws.deploy import SamNotFound, find_sam, run_sam, sam_commands
    from infra.aws.render import render_template

    plan = resolve_plan(args.plan)
    params = deploy_params(args)  # refuses bad flags before the slower rounding check
    check_rounding(plan, args)  # --apply sets the same rounded windows
    if args.apply:
        return _apply(args, plan)
    out = Path(args.out) if args.out else DEFAULT_OUT / args.stack_name
    options = RenderOptions(args.infer_timeout_s)
    rendered = render_template(plan, out, params, options)
    if args.online:
        rendered = _with_dispatcher_image(args, plan, out, params, options, rendered)
    try:
        sam = find_sam(args.sam)
    except SamNotFound:
        if not args.dry_run:
            raise
        sam = "sam"
    return run_sam(sam_commands(rendered, args.stack_name, sam, args.region), args.dry_run)
