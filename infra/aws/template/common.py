"""Shared pieces of the rendered SAM template: intrinsic helpers, render options, AWS limits.

Pure: plain values in, plain dicts out. The template is built as data so that cfn-lint, checkov,
aws-sam-translator and moto all read exactly what `sam deploy` sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from buffers.plan import BufferSpec

# Lambda quotas (AWS Lambda developer guide, "Lambda quotas"): a function runs at most 900 s, and
# all of a function's environment variables together are at most 4 KB.
MAX_FUNCTION_TIMEOUT_S = 900
MAX_ENV_BYTES = 4 * 1024
# CloudFormation quotas (CloudFormation user guide, "quotas"): 500 resources and 200 outputs per
# template.
MAX_RESOURCES = 500
MAX_OUTPUTS = 200
# SQS (developer guide, "Amazon SQS visibility timeout"): the visibility timeout is 0-43,200 s.
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600
# Valid RetentionInDays values of AWS::Logs::LogGroup (CloudFormation resource reference).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)

INGEST_HANDLER = "functions.ingest.handler"
RESULTS_HANDLER = "functions.results.handler"
INFER_HANDLER = "functions.infer.handler"
DLQ_HANDLER = "functions.dlq.handler"
# The online path's infer handler: {"inputs": [{"id", "text"}], "buffer"} -> embeddings.
EMBED_HANDLER = "functions.embed.handler"
DLQ_FUNCTION_TIMEOUT_S = 30
PYTHON_RUNTIME = "python3.12"
# Paths inside the rendered output directory (relative to template.yaml): the staged function
# code (functions/, buffers/, the tokenizer, requirements and the infer Dockerfile).
CODE_DIR = ".aws-sam/mbs-src"
TOKENIZER_DIR = "tokenizer"  # inside CODE_DIR; /var/task/tokenizer on Lambda
LAMBDA_TASK_ROOT = "/var/task"
# The online path exists only when the stack is given a dispatcher image (DispatcherImageTag):
# without one there is nothing for ECS to run, and a bulk-only stack pays no hourly task.
DISPATCHER_CONDITION = "HasDispatcher"
DISPATCHER_PORT = 8080  # the container's PORT; the dispatcher's own default
# Fargate task sizes (ECS developer guide, "Task CPU and memory"): CPU units -> memory choices.
FARGATE_MEMORY_MB = {256: (512, 1024, 2048), 512: tuple(range(1024, 4097, 1024)),
                     1024: tuple(range(2048, 8193, 1024)), 2048: tuple(range(4096, 16385, 1024)),
                     4096: tuple(range(8192, 30721, 1024))}
# Lambda Managed Instances function sizes: "The minimum supported function size is 2GB and 1
# vCPU" (Lambda developer guide, "Best practices for Lambda Managed Instances"). MemorySize is at
# most 32,768 MB, ExecutionEnvironmentMemoryGiBPerVCpu 2-8 and
# PerExecutionEnvironmentMaxConcurrency 1-1,600 (CloudFormation template reference,
# AWS::Lambda::Function and "AWS::Lambda::Function LambdaManagedInstancesCapacityProviderConfig").
LMI_MEMORY_MB = (2048, 32_768)
LMI_GIB_PER_VCPU = (2.0, 8.0)
LMI_MAX_CONCURRENCY = 1_600


class RenderError(ValueError):
    """A plan or option that cannot become a valid template; the message names the value."""


@dataclass(frozen=True)
class RenderOptions:
    """Template choices that are not in the plan (fixed at render time, not CFN parameters)."""

    infer_timeout_s: int = 60  # cold start (torch import, model load) plus the largest batch
    ingest_memory_mb: int = 512
    results_memory_mb: int = 256
    code_dir: str = CODE_DIR
    # The dispatcher task: 0.25 vCPU and 512 MB, Fargate's smallest and cheapest size. One
    # Python process uses one core at most; autoscaling adds tasks rather than size.
    dispatcher_cpu_units: int = 256
    dispatcher_memory_mb: int = 512
    # The gpu backend's execution environment (infra/aws/template/gpu.py): 8 GiB at 4 GiB per
    # vCPU is 2 vCPUs, which fits beside the Lambda agent on every catalogued instance (the
    # smallest has 4 vCPUs and 16 GiB); Python wants 4:1 or 8:1 because each concurrent request
    # is its own process (Lambda developer guide, "Best practices for Lambda Managed Instances").
    # One process per environment: one forward pass at a time owns the GPU, as on CPU Lambda.
    gpu_memory_mb: int = 8192
    gpu_memory_gib_per_vcpu: float = 4.0
    gpu_processes_per_environment: int = 1
    # Target GPU utilisation of the capacity provider's target tracking (the CDK's own example
    # tracks GPU utilisation at 60%): headroom for a burst while the fleet scales, in minutes.
    gpu_target_utilization_percent: float = 60.0

    def __post_init__(self) -> None:
        self._check_dispatcher()
        self._check_gpu()

    def _check_dispatcher(self) -> None:
        if not 1 <= self.infer_timeout_s <= MAX_FUNCTION_TIMEOUT_S:
            raise RenderError(f"infer_timeout_s must be in 1..{MAX_FUNCTION_TIMEOUT_S}, "
                              f"got {self.infer_timeout_s}")
        allowed = FARGATE_MEMORY_MB.get(self.dispatcher_cpu_units)
        if allowed is None:
            raise RenderError(f"dispatcher_cpu_units must be one of {sorted(FARGATE_MEMORY_MB)}, "
                              f"got {self.dispatcher_cpu_units}")
        if self.dispatcher_memory_mb not in allowed:
            raise RenderError(f"dispatcher_memory_mb {self.dispatcher_memory_mb} is not a Fargate "
                              f"size for {self.dispatcher_cpu_units} CPU units; choose from "
                              f"{allowed[0]}..{allowed[-1]}")

    def _check_gpu(self) -> None:
        if not LMI_MEMORY_MB[0] <= self.gpu_memory_mb <= LMI_MEMORY_MB[1]:
            raise RenderError(f"gpu_memory_mb must be in {LMI_MEMORY_MB[0]}..{LMI_MEMORY_MB[1]}, "
                              f"got {self.gpu_memory_mb}")
        if not LMI_GIB_PER_VCPU[0] <= self.gpu_memory_gib_per_vcpu <= LMI_GIB_PER_VCPU[1]:
            raise RenderError(f"gpu_memory_gib_per_vcpu must be in {LMI_GIB_PER_VCPU[0]:g}.."
                              f"{LMI_GIB_PER_VCPU[1]:g}, got {self.gpu_memory_gib_per_vcpu}")
        if self.gpu_memory_mb / 1024 < self.gpu_memory_gib_per_vcpu:
            raise RenderError(f"gpu_memory_mb {self.gpu_memory_mb} at "
                              f"{self.gpu_memory_gib_per_vcpu:g} GiB per vCPU is under 1 vCPU")
        if not 1 <= self.gpu_processes_per_environment <= LMI_MAX_CONCURRENCY:
            raise RenderError(f"gpu_processes_per_environment must be in 1..{LMI_MAX_CONCURRENCY}, "
                              f"got {self.gpu_processes_per_environment}")
        if not 0 < self.gpu_target_utilization_percent <= 100:
            raise RenderError(f"gpu_target_utilization_percent must be in (0, 100], "
                              f"got {self.gpu_target_utilization_percent}")

    @property
    def gpu_vcpus(self) -> float:
        """vCPUs of one GPU execution environment: its memory over the memory per vCPU."""
        return self.gpu_memory_mb / 1024 / self.gpu_memory_gib_per_vcpu


def ref(name: str) -> dict[str, Any]:
    return {"Ref": name}


def getatt(name: str, attribute: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [name, attribute]}


def sub(text: str) -> dict[str, Any]:
    return {"Fn::Sub": text}


def if_(condition: str, then: Any, otherwise: Any) -> dict[str, Any]:
    return {"Fn::If": [condition, then, otherwise]}


NO_VALUE = {"Ref": "AWS::NoValue"}
# Stateful resources say explicitly what a stack delete does (cfn-lint I3011): everything MBS
# keeps is transient (queued requests, results with a TTL, logs with a retention), so it goes.
DELETE_WITH_STACK = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}


def conditional(resources: dict[str, Any], condition: str) -> dict[str, Any]:
    """The same resources, each created only when `condition` holds (Condition after Type)."""
    return {logical: {"Type": r["Type"], "Condition": condition,
                      **{k: v for k, v in r.items() if k != "Type"}}
            for logical, r in resources.items()}


def allow(actions: list[str], resource: Any) -> dict[str, Any]:
    """An inline IAM policy granting exactly `actions` on `resource` (no wildcards)."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}


def alarm_actions() -> dict[str, Any]:
    """Alarm notifications go to AlarmTopicArn when one is given."""
    return if_("HasAlarmTopic", [ref("AlarmTopicArn")], NO_VALUE)


def image_build_metadata(code_dir: str, dockerfile: str = "Dockerfile",
                         tag: str = "python3.12-v1") -> dict[str, Any]:
    """How `sam build` builds an infer image: the staged code with its Dockerfile. Functions with
    equal metadata share one build (SAM CLI's build graph)."""
    return {"Dockerfile": dockerfile, "DockerContext": code_dir, "DockerTag": tag}


def checkov_skips(*skips: tuple[str, str]) -> dict[str, Any]:
    """Resource Metadata that suppresses checkov checks, each with its written reason."""
    return {"checkov": {"skip": [{"id": check, "comment": why} for check, why in skips]}}


def logical_suffix(buffer_name: str) -> str:
    """A buffer name as a CloudFormation logical-id part: 'x-long_2' -> 'XLong2'."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", buffer_name) if p]
    return "".join(p[:1].upper() + p[1:] for p in parts)


def check_suffixes(buffers: tuple[BufferSpec, ...]) -> dict[str, str]:
    """Buffer name -> logical suffix; RenderError if two names collapse to one suffix."""
    out: dict[str, str] = {}
    for spec in buffers:
        suffix = logical_suffix(spec.name)
        if not suffix:
            raise RenderError(f"buffer name {spec.name!r} has no letter or digit for a logical id")
        clash = [name for name, s in out.items() if s.lower() == suffix.lower()]
        if clash:
            raise RenderError(f"buffer names {clash[0]!r} and {spec.name!r} give the same "
                              f"logical id suffix {suffix!r}; rename one")
        out[spec.name] = suffix
    return out
