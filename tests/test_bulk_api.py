"""The bulk API in-process against moto: list submits, batch reads, jobs with S3 output."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from functions import infer, ingest, results
from functions.shared import deps
from functions.shared.model import StandInEmbedder
from functions.shared.store import DONE, FAILED, PENDING
from functions.shared.submission import MAX_TEXTS
from functions.shared.tokenizer import _untruncated, count_tokens, model_input
from infra.local.events import LocalLambdaContext, apigw_v2_event, sqs_event
from infra.local.faults import Faults, injected
from tests.test_handlers import HUGE_TEXT, LONG_TEXT, SHORT_TEXT

TEXTS = [SHORT_TEXT, LONG_TEXT, "dull", HUGE_TEXT, "the plot is thin but the acting is superb"]


def call(handler: Any, method: str, path: str, route: str, body: Any = None, query: str = "",
         tenant: str | None = "acme") -> tuple[int, dict[str, Any]]:
    """A handler's status and JSON body for one API Gateway v2 event, as `tenant` (JWT sub)."""
    raw = b"" if body is None else json.dumps(body).encode()
    event = apigw_v2_event(method, path, f"{method} {route}",
                           {"content-type": "application/json"}, raw, query=query)
    if tenant is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": tenant}}}
    reply = handler(event, LocalLambdaContext(function_name="mbs"))
    return reply["statusCode"], json.loads(reply["body"])


def submit(body: dict[str, Any], tenant: str | None = "acme") -> tuple[int, dict[str, Any]]:
    return call(ingest.handler, "POST", "/v1/requests", "/v1/requests", body, tenant=tenant)


def read_many(ids: list[str], tenant: str = "acme") -> tuple[int, dict[str, Any]]:
    return call(results.handler, "GET", "/v1/requests", "/v1/requests",
                query="ids=" + ",".join(ids), tenant=tenant)


def read_job(job_id: str, tenant: str = "acme") -> tuple[int, dict[str, Any]]:
    return call(results.handler, "GET", f"/v1/jobs/{job_id}", "/v1/jobs/{id}", tenant=tenant)


def run_every_queue(aws: Any) -> None:
    """Infer over everything waiting, one SQS batch per buffer (as the mappings would)."""
    for buffer in aws.resources.queue_urls:
        if messages := aws.receive(buffer):
            event = sqs_event(messages, aws.resources.queue_arns[buffer])
            reply = infer.handler(event, LocalLambdaContext(function_name=f"mbs-infer-{buffer}"))
            assert reply == {"batchItemFailures": []}


# ---- list submits --------------------------------------------------------------------------


def test_a_list_is_accepted_with_one_entry_per_text_in_order(aws):
    status, body = submit({"texts": TEXTS, "slo_ms": 5000})
    assert status == 202 and "job" not in body
    entries = body["requests"]
    assert [e["length"] for e in entries] == [count_tokens(t).length for t in TEXTS]
    assert [e["status"] for e in entries] == [PENDING] * len(TEXTS)
    assert entries[3]["truncated"] is True and entries[3]["original_length"] == 302
    assert len({e["id"] for e in entries}) == len(TEXTS)
    # THEN each text has its PENDING item and exactly one message, on its buffer's queue
    assert aws.item_count() == len(TEXTS)
    depths = aws.queue_depths()
    for buffer in depths:
        assert depths[buffer] == sum(e["buffer"] == buffer for e in entries)


def test_messages_carry_the_text_cut_to_what_the_model_reads(aws):
    status, body = submit({"texts": [HUGE_TEXT]})
    (message,) = aws.receive(body["requests"][0]["buffer"])
    sent = json.loads(message["Body"])["text"]
    assert status == 202 and len(sent) < len(HUGE_TEXT) and HUGE_TEXT.startswith(sent)
    # the cut text gives the model exactly the tokens the full text would
    assert _untruncated().encode(sent).ids == _untruncated().encode(HUGE_TEXT).ids[:255] + [102]


INVALID_LISTS = [
    # (id, texts, status, code, the message names)
    ("empty-item", [SHORT_TEXT, "  ", "fine"], 400, "empty_text", "texts[1]"),
    ("non-string-item", [SHORT_TEXT, "fine", 7], 400, "wrong_type", "texts[2]"),
    ("surrogate-item", ["a\ud800b"], 400, "invalid_text", "texts[0]"),
    ("huge-item", ["fine", "x" * 70_000], 413, "text_too_large", "texts[1]"),
    ("empty-list", [], 400, "list_size", "got 0"),
    ("too-many", ["a"] * (MAX_TEXTS + 1), 413, "list_size", f"got {MAX_TEXTS + 1}"),
    ("not-a-list", "a text", 400, "wrong_type", "got str"),
]


@pytest.mark.parametrize(("texts", "status", "code", "names"),
                         [c[1:] for c in INVALID_LISTS], ids=[c[0] for c in INVALID_LISTS])
def test_a_list_with_an_invalid_item_is_refused_whole_with_nothing_stored(aws, texts, status,
                                                                          code, names):
    got, body = submit({"texts": texts})
    assert (got, body["error"]["code"]) == (status, code)
    assert names in body["error"]["message"]
    assert aws.item_count() == 0
    assert set(aws.queue_depths().values()) == {0}


@pytest.mark.parametrize(("body", "code"), [
    ({"text": "a", "texts": ["b"]}, "conflicting_fields"),
    ({"text": "a", "output": {"s3": True}}, "invalid_output"),
    ({"texts": ["a"], "output": {"s3": "yes"}}, "invalid_output"),
    ({"texts": ["a"], "output": {"gcs": True}}, "invalid_output"),
])
def test_conflicting_or_misplaced_fields_are_a_400(aws, body, code):
    assert submit(body)[1]["error"]["code"] == code
    assert aws.item_count() == 0


def test_an_enqueue_failure_fails_only_its_texts(aws):
    # GIVEN a queue sender whose first two sends fail
    with injected(Faults(send_errors=2)):
        status, body = submit({"texts": [SHORT_TEXT, "dull", "fine", "good"]})
    # THEN the list is accepted, those two are FAILED (never left PENDING), and two are queued
    assert status == 202
    assert [e["status"] for e in body["requests"]] == [FAILED, FAILED, PENDING, PENDING]
    views = deps.result_store().get_many([e["id"] for e in body["requests"]])
    assert [views[e["id"]]["status"] for e in body["requests"]] == [FAILED, FAILED, PENDING,
                                                                     PENDING]
    assert aws.queue_depths()["short"] == 2


def test_a_saturated_buffer_refuses_the_whole_list(aws, monkeypatch):
    monkeypatch.setenv("MBS_MAX_QUEUE_DEPTH", "1")
    deps.reset()
    submit({"texts": [SHORT_TEXT]})
    deps.queue_depth()._cache.clear()
    status, body = submit({"texts": [LONG_TEXT, SHORT_TEXT]})
    assert (status, body["error"]["code"]) == (429, "overloaded")
    assert aws.item_count() == 1 and aws.queue_depths()["long"] == 0


# ---- batch reads ---------------------------------------------------------------------------


def test_batch_read_returns_the_callers_results_and_hides_other_tenants(aws):
    mine = [e["id"] for e in submit({"texts": ["one", "two", "three"]})[1]["requests"]]
    theirs = submit({"texts": ["four"]}, tenant="globex")[1]["requests"][0]["id"]
    unknown = "f" * 32
    status, body = read_many([mine[2], theirs, mine[0], unknown, mine[0], mine[1]])
    assert status == 200
    assert [r["id"] for r in body["results"]] == [mine[2], mine[0], mine[1]]  # order, no dupes
    assert {r["status"] for r in body["results"]} == {PENDING}
    assert body["missing"] == [theirs, unknown]  # another tenant's id looks unknown


@pytest.mark.parametrize(("query", "code"), [
    ("", "missing_field"), ("ids=", "missing_field"), ("ids=abc", "invalid_id"),
    ("ids=" + ",".join(f"{i:032x}" for i in range(MAX_TEXTS + 1)), "list_size")])
def test_malformed_batch_reads_are_a_400(aws, query, code):
    status, body = call(results.handler, "GET", "/v1/requests", "/v1/requests", query=query)
    assert (status, body["error"]["code"]) == (400, code)


# ---- jobs: results in S3 -------------------------------------------------------------------


@pytest.mark.model
def test_a_job_writes_its_results_to_s3_once_every_text_is_done(aws, embedder):
    # GIVEN a list submitted with S3 output
    status, body = submit({"texts": TEXTS, "output": {"s3": True}})
    job_id = body["job"]["id"]
    ids = [e["id"] for e in body["requests"]]
    # WHEN it is polled before the texts are done, it is RUNNING
    assert read_job(job_id)[1] == {"id": job_id, "total": 5, "done": 0, "failed": 0,
                                   "pending": 5, "status": "RUNNING"}
    # WHEN infer has run every queue
    run_every_queue(aws)
    status, view = read_job(job_id)
    # THEN the job is DONE with a presigned URL to one JSON-lines object in submission order
    assert (status, view["status"], view["done"], view["pending"]) == (200, DONE, 5, 0)
    url = urlparse(view["url"])
    assert url.path.endswith(f"/jobs/{job_id}.jsonl")
    assert {"X-Amz-Signature", "X-Amz-Expires"} <= set(parse_qs(url.query))
    import boto3

    raw = boto3.client("s3").get_object(Bucket=aws.resources.bucket,
                                        Key=f"jobs/{job_id}.jsonl")["Body"].read()
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [line["id"] for line in lines] == ids and [line["index"] for line in lines] == [
        0, 1, 2, 3, 4]
    # AND each embedding is the model's, through float16 (cosine >= 0.9999, as for items)
    cut = [model_input(text).text for text in TEXTS]
    for line, vector in zip(lines, embedder.embed(cut).vectors, strict=True):
        got = np.asarray(line["embedding"])
        assert got @ vector / np.linalg.norm(got) / np.linalg.norm(vector) >= 0.9999
    assert [line["truncated"] for line in lines] == [False, False, False, True, False]
    # AND the texts got no item of their own: the table holds the job item alone
    assert aws.item_count() == 1
    assert read_many(ids)[1]["missing"] == ids
    # AND a second poll answers from the object, the same
    assert read_job(job_id)[1] == view | {"url": read_job(job_id)[1]["url"]}


def job_item(aws: Any, job_id: str) -> dict[str, Any]:
    return aws.ddb.get_item(TableName=aws.resources.table_name,
                            Key={"id": {"S": f"job-{job_id}"}})["Item"]


def test_a_redelivered_batch_writes_a_second_part_but_counts_each_text_once(aws, monkeypatch):
    monkeypatch.setattr(deps, "embedder", StandInEmbedder)  # no weights needed here
    # GIVEN a job of three texts whose batch was stored once (part + count)
    job_id = submit({"texts": ["one", "two", "three"], "output": {"s3": True}})[1]["job"]["id"]
    event = sqs_event(aws.receive("short"), aws.resources.queue_arns["short"])
    for _ in range(2):  # WHEN SQS delivers the same batch again (the delete was lost)
        reply = infer.handler(event, LocalLambdaContext(function_name="mbs-infer-short"))
        assert reply == {"batchItemFailures": []}
    # THEN the count holds each index once, though two parts were written
    item = job_item(aws, job_id)
    assert sorted(int(i) for i in item["done"]["NS"]) == [0, 1, 2]
    import boto3

    assert len(item["parts"]["BS"]) == 2
    # AND the assembled object has one line per text
    view = read_job(job_id)[1]
    assert (view["status"], view["done"], view["failed"], view["pending"]) == (DONE, 3, 0, 0)
    raw = boto3.client("s3").get_object(Bucket=aws.resources.bucket,
                                        Key=f"jobs/{job_id}.jsonl")["Body"].read()
    assert [json.loads(line)["index"] for line in raw.decode().splitlines()] == [0, 1, 2]


def test_mbs_audit_reads_jobs_from_their_item_and_parts(aws, monkeypatch):
    import boto3

    from functions.shared.jobs import S3ResultObjects
    from infra.client.audit import audit_stack

    monkeypatch.setattr(deps, "embedder", StandInEmbedder)
    res = aws.resources

    def audit() -> Any:
        return audit_stack(aws.ddb, aws.sqs, res.table_name, list(res.queue_urls.values()),
                           list(res.dlq_urls.values()), since_ms=0, now_ms=2**42, grace_ms=0,
                           objects=S3ResultObjects(res.bucket, boto3.client("s3")))

    # GIVEN a job of three and a plain list of two, all still queued
    job_id = submit({"texts": ["one", "two", "three"], "output": {"s3": True}})[1]["job"]["id"]
    submit({"texts": ["four", "five"]})
    before = audit()
    assert (before.accepted, before.pending, before.jobs, before.ok) == (5, 5, 1, True)
    # WHEN infer has run
    run_every_queue(aws)
    after = audit()
    assert (after.accepted, after.done, after.pending, after.unbacked, after.ok) == (
        5, 5, 0, 0, True)
    # AND WHEN the job's part is lost, the texts it backed are a breach
    (part,) = job_item(aws, job_id)["parts"]["BS"]
    boto3.client("s3").delete_object(Bucket=res.bucket, Key=f"jobs/parts/{bytes(part).hex()}.jsonl")
    broken = audit()
    assert broken.unbacked == 3 and not broken.ok


def test_a_dead_lettered_job_text_is_counted_failed_with_infers_reason(aws):
    from functions import dlq

    # GIVEN a job of two texts, one DONE, and the other's message dead-lettered
    body = submit({"texts": ["one", "two"], "output": {"s3": True}})[1]
    job_id, ids = body["job"]["id"], [e["id"] for e in body["requests"]]
    messages = sorted(aws.receive("short"), key=lambda m: json.loads(m["Body"])["job"]["index"])
    from functions.logic.jobs import done_line, write_batch_part
    from functions.shared.jobs import error_key

    assert write_batch_part(deps.job_store(), deps.result_objects(), {
        job_id: [done_line(0, ids[0], np.ones(384) / np.sqrt(384), 1, 1)]}) == {}
    deps.result_objects().put(error_key(job_id, 1), b"RuntimeError('poison')", {})
    dead = sqs_event(messages, aws.resources.dlq_arns["short"])
    for record in dead["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "5"
    # WHEN the dead-letter handler takes both (the first is DONE already)
    assert dlq.handler(dead, LocalLambdaContext(function_name="mbs-dlq")) == {
        "batchItemFailures": []}
    # THEN only the second is FAILED, with infer's reason, and the job is DONE
    view = read_job(job_id)[1]
    assert (view["status"], view["done"], view["failed"], view["pending"]) == (DONE, 1, 1, 0)
    import boto3

    raw = boto3.client("s3").get_object(Bucket=aws.resources.bucket,
                                        Key=f"jobs/{job_id}.jsonl")["Body"].read()
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [line["status"] for line in lines] == [DONE, FAILED]
    assert "dead-lettered after 5 deliveries: RuntimeError('poison')" in lines[1]["reason"]


def test_a_poisoned_job_text_is_retried_with_its_reason_noted_and_the_rest_counted(
        aws, monkeypatch):
    monkeypatch.setattr(deps, "get_embedder", StandInEmbedder)
    # GIVEN a job of three whose second text makes the model fail
    job_id = submit({"texts": ["one", "two POISON", "three"], "output": {"s3": True}})[1][
        "job"]["id"]
    messages = aws.receive("short")
    by_index = {json.loads(m["Body"])["job"]["index"]: m["MessageId"] for m in messages}
    # WHEN infer runs the batch
    with injected(Faults(poison_marker="POISON")):
        reply = infer.handler(sqs_event(messages, aws.resources.queue_arns["short"]),
                              LocalLambdaContext(function_name="mbs-infer-short"))
    # THEN only the poisoned text is reported for retry, with infer's error noted for the DLQ
    assert reply == {"batchItemFailures": [{"itemIdentifier": by_index[1]}]}
    assert sorted(int(i) for i in job_item(aws, job_id)["done"]["NS"]) == [0, 2]
    from functions.shared.jobs import error_key

    assert b"PoisonInput" in deps.result_objects().get(error_key(job_id, 1))
    assert read_job(job_id)[1]["pending"] == 1


def test_a_jobs_texts_that_could_not_be_enqueued_are_counted_failed(aws):
    # GIVEN a job whose first two sends fail
    with injected(Faults(send_errors=2)):
        status, body = submit({"texts": ["one", "two", "three", "four"], "output": {"s3": True}})
    assert status == 202
    assert [e["status"] for e in body["requests"]] == [FAILED, FAILED, PENDING, PENDING]
    # THEN the job counts them FAILED (with their lines) and waits for the other two
    view = read_job(body["job"]["id"])[1]
    assert (view["status"], view["done"], view["failed"], view["pending"]) == (
        "RUNNING", 0, 2, 2)
    assert aws.item_count() == 1 and aws.queue_depths()["short"] == 2


def test_a_refused_jobs_texts_are_all_counted_failed(aws, monkeypatch):
    monkeypatch.setenv("MBS_MAX_QUEUE_DEPTH", "1")
    deps.reset()
    submit({"texts": [SHORT_TEXT]})
    deps.queue_depth()._cache.clear()
    # WHEN a job is refused (its item was written first), THEN its texts all end FAILED
    status, body = submit({"texts": ["one", "two"], "output": {"s3": True}})
    assert status == 429
    job_id = aws.ddb.scan(TableName=aws.resources.table_name,
                          FilterExpression="begins_with(id, :j)",
                          ExpressionAttributeValues={":j": {"S": "job-"}})["Items"][0]["id"]["S"]
    view = read_job(job_id.removeprefix("job-"))[1]
    assert (view["status"], view["failed"], view["pending"]) == (DONE, 2, 0)


def test_jobs_are_bound_to_their_tenant_and_apart_from_requests(aws):
    job_id = submit({"texts": ["one"], "output": {"s3": True}})[1]["job"]["id"]
    assert read_job(job_id, tenant="globex")[0] == 404
    status, body = call(results.handler, "GET", f"/v1/requests/{job_id}", "/v1/requests/{id}")
    assert (status, body["error"]["code"]) == (404, "unknown_id")  # a job is not a request
    assert read_job("0" * 32)[0] == 404


def test_s3_output_without_a_bucket_is_a_400_with_nothing_stored(aws, monkeypatch):
    monkeypatch.delenv("MBS_RESULTS_BUCKET")
    deps.reset()
    status, body = submit({"texts": ["one"], "output": {"s3": True}})
    assert (status, body["error"]["code"]) == (400, "output_unavailable")
    assert aws.item_count() == 0
