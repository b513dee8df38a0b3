"""The CloudWatch dashboard: the API, then one row per buffer (queue, DLQ, batches, padding)."""

from __future__ import annotations

import json
from typing import Any

from buffers.plan import BufferSpec
from infra.aws.template.buffers import BufferIds
from infra.aws.template.common import sub

WIDTH, HEIGHT = 8, 6


def _widget(title: str, metrics: list[list[Any]], x: int, y: int, stat: str) -> dict[str, Any]:
    return {"type": "metric", "x": x, "y": y, "width": WIDTH, "height": HEIGHT,
            "properties": {"title": title, "region": "${AWS::Region}", "stat": stat,
                           "period": 60, "view": "timeSeries", "metrics": metrics}}


def _buffer_row(spec: BufferSpec, ids: BufferIds, y: int) -> list[dict[str, Any]]:
    name = spec.name
    queue = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
             f"${{{ids.queue}.QueueName}}"]
    dlq = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
           f"${{{ids.dlq}.QueueName}}", {"label": "DLQ"}]
    age = ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName",
           f"${{{ids.queue}.QueueName}}", {"label": "oldest message age (s)"}]
    duration = ["AWS/Lambda", "Duration", "FunctionName", f"${{{ids.function}}}",
                {"stat": "p99", "label": "p99 duration (ms)"}]
    # infer's EMF metrics (functions/infer.py): namespace MBS, dimensions service and buffer.
    emf = [["MBS", metric, "buffer", name, "service", "infer", {"label": metric}]
           for metric in ("BatchSize", "RealTokens", "PaddedTokens")]
    return [
        _widget(f"{name} ({spec.min_length}-{spec.max_length} tokens): queue and DLQ",
                [queue, dlq, age], 0, y, "Maximum"),
        _widget(f"{name}: infer duration", [duration], WIDTH, y, "p99"),
        _widget(f"{name}: batch size and tokens (real vs padded)", emf, 2 * WIDTH, y, "Sum"),
    ]


def dashboard(buffers: tuple[BufferSpec, ...], suffixes: dict[str, str]) -> dict[str, Any]:
    """The AWS::CloudWatch::Dashboard resource; its body is an Fn::Sub over logical ids."""
    api = [["AWS/ApiGateway", "Count", "ApiId", "${HttpApi}"],
           ["AWS/ApiGateway", "4xx", "ApiId", "${HttpApi}"],
           ["AWS/ApiGateway", "5xx", "ApiId", "${HttpApi}"]]
    latency = [["AWS/ApiGateway", "Latency", "ApiId", "${HttpApi}", {"stat": "p99"}]]
    widgets = [_widget("API requests and errors", api, 0, 0, "Sum"),
               _widget("API p99 latency (ms)", latency, WIDTH, 0, "p99")]
    for row, spec in enumerate(buffers, start=1):
        widgets += _buffer_row(spec, BufferIds.of(suffixes[spec.name]), row * HEIGHT)
    body = json.dumps({"widgets": widgets}, indent=1)
    return {"Dashboard": {"Type": "AWS::CloudWatch::Dashboard",
                          "Properties": {"DashboardBody": sub(body)}}}
