"""Per-buffer resources: an SQS queue and its DLQ, an infer function (container image) with the
buffer's memory, the SQS event source mapping with the buffer's batching, alarms and outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from buffers.plan import (
    MAX_BATCH_WITHOUT_WINDOW,
    MAX_CONCURRENCY,
    MAX_MANAGED_BATCH,
    MAX_WINDOW_S,
    MIN_CONCURRENCY,
    BufferSpec,
    DispatchMode,
    Plan,
)
from infra.aws.template.common import (
    DELETE_WITH_STACK,
    DLQ_FUNCTION_TIMEOUT_S,
    INFER_HANDLER,
    MAX_VISIBILITY_TIMEOUT_S,
    RenderError,
    RenderOptions,
    alarm_actions,
    allow,
    checkov_skips,
    getatt,
    image_build_metadata,
    ref,
    sub,
)

# "Using Lambda with Amazon SQS" (Lambda developer guide): set the queue's visibility timeout to at
# least six times the function timeout, plus MaximumBatchingWindowInSeconds, and the redrive
# policy's maxReceiveCount to at least 5, so throttled batches are retried before the DLQ.
VISIBILITY_FACTOR = 6
MAX_RECEIVE_COUNT = 5
QUEUE_RETENTION_S = 4 * 24 * 3600  # the SQS default
# A message keeps its original enqueue time in the DLQ, so the DLQ must retain longer (SQS
# developer guide, "dead-letter queues"); 14 days is the SQS maximum.
DLQ_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class EsmSettings:
    """The SQS event source mapping's batching for one buffer."""

    batch_size: int
    window_s: int
    max_concurrency: int

    def api_fields(self) -> dict[str, Any]:
        """The fields as CreateEventSourceMapping / UpdateEventSourceMapping take them."""
        return {"BatchSize": self.batch_size, "MaximumBatchingWindowInSeconds": self.window_s,
                "ScalingConfig": {"MaximumConcurrency": self.max_concurrency}}


def esm_settings(spec: BufferSpec) -> EsmSettings:
    """Managed buffers: the plan's values. Dispatcher buffers: the nearest managed settings.

    The fallback rounds the millisecond timeout up to whole seconds (the window's unit), so it
    keeps the plan's batch sizes but not its sub-second latency.
    """
    batch = min(spec.max_batch_size, MAX_MANAGED_BATCH)
    if spec.dispatch_mode is DispatchMode.MANAGED:
        window_s = spec.timeout_ms // 1000  # whole seconds: the plan validator checked
    else:
        window_s = min(MAX_WINDOW_S, math.ceil(spec.timeout_ms / 1000))
        if batch > MAX_BATCH_WITHOUT_WINDOW:
            window_s = max(window_s, 1)  # BatchSize > 10 needs a window >= 1 s
    concurrency = min(max(spec.max_concurrency, MIN_CONCURRENCY), MAX_CONCURRENCY)
    return EsmSettings(batch_size=batch, window_s=window_s, max_concurrency=concurrency)


def deployed_bulk_plan(plan: Plan) -> Plan:
    """The plan as the bulk path's event source mappings carry it out: every buffer managed,
    with its EsmSettings (dispatcher-mode timeouts rounded up to whole-second windows)."""
    buffers = []
    for spec in plan.buffers:
        esm = esm_settings(spec)
        buffers.append(replace(spec, dispatch_mode=DispatchMode.MANAGED,
                               timeout_ms=esm.window_s * 1000, max_batch_size=esm.batch_size,
                               max_concurrency=esm.max_concurrency))
    return replace(plan, buffers=tuple(buffers), name=f"{plan.name} (as deployed)")


def visibility_timeout_s(function_timeout_s: int, window_s: int) -> int:
    """6 x function timeout + batching window, per the SQS-Lambda guidance."""
    value = VISIBILITY_FACTOR * function_timeout_s + window_s
    if value > MAX_VISIBILITY_TIMEOUT_S:
        raise RenderError(f"visibility timeout {value} s (6 x {function_timeout_s} s + "
                          f"{window_s} s) exceeds the SQS maximum {MAX_VISIBILITY_TIMEOUT_S} s; "
                          f"lower the infer timeout")
    return value


@dataclass(frozen=True)
class BufferIds:
    """Logical ids of one buffer's resources."""

    queue: str
    dlq: str
    function: str
    log_group: str
    mapping: str
    dlq_mapping: str
    dlq_alarm: str
    slo_alarm: str

    @classmethod
    def of(cls, suffix: str) -> BufferIds:
        return cls(queue=f"Queue{suffix}", dlq=f"Dlq{suffix}", function=f"Infer{suffix}Function",
                   log_group=f"Infer{suffix}LogGroup", mapping=f"Mapping{suffix}",
                   dlq_mapping=f"DlqMapping{suffix}",
                   dlq_alarm=f"Dlq{suffix}Alarm", slo_alarm=f"Slo{suffix}Alarm")


_QUEUE_SKIPS = checkov_skips(
    ("CKV_AWS_27", "Encrypted at rest with SQS managed keys (SqsManagedSseEnabled: SSE-SQS); "
                   "the check looks only for a KMS key, which would add KMS request costs per "
                   "message and kms: permissions for every producer and consumer."))


def _queues(spec: BufferSpec, ids: BufferIds, visibility_s: int) -> dict[str, Any]:
    dlq = {"MessageRetentionPeriod": DLQ_RETENTION_S, "SqsManagedSseEnabled": True,
           "VisibilityTimeout": visibility_timeout_s(DLQ_FUNCTION_TIMEOUT_S, 0)}
    queue = {
        "VisibilityTimeout": visibility_s,
        "MessageRetentionPeriod": QUEUE_RETENTION_S,
        "SqsManagedSseEnabled": True,
        "RedrivePolicy": {"deadLetterTargetArn": getatt(ids.dlq, "Arn"),
                          "maxReceiveCount": MAX_RECEIVE_COUNT},
        "Tags": [{"Key": "mbs:buffer", "Value": spec.name}],
    }
    return {logical: {"Type": "AWS::SQS::Queue", **DELETE_WITH_STACK, "Metadata": _QUEUE_SKIPS,
                      "Properties": props}
            for logical, props in ((ids.dlq, dlq), (ids.queue, queue))}


def _function(spec: BufferSpec, ids: BufferIds, opts: RenderOptions) -> dict[str, Any]:
    metadata = {
        **image_build_metadata(opts.code_dir),
        **checkov_skips(
            ("CKV_AWS_116", "SQS invokes this function through an event source mapping; failed "
                            "records go to the queue's own DLQ by its redrive policy."),
            ("CKV_AWS_117", "The function calls only SQS, DynamoDB and CloudWatch Logs public "
                            "endpoints; a VPC would add NAT cost and ENI set-up for nothing."),
            ("CKV_AWS_115", "Concurrency is capped where it is decided: the event source "
                            "mapping's ScalingConfig.MaximumConcurrency, from the plan."),
            ("CKV_AWS_173", "The variables hold no secrets (table name, queue URLs, the plan); "
                            "Lambda encrypts them at rest with an AWS managed key."),
        ),
    }
    return {"Type": "AWS::Serverless::Function", "Metadata": metadata, "Properties": {
        "Description": f"MBS infer for buffer {spec.name} (token lengths "
                       f"{spec.min_length}-{spec.max_length})",
        "PackageType": "Image",
        "ImageConfig": {"Command": [INFER_HANDLER]},
        "MemorySize": spec.memory_mb,
        "Timeout": opts.infer_timeout_s,
        "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "infer"}},
        "Policies": [
            {"SQSPollerPolicy": {"QueueName": getatt(ids.queue, "QueueName")}},
            # The conditional result write and its duplicate check (functions/shared/store.py),
            # and a job's count update (functions/shared/jobs.py).
            allow(["dynamodb:UpdateItem", "dynamodb:GetItem"], getatt("ResultsTable", "Arn")),
            # A job's part objects, and the error noted for a failed delivery (jobs/ only).
            allow(["s3:PutObject"], sub("${ResultsBucket.Arn}/jobs/*")),
        ],
    }}


def _mapping(spec: BufferSpec, ids: BufferIds) -> dict[str, Any]:
    esm = esm_settings(spec)
    resource: dict[str, Any] = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
        "EventSourceArn": getatt(ids.queue, "Arn"),
        "FunctionName": ref(ids.function),
        **esm.api_fields(),
        # Partial batch responses: infer reports failed items, so only those are retried.
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "Enabled": True,
    }}
    return resource


def _dlq_mapping(ids: BufferIds) -> dict[str, Any]:
    """Dead letters go to functions/dlq.py, which marks their requests FAILED."""
    return {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
        "EventSourceArn": getatt(ids.dlq, "Arn"), "FunctionName": ref("DlqFunction"),
        "BatchSize": 10, "MaximumBatchingWindowInSeconds": 0,
        "ScalingConfig": {"MaximumConcurrency": MIN_CONCURRENCY},
        "FunctionResponseTypes": ["ReportBatchItemFailures"], "Enabled": True}}


def _alarms(spec: BufferSpec, ids: BufferIds) -> dict[str, Any]:
    dlq_alarm = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": f"MBS buffer {spec.name}: dead letters waiting (requests that "
                            f"failed {MAX_RECEIVE_COUNT} times, not yet marked FAILED)",
        "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": getatt(ids.dlq, "QueueName")}],
        "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        "AlarmActions": alarm_actions()}}
    # SLO proxy: the oldest waiting message's age plus the function's p99 duration, in ms.
    slo_alarm = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": f"MBS buffer {spec.name}: queue age + p99 infer duration above SloMs",
        "Metrics": [
            {"Id": "age", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Maximum",
             "Metric": {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName",
                                        "Value": getatt(ids.queue, "QueueName")}]}}},
            {"Id": "duration", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "p99",
             "Metric": {"Namespace": "AWS/Lambda", "MetricName": "Duration",
                        "Dimensions": [{"Name": "FunctionName", "Value": ref(ids.function)}]}}},
            {"Id": "latency", "ReturnData": True, "Label": "queue age + p99 duration (ms)",
             "Expression": "FILL(age, 0) * 1000 + FILL(duration, 0)"},
        ],
        "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": ref("SloMs"),
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        "AlarmActions": alarm_actions()}}
    return {ids.dlq_alarm: dlq_alarm, ids.slo_alarm: slo_alarm}


def buffer_resources(spec: BufferSpec, suffix: str, opts: RenderOptions) -> dict[str, Any]:
    """Every resource of one buffer, keyed by logical id."""
    ids = BufferIds.of(suffix)
    visibility_s = visibility_timeout_s(opts.infer_timeout_s, esm_settings(spec).window_s)
    log_group = {"Type": "AWS::Logs::LogGroup", **DELETE_WITH_STACK,
                 "Metadata": checkov_skips(("CKV_AWS_158", "Function logs hold no request text; "
                                            "CloudWatch Logs encrypts them at rest by default.")),
                 "Properties": {"LogGroupName": sub(f"/aws/lambda/${{{ids.function}}}"),
                                "RetentionInDays": ref("LogRetentionDays")}}
    return {**_queues(spec, ids, visibility_s), ids.function: _function(spec, ids, opts),
            ids.log_group: log_group, ids.mapping: _mapping(spec, ids),
            ids.dlq_mapping: _dlq_mapping(ids), **_alarms(spec, ids)}


def buffer_outputs(spec: BufferSpec, suffix: str) -> dict[str, Any]:
    """Stack outputs for one buffer's queue, DLQ, function and mapping."""
    ids = BufferIds.of(suffix)
    name = spec.name
    outputs = {
        f"{ids.queue}Url": {"Description": f"SQS queue URL of buffer {name}",
                            "Value": ref(ids.queue)},
        f"{ids.queue}Arn": {"Description": f"SQS queue ARN of buffer {name}",
                            "Value": getatt(ids.queue, "Arn")},
        f"{ids.dlq}Url": {"Description": f"dead-letter queue URL of buffer {name}",
                          "Value": ref(ids.dlq)},
        f"{ids.function}Name": {"Description": f"infer function of buffer {name}",
                                "Value": ref(ids.function)},
        f"{ids.function}Arn": {"Description": f"infer function ARN of buffer {name}",
                               "Value": getatt(ids.function, "Arn")},
        f"{ids.mapping}Id": {"Description": f"event source mapping UUID of buffer {name}",
                             "Value": ref(ids.mapping)},
        f"{ids.dlq_mapping}Id": {"Description": f"DLQ consumer mapping UUID of buffer {name}",
                                 "Value": ref(ids.dlq_mapping)},
    }
    return outputs
