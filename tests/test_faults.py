"""Faults injected into the running local stack, the ways SQS, Lambda and DynamoDB fail.

In every case: every accepted request reaches exactly one terminal state (DONE with one result,
or FAILED with a reason), no result is written twice, and `mbs audit` finds nothing missing.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from buffers.plan_files import default_plan_path, load_plan, plan_from_dict
from infra.client.audit import audit_stack
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.model]

VISIBILITY_S = 2  # short, so redelivery happens within the test
MAX_RECEIVES = 2
TEXTS = ["a tender, funny film", "the plot drags badly", "superb acting all round",
         "a forgettable sequel", "sharp and witty"]


def _post(url: str, text: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v1/requests", data=json.dumps({"text": text})
                                     .encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 202
        return json.loads(reply.read())


def _get(url: str, request_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/v1/requests/{request_id}", timeout=30) as reply:
        return json.loads(reply.read())


def _post_together(url: str, texts: list[str]) -> list[str]:
    with ThreadPoolExecutor(len(texts)) as pool:
        return [r["id"] for r in pool.map(lambda t: _post(url, t), texts)]


def _settle(stack: LocalStack, ids: list[str], timeout_s: float = 60.0) -> dict[str, dict]:
    """Wait until every request is terminal, then check conservation with the audit."""
    deadline = time.monotonic() + timeout_s
    while True:
        results = {i: _get(stack.url, i) for i in ids}
        if all(r["status"] != "PENDING" for r in results.values()):
            break
        if time.monotonic() > deadline:
            pending = [i for i, r in results.items() if r["status"] == "PENDING"]
            pytest.fail(f"still PENDING after {timeout_s} s: {pending}")
        time.sleep(0.2)
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    res = stack.resources
    report = audit_stack(ddb, sqs, res.table_name, list(res.queue_urls.values()),
                         list(res.dlq_urls.values()), since_ms=0,
                         now_ms=int(time.time() * 1000), grace_ms=0)
    assert report.ok and report.unaccounted == 0, report
    assert report.accepted == len(ids)
    return results


def _stack(faults: dict | None = None, plan: Any = None, **env: str) -> LocalStack:
    extra = {"MBS_FAULTS": json.dumps(faults)} if faults else {}
    return LocalStack(plan or load_plan(default_plan_path()), visibility_timeout_s=VISIBILITY_S,
                      max_receive_count=MAX_RECEIVES, extra_env={**extra, **env})


def _assert_all_done_once(results: dict[str, dict]) -> None:
    for result in results.values():
        assert result["status"] == "DONE", result
        assert len(result["embedding"]) == 384


def test_infer_crash_mid_batch_loses_and_duplicates_nothing():
    # GIVEN the first infer invocation dies after writing one result of its batch
    with _stack({"crash_after_writes": 1, "invocations": 1}) as stack:
        ids = _post_together(stack.url, TEXTS)
        results = _settle(stack, ids)
    # THEN the batch is redelivered; the written result is kept (a duplicate, not rewritten)
    _assert_all_done_once(results)
    assert stack.dispatcher.stats.invoke_errors >= 1


def test_timeout_past_visibility_redelivers_without_duplicate_results():
    # GIVEN the first invocation stores its results but answers after the visibility timeout
    with _stack({"sleep_ms": (VISIBILITY_S + 1) * 1000, "invocations": 1}) as stack:
        ids = _post_together(stack.url, TEXTS[:3])
        first = {i: _get(stack.url, i) for i in ids}
        results = _settle(stack, ids)
        time.sleep(VISIBILITY_S + 1.5)  # let the redelivered copies run and the first answer
        again = {i: _get(stack.url, i) for i in ids}
    _assert_all_done_once(results)
    # THEN each result was written once: a redelivery never replaced it
    assert again == results
    assert all(f["status"] in ("PENDING", "DONE") for f in first.values())


def test_poison_message_is_isolated_and_dead_lettered_with_its_reason():
    # GIVEN one text the model always rejects, batched with good ones
    with _stack({"poison_marker": "POISON"}) as stack:
        ids = _post_together(stack.url, [*TEXTS[:4], "this one is POISON"])
        results = _settle(stack, ids)
    poison = results.pop(ids[-1])
    # THEN the rest of its batch succeeded, and the poison one FAILED with the model's reason
    _assert_all_done_once(results)
    assert poison["status"] == "FAILED"
    assert "dead-lettered" in poison["reason"] and "injected poison" in poison["reason"]


def test_results_table_throttling_is_retried_until_stored():
    with _stack({"store_errors": 3}) as stack:
        ids = _post_together(stack.url, TEXTS)
        results = _settle(stack, ids)
    _assert_all_done_once(results)
    assert stack.dispatcher.stats.failed_items >= 3


def test_dispatcher_restart_with_messages_in_flight_loses_nothing():
    # GIVEN a plan whose batches wait 1.5 s, and a dispatcher killed while it holds messages
    raw = load_plan(default_plan_path()).to_dict()
    for buffer in raw["buffers"]:
        buffer["timeout_ms"] = 1500
    with _stack(plan=plan_from_dict(raw)) as stack:
        ids = _post_together(stack.url, TEXTS)
        time.sleep(0.5)
        held = stack.dispatcher.stats.requests.total()
        stack.restart_dispatcher()
        results = _settle(stack, ids)
    assert held == 0  # nothing had been dispatched when it died
    _assert_all_done_once(results)


def test_model_that_fails_to_load_fails_every_request_with_the_reason(monkeypatch):
    from functions.shared.model import get_embedder

    get_embedder.cache_clear()
    try:
        with _stack(MBS_FAIL_MODEL_LOAD="1") as stack:
            ids = _post_together(stack.url, TEXTS[:2])
            results = _settle(stack, ids)
    finally:
        get_embedder.cache_clear()
    for result in results.values():
        assert result["status"] == "FAILED"
        assert "MBS_FAIL_MODEL_LOAD" in result["reason"]
