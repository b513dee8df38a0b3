"""Offline proof helpers: the SAM transform without AWS, and the part of its output moto can create.

aws-sam-translator is the library the AWS::Serverless transform runs, so `sam_transform` yields
the CloudFormation that AWS would create (the managed policy map is given locally instead of read
from IAM). moto's CloudFormation has no API Gateway v2 or CloudWatch alarm support; `moto_subset`
drops those resources and whatever refers to them, and says which, so a test can pin that list.
"""

from __future__ import annotations

import copy
import re
from typing import Any

FAKE_CODE_URI = "s3://mbs-offline-code/code.zip"
FAKE_IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mbs-infer:offline"
# The only managed policy SAM attaches here (every function's CloudWatch Logs permissions).
MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole":
                    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}


def with_packaged_code(template: dict[str, Any]) -> dict[str, Any]:
    """A copy with the code locations `sam package` would set: S3 for zips, ECR for images."""
    out = copy.deepcopy(template)
    for resource in out["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        if props.get("PackageType") == "Image":
            props["ImageUri"] = FAKE_IMAGE_URI
        else:
            props["CodeUri"] = FAKE_CODE_URI
    return out


def sam_transform(template: dict[str, Any], parameters: dict[str, str] | None = None,
                  region: str = "us-east-1") -> dict[str, Any]:
    """Apply the AWS::Serverless-2016-10-31 transform, as CloudFormation would in `region`.

    This is samtranslator's own `transform()`, with a region given (AWS::Region) instead of read
    from the environment, and the managed policy map given instead of listed from IAM.
    """
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment, values = with_packaged_code(template), dict(parameters or {})
    to_py27_compatible_template(fragment, values)
    # "offline": placeholder credentials for a session that never calls AWS, not a secret
    session = boto3.session.Session(region_name=region, aws_access_key_id="offline",
                                    aws_secret_access_key="offline")  # nosec B106
    translator = Translator(None, Parser(), boto_session=session)
    out = translator.translate(fragment, parameter_values=values,
                               get_managed_policy_map=lambda: dict(MANAGED_POLICIES))
    return undo_mark_unicode_str_in_template(out)


def references(node: Any) -> set[str]:
    """Logical ids that `node` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= references(variables)
            else:
                found |= references(value)
    return found


def moto_subset(cfn: dict[str, Any], supported: set[str]) -> tuple[dict[str, Any], set[str]]:
    """The template without unsupported resource types and their dependants; and what went."""
    out = copy.deepcopy(cfn)
    dropped = {k for k, r in out["Resources"].items() if r["Type"] not in supported}
    grew = True
    while grew:
        grew = False
        for logical, resource in out["Resources"].items():
            if logical not in dropped and references(resource) & dropped:
                dropped.add(logical)
                grew = True
    out["Resources"] = {k: r for k, r in out["Resources"].items() if k not in dropped}
    out["Outputs"] = {k: o for k, o in out.get("Outputs", {}).items()
                      if not references(o) & dropped}
    return out, dropped
