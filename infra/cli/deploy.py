"""`mbs render` and `mbs deploy`: a registrar for the `mbs` CLI (see infra/cli/commands.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from infra.aws.template.common import RenderError, RenderOptions

DEFAULT_OUT = Path("out") / "deploy"


def _plan(value: str) -> Any:
    from buffers.plan import default_plan_path, load_plan

    path = Path(value)
    return load_plan(path if path.suffix == ".json" or path.exists() else default_plan_path(value))


def _params(args: argparse.Namespace) -> Any:
    from infra.aws.render import DeployParams

    return DeployParams(stack_name=args.stack_name, auth_mode=args.auth, jwt_issuer=args.jwt_issuer,
                        jwt_audience=args.jwt_audience, slo_ms=args.slo_ms,
                        alarm_topic_arn=args.alarm_topic_arn,
                        dispatcher_buffers=args.dispatcher_buffers, region=args.region)


def cmd_render(args: argparse.Namespace) -> int:
    from infra.aws.render import render_template

    plan = _plan(args.plan)
    rendered = render_template(plan, args.out, _params(args), RenderOptions(args.infer_timeout_s))
    print(f"rendered plan {plan.name!r} ({len(plan.buffers)} buffers) to {rendered.out_dir}:")
    for path in (rendered.template, rendered.samconfig, rendered.parameters, rendered.code_dir):
        print(f"  {path}")
    return 0


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


def cmd_deploy(args: argparse.Namespace) -> int:
    from infra.aws.deploy import SamNotFound, find_sam, run_sam, sam_commands
    from infra.aws.render import render_template

    plan = _plan(args.plan)
    if args.apply:
        return _apply(args, plan)
    out = Path(args.out) if args.out else DEFAULT_OUT / args.stack_name
    rendered = render_template(plan, out, _params(args), RenderOptions(args.infer_timeout_s))
    try:
        sam = find_sam(args.sam)
    except SamNotFound:
        if not args.dry_run:
            raise
        sam = "sam"
    return run_sam(sam_commands(rendered, args.stack_name, sam, args.region), args.dry_run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", required=True, help="plan file, or a shipped plan name")
    parser.add_argument("--stack-name", default="mbs", help="CloudFormation stack (default mbs)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    auth = parser.add_argument_group("API authorization")
    auth.add_argument("--auth", choices=["IAM", "JWT", "NONE"], default="IAM",
                      help="IAM (default: SigV4), JWT (needs --jwt-issuer), or NONE: an open "
                           "API, for testing only")
    auth.add_argument("--jwt-issuer", default="", help="JWT issuer URL (--auth JWT)")
    auth.add_argument("--jwt-audience", default="", help="comma-separated JWT audiences")
    parser.add_argument("--slo-ms", type=int, default=1000, help="SLO for the alarms (ms)")
    parser.add_argument("--alarm-topic-arn", default="", help="SNS topic for alarms")
    parser.add_argument("--dispatcher-buffers", choices=["ManagedFallback", "Off"],
                        default="ManagedFallback",
                        help="dispatcher-mode buffers: an SQS mapping with whole-second windows "
                             "(default), or none (an external dispatcher, not shipped)")
    parser.add_argument("--infer-timeout-s", type=int, default=RenderOptions().infer_timeout_s,
                        help="infer function timeout; queues get 6x this + the window")


def register(sub: Any, **_: Any) -> None:
    """Add `render` and `deploy` to the `mbs` subcommands."""
    render = sub.add_parser("render", help="write the SAM template and parameters for a plan",
                            description="Render template.yaml, samconfig.toml, parameters.json "
                            "and the staged function code for a plan into --out.")
    _common(render)
    render.add_argument("--out", required=True, metavar="DIR", help="output directory")
    render.set_defaults(func=_guard(cmd_render))

    deploy = sub.add_parser("deploy", help="render, then sam build and sam deploy (or --apply)",
                            description="Render the plan into --out (default out/deploy/STACK), "
                            "then run sam build and sam deploy, printing each command. With "
                            "--apply, update a deployed stack's mappings, memory and plan in "
                            "place instead (no CloudFormation update).")
    _common(deploy)
    deploy.add_argument("--out", metavar="DIR", help="render directory")
    deploy.add_argument("--sam", metavar="PATH", help="SAM CLI to run (default: sam on PATH)")
    deploy.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    deploy.add_argument("--apply", action="store_true",
                        help="apply a changed plan in place via the Lambda and SQS APIs")
    deploy.set_defaults(func=_guard(cmd_deploy))


def _guard(func: Any) -> Any:
    """RenderError and FullDeployNeeded are user errors: a message and exit code 2."""
    def run(args: argparse.Namespace) -> int:
        from infra.aws.apply import FullDeployNeeded
        from infra.aws.deploy import SamNotFound

        try:
            return func(args)
        except (RenderError, FullDeployNeeded, SamNotFound) as exc:
            print(f"mbs: error: {exc}", file=sys.stderr)
            return 2

    return run
