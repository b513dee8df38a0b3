"""Functional tests: the Lambda handlers in-process, real-shaped events, moto behind boto3."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import numpy as np
import pytest

from functions import infer, ingest, results
from functions.shared import deps
from functions.shared.store import DONE, PENDING
from infra.local.events import LocalLambdaContext, sqs_event
from infra.local.faults import Faults, injected
from tests.conftest import AwsStack, load_event

SHORT_TEXT = "a quietly moving film"
LONG_TEXT = " ".join(["remarkable"] * 90)  # 90 words + [CLS] + [SEP]: the "long" buffer
HUGE_TEXT = " ".join(["word"] * 300)  # past the model's 256-token limit


# ---- helpers ---------------------------------------------------------------------------------


def post(body: str | bytes | None, content_type: str | None = "application/json",
         path: str = "/v1/requests") -> dict[str, Any]:
    """The stored POST event with its body, content type and path replaced; ingest's reply."""
    event = load_event("apigw_v2_post")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if content_type is None:
        del event["headers"]["content-type"]
    else:
        event["headers"]["content-type"] = content_type
    if body is None:
        event.pop("body", None)
    elif isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body
    event["headers"]["content-length"] = str(len(event.get("body", "")))
    return ingest.handler(event, LocalLambdaContext(function_name="mbs-ingest"))


def post_text(text: str, **fields: Any) -> dict[str, Any]:
    reply = post(json.dumps({"text": text, **fields}))
    assert reply["statusCode"] == 202, reply
    return json.loads(reply["body"])


def get(request_id: str, as_tenant: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET a result; as_tenant calls with a JWT identity (API Gateway's authorizer context)."""
    event = load_event("apigw_v2_get")
    path = f"/v1/requests/{request_id}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"id": request_id}
    if as_tenant is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": as_tenant},
                                                         "scopes": None}}
    reply = results.handler(event, LocalLambdaContext(function_name="mbs-results"))
    return reply["statusCode"], json.loads(reply["body"])


def run_infer(event: dict[str, Any]) -> dict[str, Any]:
    return infer.handler(event, LocalLambdaContext(function_name="mbs-infer-short"))


def queued_event(aws: AwsStack, buffer: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The SQS event Lambda would get for everything now on the buffer's queue."""
    messages = aws.receive(buffer)
    return sqs_event(messages, aws.resources.queue_arns[buffer]), messages


def failures(response: dict[str, Any]) -> list[str]:
    return sorted(f["itemIdentifier"] for f in response["batchItemFailures"])


# ---- ingest ------------------------------------------------------------------------------------


def test_stored_post_event_is_accepted(aws):
    reply = ingest.handler(load_event("apigw_v2_post"), LocalLambdaContext("mbs-ingest"))
    assert reply["statusCode"] == 202
    assert reply["headers"]["Content-Type"] == "application/json"
    body = json.loads(reply["body"])
    assert body["buffer"] == "short"
    status, item = get(body["id"], as_tenant="acme")
    assert (status, item["tenant"], item["slo_ms"]) == (200, "acme", 1000)
    assert get(body["id"])[0] == 404  # another tenant (here: anonymous) cannot read it


def test_ingest_short_text_goes_to_the_short_queue(aws):
    body = post_text(SHORT_TEXT, tenant="acme")
    assert set(body) == {"id", "buffer", "length", "truncated", "original_length"}
    assert len(body["id"]) == 32
    assert body["buffer"] == "short"
    assert body["length"] == body["original_length"] == 6  # [CLS] a quietly moving film [SEP]
    assert body["truncated"] is False
    # THEN one PENDING item and exactly one message, on the short queue only
    status, item = get(body["id"], as_tenant="acme")
    assert status == 200
    assert (item["status"], item["buffer"], item["length"], item["tenant"]) == (
        PENDING, "short", 6, "acme")
    assert "embedding" not in item
    assert aws.queue_depths() == {"short": 1, "medium": 0, "long": 0, "xlong": 0}
    (message,) = aws.receive("short")
    sent = json.loads(message["Body"])
    assert (sent["id"], sent["text"], sent["length"], sent["buffer"], sent["tenant"]) == (
        body["id"], SHORT_TEXT, 6, "short", "acme")
    assert sent["enqueued_at_ms"] == item["enqueued_at_ms"]


def test_ingest_long_text_goes_to_a_longer_buffer(aws):
    body = post_text(LONG_TEXT)
    assert body["length"] == 92
    assert body["buffer"] == "long"  # 65..128 in the default plan
    assert aws.queue_depths() == {"short": 0, "medium": 0, "long": 1, "xlong": 0}
    assert get(body["id"])[1]["buffer"] == "long"


def test_text_over_the_model_limit_is_truncated(aws):
    body = post_text(HUGE_TEXT)
    assert body["truncated"] is True
    assert body["length"] == 256
    assert body["original_length"] == 302
    assert body["buffer"] == "xlong"
    status, item = get(body["id"])
    assert (item["length"], item["full_length"], item["truncated"]) == (256, 302, True)


def test_base64_encoded_body_is_accepted(aws):
    reply = post(json.dumps({"text": SHORT_TEXT}).encode())
    assert reply["statusCode"] == 202
    assert aws.queue_depths()["short"] == 1


def test_each_request_gets_its_own_id(aws):
    ids = {post_text(SHORT_TEXT)["id"] for _ in range(3)}
    assert len(ids) == 3
    assert aws.item_count() == 3
    assert aws.queue_depths()["short"] == 3


BAD_POSTS = [
    # (id, body, content type, status, code)
    ("wrong-content-type", '{"text": "x"}', "text/plain", 415, "unsupported_media_type"),
    ("no-content-type", '{"text": "x"}', None, 415, "unsupported_media_type"),
    ("too-large", json.dumps({"text": "x" * 70_000}), "application/json", 413, "body_too_large"),
    ("no-body", None, "application/json", 400, "empty_body"),
    ("empty-body", "", "application/json", 400, "empty_body"),
    ("invalid-utf8", b'{"text": "\xff"}', "application/json", 400, "invalid_utf8"),
    ("invalid-json", '{"text": ', "application/json", 400, "invalid_json"),
    ("non-object", '["x"]', "application/json", 400, "wrong_type"),
    ("missing-text", '{"tenant": "a"}', "application/json", 400, "missing_field"),
    ("blank-text", '{"text": "  "}', "application/json", 400, "empty_text"),
    ("non-string-text", '{"text": 3}', "application/json", 400, "wrong_type"),
    ("unknown-field", '{"text": "x", "k": 1}', "application/json", 400, "unknown_field"),
    ("bad-tenant", '{"text": "x", "tenant": "a b"}', "application/json", 400, "invalid_tenant"),
    ("slo-bool", '{"text": "x", "slo_ms": true}', "application/json", 400, "wrong_type"),
    ("slo-zero", '{"text": "x", "slo_ms": 0}', "application/json", 400, "out_of_range"),
    ("bad-base64", None, "application/json", 400, "invalid_body"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"),
                         [c[1:] for c in BAD_POSTS], ids=[c[0] for c in BAD_POSTS])
def test_bad_input_is_a_json_4xx_with_nothing_stored_or_queued(aws, body, content_type, status,
                                                                code):
    if code == "invalid_body":
        event = load_event("apigw_v2_post")
        event["body"], event["isBase64Encoded"] = "%%% not base64 %%%", True
        reply = ingest.handler(event, LocalLambdaContext(function_name="mbs-ingest"))
    else:
        reply = post(body, content_type)
    assert reply["statusCode"] == status
    assert reply["headers"]["Content-Type"] == "application/json"
    error = json.loads(reply["body"])["error"]
    assert error["code"] == code
    assert error["message"]
    assert aws.item_count() == 0
    assert aws.queue_depths() == {"short": 0, "medium": 0, "long": 0, "xlong": 0}


def test_unknown_route_is_a_json_404(aws):
    reply = post('{"text": "x"}', path="/v1/other")
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["error"]["code"] == "not_found"
    assert aws.item_count() == 0


def test_enqueue_failure_is_a_503_and_the_item_is_failed(aws):
    # GIVEN a queue that no longer exists
    aws.sqs.delete_queue(QueueUrl=aws.resources.queue_urls["short"])
    reply = post(json.dumps({"text": SHORT_TEXT}))
    assert reply["statusCode"] == 503
    assert json.loads(reply["body"])["error"]["code"] == "unavailable"
    # THEN the request is recorded as FAILED, never left PENDING forever
    (item,) = aws.ddb.scan(TableName=aws.resources.table_name)["Items"]
    assert item["status"]["S"] == "FAILED"


def test_injected_enqueue_outage_is_a_503_and_the_item_is_failed(aws):
    # GIVEN a queue sender whose first send fails (the fault wraps the port from outside)
    with injected(Faults(send_errors=1)):
        reply = post(json.dumps({"text": SHORT_TEXT}))
        retried = post_text(SHORT_TEXT)
    # THEN the first request is FAILED with a 503, and the next one goes through
    assert reply["statusCode"] == 503
    assert get(retried["id"])[1]["status"] == PENDING
    statuses = sorted(i["status"]["S"] for i in
                      aws.ddb.scan(TableName=aws.resources.table_name)["Items"])
    assert statuses == ["FAILED", "PENDING"]
    assert aws.queue_depths()["short"] == 1


def test_saturated_buffer_answers_429_with_retry_after_and_stores_nothing(aws, monkeypatch):
    # GIVEN a depth limit of 2 waiting messages on a buffer's queue
    monkeypatch.setenv("MBS_MAX_QUEUE_DEPTH", "2")
    deps.reset()
    post_text(SHORT_TEXT)
    post_text(SHORT_TEXT)
    deps.queue_depth()._cache.clear()  # the cached depth is 1 s old at most; skip the wait
    # WHEN a third short request arrives
    reply = post(json.dumps({"text": SHORT_TEXT}))
    # THEN it is refused with 429 and Retry-After, and nothing is stored or enqueued for it
    assert reply["statusCode"] == 429
    assert reply["headers"]["Retry-After"] == "1"
    assert json.loads(reply["body"])["error"]["code"] == "overloaded"
    assert aws.item_count() == 2
    assert aws.queue_depths()["short"] == 2
    # AND other buffers still take requests
    assert post_text("word " * 100)["buffer"] != "short"


# ---- results -----------------------------------------------------------------------------------


def test_stored_get_event_for_an_unknown_id_is_a_404(aws):
    reply = results.handler(load_event("apigw_v2_get"), LocalLambdaContext("mbs-results"))
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["error"]["code"] == "unknown_id"


@pytest.mark.parametrize("bad_id", ["not-an-id", "ABCDEF0123456789ABCDEF0123456789", "1234"])
def test_malformed_id_is_a_400(aws, bad_id):
    status, body = get(bad_id)
    assert (status, body["error"]["code"]) == (400, "invalid_id")


def test_results_for_a_pending_request(aws):
    request_id = post_text(SHORT_TEXT)["id"]
    status, body = get(request_id)
    assert status == 200
    assert (body["id"], body["status"], body["truncated"]) == (request_id, PENDING, False)


# ---- infer ------------------------------------------------------------------------------------


@pytest.mark.model
def test_infer_completes_a_batch_and_redelivery_changes_nothing(aws, embedder):
    # GIVEN three short requests accepted by ingest and waiting on the short queue
    texts = [SHORT_TEXT, "the plot is thin but the acting is superb throughout", "dull"]
    accepted = [post_text(t) for t in texts]
    event, messages = queued_event(aws, "short")
    assert len(messages) == 3
    # WHEN the infer function gets them as one SQS batch
    response = run_infer(event)
    # THEN every request is DONE with a unit-length 384-dim embedding from one padded batch
    assert response == {"batchItemFailures": []}
    done = {}
    for body in accepted:
        status, item = get(body["id"])
        assert status == 200
        assert item["status"] == DONE
        vector = np.array(item["embedding"])
        assert vector.shape == (384,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
        assert item["batch_size"] == 3
        assert item["padded_length"] == max(b["length"] for b in accepted)
        assert item["batch_real_tokens"] == sum(b["length"] for b in accepted)
        assert item["queue_wait_ms"] >= 0
        assert item["inference_ms"] > 0
        assert len(item["batch_id"]) == 32
        assert item["completed_at_ms"] >= item["enqueued_at_ms"]
        assert item["device"] == embedder.device
        done[body["id"]] = item
    assert len({item["batch_id"] for item in done.values()}) == 1
    # WHEN the same batch is delivered again (SQS is at-least-once)
    assert run_infer(event) == {"batchItemFailures": []}
    # THEN the stored results are untouched
    for request_id, before in done.items():
        assert get(request_id)[1] == before


@pytest.mark.model
def test_embedding_matches_the_model_run_alone(aws, embedder):
    request_id = post_text(SHORT_TEXT)["id"]
    post_text("an entirely different and much longer review of a very different film")
    run_infer(queued_event(aws, "short")[0])
    stored = np.array(get(request_id)[1]["embedding"])
    alone = embedder.embed([SHORT_TEXT]).vectors[0]
    assert float(stored @ alone) >= 0.999


@pytest.mark.model
def test_malformed_record_fails_alone(aws, embedder):
    # GIVEN a good queued request and a record whose body is not an ingest message
    good_id = post_text(SHORT_TEXT)["id"]
    event, _ = queued_event(aws, "short")
    bad = load_event("sqs_batch")["Records"][1]
    bad["body"] = '{"id": "0123"'
    event["Records"].append(bad)
    # WHEN infer runs the batch
    response = run_infer(event)
    # THEN only the bad record is reported for retry, and the good one is done
    assert failures(response) == [bad["messageId"]]
    assert get(good_id)[1]["status"] == DONE


@pytest.mark.model
def test_message_for_a_missing_request_fails_instead_of_vanishing(aws, embedder):
    # GIVEN a queued request whose results item is gone (e.g. expired by TTL)
    request_id = post_text(SHORT_TEXT)["id"]
    event, messages = queued_event(aws, "short")
    boto3.client("dynamodb").delete_item(TableName=aws.resources.table_name,
                                         Key={"id": {"S": request_id}})
    # WHEN infer runs the batch
    response = run_infer(event)
    # THEN the message is reported failed (retried, then dead-lettered), not taken as a duplicate
    assert failures(response) == [messages[0]["MessageId"]]
    assert get(request_id)[0] == 404


@pytest.mark.model
def test_stored_sqs_event_completes_its_pending_requests(aws, embedder):
    # GIVEN the PENDING items the stored SQS batch refers to
    event = load_event("sqs_batch")
    for record in event["Records"]:
        body = json.loads(record["body"])
        aws.ddb.put_item(TableName=aws.resources.table_name, Item={
            "id": {"S": body["id"]}, "status": {"S": PENDING}, "buffer": {"S": body["buffer"]},
            "tenant": {"S": body["tenant"]}, "length": {"N": str(body["length"])},
            "full_length": {"N": str(body["length"])},
            "enqueued_at_ms": {"N": str(body["enqueued_at_ms"])}})
    assert run_infer(event) == {"batchItemFailures": []}
    for record in event["Records"]:
        body = json.loads(record["body"])
        item = get(body["id"], as_tenant=body["tenant"])[1]
        assert (item["status"], item["batch_size"], item["padded_length"]) == (DONE, 2, 6)


@pytest.mark.model
def test_infer_emits_batch_metrics_as_emf(aws, embedder, monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    accepted = [post_text(SHORT_TEXT), post_text("dull")]
    capsys.readouterr()
    run_infer(queued_event(aws, "short")[0])
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{") and '"_aws"' in line]
    batch_blobs = [b for b in blobs if "BatchSize" in b]
    assert len(batch_blobs) == 1
    blob = batch_blobs[0]
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MBS"
    assert directive["Dimensions"] == [["buffer", "service"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"BatchSize", "RealTokens", "PaddedTokens", "InferenceMs"} <= names
    assert blob["buffer"] == "short"
    assert blob["BatchSize"] == [2]  # EMF values are lists: one entry per add_metric call
    assert blob["RealTokens"] == [sum(b["length"] for b in accepted)]
    assert blob["PaddedTokens"] == [2 * max(b["length"] for b in accepted)]
    assert blob["InferenceMs"][0] > 0


@pytest.mark.model
def test_redelivery_emits_a_duplicate_metric(aws, embedder, monkeypatch, capsys):
    post_text(SHORT_TEXT)
    event, _ = queued_event(aws, "short")
    run_infer(event)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    run_infer(event)
    out = capsys.readouterr().out
    assert '"DuplicateDeliveries"' in out


def test_model_load_failure_fails_every_record_and_keeps_items_pending(aws):
    # GIVEN two queued requests and a model that cannot load (a fresh cold start)
    ids = [post_text(SHORT_TEXT)["id"], post_text("dull")["id"]]
    event, messages = queued_event(aws, "short")
    with injected(Faults(fail_model_load=True)):
        # WHEN infer runs
        response = run_infer(event)
    # THEN every record is reported for retry and nothing is marked done or failed
    assert failures(response) == sorted(m["MessageId"] for m in messages)
    for request_id in ids:
        assert get(request_id)[1]["status"] == PENDING
