"""The plan: an ordered set of length-range buffers, validated and versioned, stored as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

PLAN_VERSION = 1
MODEL_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)

# AWS Lambda limits (Lambda quotas page): memory 128-10,240 MB.
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
# SQS event source mapping rules (AWS Lambda developer guide, "Using Lambda with Amazon SQS"):
# the batching window is whole seconds 0-300, BatchSize 1-10,000, and a BatchSize above 10
# requires a window of at least 1 s; MaximumConcurrency is 2-1,000.
MAX_WINDOW_S = 300
MAX_MANAGED_BATCH = 10_000
MAX_BATCH_WITHOUT_WINDOW = 10
MIN_CONCURRENCY, MAX_CONCURRENCY = 2, 1_000
# Buffer names become SQS queue names (ASCII letters, digits, '-', '_'; 80 chars with our prefix).
BUFFER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
# A Lambda invocation payload is at most 6 MB; 1,024 texts of <=4 KiB each stay well inside.
MAX_DISPATCHER_BATCH = 1_024
# The gpu backend's fleet (Lambda Managed Instances). "It launches three [instances] by default
# for AZ resiliency" (Lambda developer guide, "Scaling Lambda Managed Instances"), so a plan's
# floor defaults to three. The ceiling is bounded by FunctionScalingConfig's
# MaxExecutionEnvironments, at most 15,000 (CloudFormation, AWS::Lambda::Function), with one
# execution environment per GPU instance (infra/aws/template/gpu.py).
DEFAULT_MIN_INSTANCES = 3
MAX_FLEET_INSTANCES = 15_000
# An EC2 instance type is "family.size", e.g. g6.xlarge; which types the template can deploy is
# the renderer's catalog (infra/aws/template/gpu.py), not the plan's.
INSTANCE_TYPE_PATTERN = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
# The torch dtype the GPU infer function runs (MBS_TORCH_DTYPE, functions/shared/model.py), kept
# in meta["gpu_dtype"] as the GPU profile the plan was searched with measured it; absent means
# float32, so plan files written before the key load unchanged.
GPU_DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_GPU_DTYPE = "float32"


class PlanError(ValueError):
    """A plan file or dict that does not describe a valid plan; the message names the field."""


class BackendType(StrEnum):
    LAMBDA = "lambda"  # CPU Lambda functions, billed per GB-second
    GPU = "gpu"  # a GPU-backed function on Lambda Managed Instances, billed per instance-second


class DispatchMode(StrEnum):
    MANAGED = "managed"  # the SQS event source mapping batches (whole-second windows)
    DISPATCHER = "dispatcher"  # a long-running dispatcher with millisecond timers


@dataclass(frozen=True)
class BufferSpec:
    """One buffer: a contiguous range of token lengths and how its batches are formed."""

    name: str
    min_length: int
    max_length: int
    max_batch_size: int
    timeout_ms: int
    memory_mb: int
    dispatch_mode: DispatchMode = DispatchMode.DISPATCHER
    max_concurrency: int = 10
    max_batch_tokens: int | None = None  # Sarathi-style cap on padded tokens (B x L); None = off

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0

    def accepts(self, length: int) -> bool:
        return self.min_length <= length <= self.max_length


@dataclass(frozen=True)
class Plan:
    """An ordered list of buffers covering token lengths 1..max_length without gaps."""

    buffers: tuple[BufferSpec, ...]
    name: str = "plan"
    max_length: int = MODEL_MAX_LENGTH
    policy: str = "size_timeout"
    version: int = PLAN_VERSION
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    # Where the infer function runs, and for gpu the fleet: its instance type and bounds.
    backend: BackendType = BackendType.LAMBDA
    instance_type: str | None = None
    min_instances: int = DEFAULT_MIN_INSTANCES
    max_instances: int | None = None

    def __post_init__(self) -> None:
        try:  # a plain "gpu" is accepted where BackendType.GPU is meant
            object.__setattr__(self, "backend", BackendType(self.backend))
        except ValueError:
            valid = [b.value for b in BackendType]
            raise PlanError(f"backend must be one of {valid}, got {self.backend!r}") from None
        _validate_plan(self)

    @property
    def gpu_dtype(self) -> str:
        """The dtype the GPU infer function runs for this plan: meta["gpu_dtype"], else float32."""
        return str(self.meta.get("gpu_dtype", DEFAULT_GPU_DTYPE))

    def buffer(self, name: str) -> BufferSpec:
        for spec in self.buffers:
            if spec.name == name:
                return spec
        raise KeyError(f"plan {self.name!r} has no buffer {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "name": self.name,
            "max_length": self.max_length,
            "policy": self.policy,
        }
        # Lambda plans leave the gpu fields out, so their JSON stays as it was before them.
        if self.backend is BackendType.GPU:
            out.update(backend=self.backend.value, instance_type=self.instance_type,
                       min_instances=self.min_instances, max_instances=self.max_instances)
        out["buffers"] = [_spec_to_dict(s) for s in self.buffers]
        out["meta"] = self.meta
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


def _spec_to_dict(spec: BufferSpec) -> dict[str, Any]:
    out = asdict(spec)
    out["dispatch_mode"] = spec.dispatch_mode.value
    return out


def _validate_plan(plan: Plan) -> None:
    if plan.version != PLAN_VERSION:
        raise PlanError(f"version must be {PLAN_VERSION}, got {plan.version!r}")
    if not 1 <= plan.max_length <= MODEL_MAX_LENGTH:
        raise PlanError(f"max_length must be in 1..{MODEL_MAX_LENGTH}, got {plan.max_length}")
    if not plan.buffers:
        raise PlanError("buffers must be a non-empty list, got []")
    names = [b.name for b in plan.buffers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError(f"buffers[].name must be unique, got duplicates {duplicates}")
    expected_min = 1
    for i, spec in enumerate(plan.buffers):
        if spec.min_length != expected_min:
            raise PlanError(
                f"buffers[{i}].min_length must be {expected_min} so buffers cover 1.."
                f"{plan.max_length} without gaps or overlap, got {spec.min_length}"
            )
        if spec.max_length < spec.min_length:
            raise PlanError(
                f"buffers[{i}].max_length must be >= min_length {spec.min_length}, "
                f"got {spec.max_length}"
            )
        _validate_buffer(f"buffers[{i}]", spec)
        expected_min = spec.max_length + 1
    if expected_min - 1 != plan.max_length:
        raise PlanError(
            f"buffers[{len(plan.buffers) - 1}].max_length must equal the plan's max_length "
            f"{plan.max_length}, got {expected_min - 1}"
        )
    _validate_fleet(plan)
    dtype = plan.meta.get("gpu_dtype", DEFAULT_GPU_DTYPE)
    if dtype not in GPU_DTYPES:
        raise PlanError(f"meta.gpu_dtype must be one of {list(GPU_DTYPES)}, got {dtype!r}")


def _validate_fleet(plan: Plan) -> None:
    """Lambda plans carry no fleet; gpu plans name an instance type and the fleet's bounds."""
    if plan.backend is BackendType.LAMBDA:
        _validate_no_fleet(plan)
        return
    if plan.instance_type is None:
        raise PlanError("instance_type is required when backend is 'gpu' (an EC2 GPU "
                        "instance type such as 'g6.xlarge'), got None")
    if not INSTANCE_TYPE_PATTERN.fullmatch(plan.instance_type):
        raise PlanError(f"instance_type must be an EC2 instance type such as 'g6.xlarge', "
                        f"got {plan.instance_type!r}")
    if plan.max_instances is None:
        raise PlanError("max_instances is required when backend is 'gpu' (the fleet's "
                        "ceiling), got None")
    if not 1 <= plan.min_instances <= MAX_FLEET_INSTANCES:
        raise PlanError(f"min_instances must be in 1..{MAX_FLEET_INSTANCES}, "
                        f"got {plan.min_instances}")
    if not plan.min_instances <= plan.max_instances <= MAX_FLEET_INSTANCES:
        raise PlanError(f"max_instances must be in min_instances {plan.min_instances}.."
                        f"{MAX_FLEET_INSTANCES}, got {plan.max_instances}")


def _validate_no_fleet(plan: Plan) -> None:
    for field_name, value, default in (("instance_type", plan.instance_type, None),
                                       ("min_instances", plan.min_instances,
                                        DEFAULT_MIN_INSTANCES),
                                       ("max_instances", plan.max_instances, None)):
        if value != default:
            raise PlanError(f"{field_name} applies to backend 'gpu' only; backend is 'lambda', "
                            f"got {value!r}")


def _validate_buffer(where: str, spec: BufferSpec) -> None:
    if not BUFFER_NAME_PATTERN.fullmatch(spec.name):
        raise PlanError(
            f"{where}.name must be 1-40 ASCII letters, digits, '-' or '_', got {spec.name!r}"
        )
    if spec.max_batch_size < 1:
        raise PlanError(f"{where}.max_batch_size must be >= 1, got {spec.max_batch_size}")
    if spec.timeout_ms < 0:
        raise PlanError(f"{where}.timeout_ms must be >= 0, got {spec.timeout_ms}")
    if not MIN_MEMORY_MB <= spec.memory_mb <= MAX_MEMORY_MB:
        raise PlanError(
            f"{where}.memory_mb must be in {MIN_MEMORY_MB}..{MAX_MEMORY_MB}, got {spec.memory_mb}"
        )
    if not MIN_CONCURRENCY <= spec.max_concurrency <= MAX_CONCURRENCY:
        raise PlanError(
            f"{where}.max_concurrency must be in {MIN_CONCURRENCY}..{MAX_CONCURRENCY}, "
            f"got {spec.max_concurrency}"
        )
    if spec.max_batch_tokens is not None and spec.max_batch_tokens < spec.max_length:
        raise PlanError(
            f"{where}.max_batch_tokens must be >= the buffer's max_length {spec.max_length} "
            f"(or null), got {spec.max_batch_tokens}"
        )
    if spec.dispatch_mode is DispatchMode.MANAGED:
        _validate_managed(where, spec)
    elif spec.max_batch_size > MAX_DISPATCHER_BATCH:
        raise PlanError(
            f"{where}.max_batch_size must be <= {MAX_DISPATCHER_BATCH} in dispatcher mode, "
            f"got {spec.max_batch_size}"
        )


def _validate_managed(where: str, spec: BufferSpec) -> None:
    if spec.timeout_ms % 1000:
        raise PlanError(
            f"{where}.timeout_ms must be a whole number of seconds in managed mode "
            f"(MaximumBatchingWindowInSeconds), got {spec.timeout_ms}"
        )
    if spec.timeout_ms > MAX_WINDOW_S * 1000:
        raise PlanError(
            f"{where}.timeout_ms must be <= {MAX_WINDOW_S * 1000} in managed mode, "
            f"got {spec.timeout_ms}"
        )
    if spec.max_batch_size > MAX_MANAGED_BATCH:
        raise PlanError(
            f"{where}.max_batch_size must be <= {MAX_MANAGED_BATCH} in managed mode, "
            f"got {spec.max_batch_size}"
        )
    if spec.timeout_ms == 0 and spec.max_batch_size > MAX_BATCH_WITHOUT_WINDOW:
        raise PlanError(
            f"{where}.max_batch_size must be <= {MAX_BATCH_WITHOUT_WINDOW} when the managed "
            f"batching window is 0 s, got {spec.max_batch_size}"
        )
