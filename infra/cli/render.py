"""`mbs render`: write a plan's SAM template, samconfig, parameters and staged code.

`add_stack_flags` and `deploy_params` are the AWS flags `mbs deploy` shares with it.
"""

from __future__ import annotations

import argparse
from typing import Any

from infra.aws.template.common import RenderOptions
from infra.cli.common import add_plan_flag, resolve_plan
from infra.cli.fallback import add_strict_flag, check_rounding


def add_stack_flags(parser: argparse.ArgumentParser) -> None:
    """The plan, stack, region, API authorization, alarm, timeout and --strict flags."""
    add_plan_flag(parser, required=True)
    parser.add_argument("--stack-name", default="mbs", help="CloudFormation stack (default mbs)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    auth = parser.add_argument_group("API authorization")
    auth.add_argument("--auth", choices=["IAM", "JWT", "NONE"], default="IAM",
                      help="IAM (default: SigV4), JWT (needs --jwt-issuer), or NONE: an open "
                           "API, for testing only")
    auth.add_argument("--jwt-issuer", default="", help="JWT issuer URL (--auth JWT)")
    auth.add_argument("--jwt-audience", default="",
                      help="comma-separated JWT audiences (app client ids); required with JWT")
    parser.add_argument("--slo-ms", type=int, default=1000, help="SLO for the alarms (ms)")
    parser.add_argument("--alarm-topic-arn", default="", help="SNS topic for alarms")
    parser.add_argument("--infer-timeout-s", type=int, default=RenderOptions().infer_timeout_s,
                        help="infer function timeout; queues get 6x this + the window")
    add_strict_flag(parser)


def deploy_params(args: argparse.Namespace) -> Any:
    """The DeployParams the stack flags describe."""
    from infra.aws.render import DeployParams

    return DeployParams(stack_name=args.stack_name, auth_mode=args.auth, jwt_issuer=args.jwt_issuer,
                        jwt_audience=args.jwt_audience, slo_ms=args.slo_ms,
                        alarm_topic_arn=args.alarm_topic_arn, region=args.region)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs render` to the subcommands."""
    parser = sub.add_parser("render", help="write the SAM template and parameters for a plan",
                            description="Render template.yaml, samconfig.toml, parameters.json "
                            "and the staged function code for a plan into --out.")
    add_stack_flags(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    return parser


def run(args: argparse.Namespace) -> int:
    """Render the plan into --out and list what was written."""
    from infra.aws.render import render_template

    plan = resolve_plan(args.plan)
    params = deploy_params(args)  # refuses bad flags before the slower rounding check
    check_rounding(plan, args)
    rendered = render_template(plan, args.out, params, RenderOptions(args.infer_timeout_s))
    print(f"rendered plan {plan.name!r} ({len(plan.buffers)} buffers) to {rendered.out_dir}:")
    for path in (rendered.template, rendered.samconfig, rendered.parameters, rendered.code_dir):
        print(f"  {path}")
    return 0
