"""Logs carry ids, never the texts users send (at every log level, on success and failure)."""

from __future__ import annotations

import json
import logging

import pytest

from functions import dlq, infer, ingest, results
from infra.local.events import LocalLambdaContext, sqs_event
from infra.local.faults import Faults, injected

SECRET_TEXT = "my confidential diagnosis is zebra-quartz-7731"


@pytest.fixture
def debug_logs():
    modules = (dlq, infer, ingest, results)
    for module in modules:
        module.logger.setLevel(logging.DEBUG)
    yield
    for module in modules:
        module.logger.setLevel(logging.WARNING)


def _post(text: str) -> dict:
    event = {"version": "2.0", "routeKey": "POST /v1/requests", "rawPath": "/v1/requests",
             "rawQueryString": "", "headers": {"content-type": "application/json"},
             "requestContext": {"http": {"method": "POST", "path": "/v1/requests",
                                         "sourceIp": "127.0.0.1"}, "stage": "$default",
                                "requestId": "r", "routeKey": "POST /v1/requests"},
             "body": json.dumps({"text": text}), "isBase64Encoded": False}
    reply = ingest.handler(event, LocalLambdaContext("mbs-ingest"))
    assert reply["statusCode"] == 202
    return json.loads(reply["body"])


@pytest.mark.model
def test_texts_never_reach_the_logs(aws, embedder, debug_logs, caplog):
    # GIVEN two requests, one of which the model rejects (a failure path that logs)
    with injected(Faults(poison_marker="zebra")):
        good = _post("an ordinary sentence")
        bad = _post(SECRET_TEXT)
        messages = aws.receive("short")
        # WHEN infer runs the batch (isolating the poison) and the DLQ handler fails it
        reply = infer.handler(sqs_event(messages, aws.resources.queue_arns["short"]),
                              LocalLambdaContext("mbs-infer-short"))
        dead = [m for m in messages if json.loads(m["Body"])["id"] == bad["id"]]
        dlq.handler(sqs_event(dead, aws.resources.dlq_arns["short"]),
                    LocalLambdaContext("mbs-dlq"))
    # THEN the logs name the requests by id, and never contain the text
    # Each record as Powertools emits it (its JSON formatter, with every extra key).
    formatter = ingest.logger.registered_formatter
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert len(reply["batchItemFailures"]) == 1
    assert bad["id"] in logged and good["id"] in logged
    assert "zebra" not in logged and "diagnosis" not in logged
