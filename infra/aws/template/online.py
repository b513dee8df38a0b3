"""The online path's infer functions: one per buffer, invoked by the dispatcher (RequestResponse).

Separate functions from the bulk path's `Infer*Function`s, built from the same image with another
handler (ImageConfig.Command), for three reasons (ARCHITECTURE.md, "The online path on AWS"):
- least privilege: the online handler returns embeddings and touches no queue or table, so its
  role has only CloudWatch Logs; the bulk role polls SQS and writes DynamoDB;
- concurrency: the dispatcher caps its invocations per buffer by the plan, and the bulk path's
  event source mapping caps its own; sharing one function would make each eat the other's;
- metrics: Duration, Errors and Throttles per path, so alarms and cost figures stay apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from buffers.plan import BufferSpec
from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    EMBED_HANDLER,
    RenderOptions,
    checkov_skips,
    conditional,
    getatt,
    image_build_metadata,
    ref,
    sub,
)
from infra.aws.template.shared import HTTP_FUNCTION_TIMEOUT_S, count_alarm, log_group

# Under the HTTP API's 29 s integration timeout: no caller waits longer than that anyway. The
# dispatcher's read timeout must be above this, so that a slow batch ends as the function's
# timeout error and is never silently run twice.
EMBED_TIMEOUT_S = HTTP_FUNCTION_TIMEOUT_S


@dataclass(frozen=True)
class EmbedIds:
    """Logical ids of one buffer's online resources."""

    function: str
    log_group: str
    errors_alarm: str

    @classmethod
    def of(cls, suffix: str) -> EmbedIds:
        return cls(function=f"Embed{suffix}Function", log_group=f"Embed{suffix}LogGroup",
                   errors_alarm=f"Embed{suffix}ErrorsAlarm")


_EMBED_SKIPS = checkov_skips(
    ("CKV_AWS_116", "Invoked synchronously (RequestResponse) by the dispatcher, which answers "
                    "the batch's callers with the error; an async DLQ would never receive one."),
    ("CKV_AWS_117", "The function calls no AWS service besides CloudWatch Logs; a VPC would add "
                    "ENI set-up and NAT cost for nothing."),
    ("CKV_AWS_115", "Concurrency is capped where it is decided: the dispatcher invokes each "
                    "buffer at most the plan's max_concurrency at once."),
    ("CKV_AWS_173", "The variables hold no secrets (table name, queue URLs, the plan); Lambda "
                    "encrypts them at rest with an AWS managed key."),
)


def _function(spec: BufferSpec, opts: RenderOptions) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Function",
            "Metadata": {**image_build_metadata(opts.code_dir), **_EMBED_SKIPS},
            "Properties": {
                "Description": f"MBS online infer for buffer {spec.name} (token lengths "
                               f"{spec.min_length}-{spec.max_length}), invoked by the dispatcher",
                "PackageType": "Image",
                "ImageConfig": {"Command": [EMBED_HANDLER]},
                "MemorySize": spec.memory_mb,
                "Timeout": EMBED_TIMEOUT_S,
                # No Policies: SAM's role then has CloudWatch Logs only, all the handler needs.
                "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "embed"}}}}


def embed_resources(spec: BufferSpec, suffix: str, opts: RenderOptions) -> dict[str, Any]:
    """One buffer's online infer function, its log group and its errors alarm."""
    ids = EmbedIds.of(suffix)
    return conditional({
        ids.function: _function(spec, opts),
        ids.log_group: log_group(sub(f"/aws/lambda/${{{ids.function}}}")),
        ids.errors_alarm: count_alarm(
            f"MBS buffer {spec.name}, online: infer invocations failed (FunctionError or "
            f"timeout); the dispatcher answered those callers with 502",
            "AWS/Lambda", "Errors", ("FunctionName", ref(ids.function))),
    }, DISPATCHER_CONDITION)


def embed_outputs(spec: BufferSpec, suffix: str) -> dict[str, Any]:
    """Stack outputs for one buffer's online infer function."""
    ids = EmbedIds.of(suffix)
    return {
        f"{ids.function}Name": {"Condition": DISPATCHER_CONDITION,
                                "Description": f"online infer function of buffer {spec.name}",
                                "Value": ref(ids.function)},
        f"{ids.function}Arn": {"Condition": DISPATCHER_CONDITION,
                               "Description": f"online infer function ARN of buffer {spec.name}",
                               "Value": getatt(ids.function, "Arn")},
    }


def embed_targets(suffixes: dict[str, str]) -> dict[str, str]:
    """Buffer name -> the logical id of the function the dispatcher invokes for it: its own."""
    return {name: EmbedIds.of(suffix).function for name, suffix in suffixes.items()}


def infer_functions_env(targets: dict[str, str]) -> dict[str, Any]:
    """MBS_INFER_FUNCTIONS for the dispatcher: buffer name -> its infer function's name."""
    names = {name: f"${{{logical}}}" for name, logical in targets.items()}
    return sub(json.dumps(names, separators=(",", ":")))


def infer_function_arns(targets: dict[str, str]) -> list[dict[str, Any]]:
    """Every infer function's ARN, once each: the only resources the dispatcher may invoke."""
    return [getatt(logical, "Arn") for logical in dict.fromkeys(targets.values())]
