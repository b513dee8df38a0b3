"""Build the AWS event shapes the handlers receive: API Gateway HTTP API (v2) and SQS. Pure."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


def apigw_v2_event(
    method: str,
    path: str,
    route_key: str,
    headers: dict[str, str],
    body: bytes,
    query: str = "",
    path_parameters: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    now_ms: int | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event, as API Gateway builds it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    lowered = {k.lower(): v for k, v in headers.items()}
    # API Gateway passes text bodies as-is and anything that is not valid UTF-8 as base64.
    try:
        body_text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        body_text, is_b64 = base64.b64encode(body).decode("ascii"), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": lowered.get("user-agent", "")},
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": is_b64,
    }
    if body:
        event["body"] = body_text
    if path_parameters:
        event["pathParameters"] = path_parameters
    if query:
        # API Gateway decodes each value (and joins a repeated name's values with commas).
        pairs = parse_qsl(query, keep_blank_values=True)
        joined: dict[str, list[str]] = {}
        for name, value in pairs:
            joined.setdefault(name, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in joined.items()}
    return event


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The Lambda SQS event for messages as ReceiveMessage returned them."""
    records = []
    for message in messages:
        attrs = message.get("Attributes", {})
        records.append({
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attrs.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attrs.get("SenderId", ACCOUNT_ID),
                "ApproximateFirstReceiveTimestamp": attrs.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))),
            },
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(
                message["Body"].encode(), usedforsecurity=False).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        })
    return {"Records": records}


@dataclass
class LocalLambdaContext:
    """The context object Lambda passes to a handler, for in-process invocation."""

    function_name: str
    memory_limit_in_mb: int = 3008
    timeout_s: float = 900.0
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))
