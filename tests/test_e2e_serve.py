"""End to end: a real `mbs serve` process, real HTTP, the real model, moto in server mode."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from infra.local.moto_process import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.model]

SHORT_TEXTS = ["a gripping thriller.", "dull and lifeless.", "an instant classic!"]
LONG_TEXT = " ".join(["the film takes its time, building its characters patiently and letting "
                      "every scene breathe before the story turns"] * 6)  # ~130 tokens


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_done(url: str, request_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = _http("GET", f"{url}/v1/requests/{request_id}")
        assert status == 200, body
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} still PENDING after {timeout_s} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """GIVEN `mbs serve` started on a free port with the shipped default plan."""
    state_file = tmp_path_factory.mktemp("serve") / "state.json"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli.main", "serve", "--port", str(port),
         "--state-file", str(state_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 90
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mbs serve did not start: {proc.stdout.read()}")
        time.sleep(0.2)
    state = json.loads(state_file.read_text())
    yield {**state, "state_file": str(state_file)}
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out  # Ctrl-C shuts down cleanly
    assert "stopped." in out
    assert "\r" not in out  # no model-loading bar: its output went to a pipe, not a terminal


def test_short_and_long_texts_get_unit_embeddings_from_different_buffers(served):
    url = served["url"]
    accepted = [_http("POST", f"{url}/v1/requests", {"text": t})
                for t in [*SHORT_TEXTS, LONG_TEXT]]
    assert all(status == 202 for status, _ in accepted), accepted
    results = [_wait_done(url, body["id"]) for _, body in accepted]

    for result in results:
        assert result["status"] == "DONE"
        vector = np.asarray(result["embedding"])
        assert vector.shape == (384,)
        assert abs(np.linalg.norm(vector) - 1.0) < 1e-4
        assert result["padded_length"] >= result["length"]
    short_buffers = {r["buffer"] for r in results[:-1]}
    assert short_buffers == {"short"}
    assert results[-1]["buffer"] not in short_buffers
    assert results[-1]["length"] > 64
    # Short texts batched together never carry the long text's padding.
    assert all(r["padded_length"] <= 32 for r in results[:-1])


def test_redelivered_message_does_not_duplicate_the_result(served):
    url = served["url"]
    status, accepted = _http("POST", f"{url}/v1/requests", {"text": SHORT_TEXTS[0]})
    assert status == 202
    first = _wait_done(url, accepted["id"])

    # WHEN the same request's message is delivered again on its buffer queue (as SQS's
    # at-least-once delivery may do), with a newer enqueue time.
    env = {"endpoint_url": served["aws_endpoint_url"], "region_name": "us-east-1",
           "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    sqs = boto3.client("sqs", **env)
    queue_url = served["queue_urls"][first["buffer"]]
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({
        "id": accepted["id"], "text": SHORT_TEXTS[0], "length": accepted["length"],
        "buffer": first["buffer"], "tenant": "default",
        "enqueued_at_ms": int(time.time() * 1000), "slo_ms": None}))

    # THEN it is consumed (deleted, not dead-lettered) and the stored result is untouched.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and \
                attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the redelivered message was never consumed: {attrs}")
    _, after = _http("GET", f"{url}/v1/requests/{accepted['id']}")
    assert after == first
    dlq = sqs.get_queue_attributes(QueueUrl=served["dlq_urls"][first["buffer"]],
                                   AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"
    items = boto3.client("dynamodb", **env).scan(
        TableName=served["table_name"], FilterExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": accepted["id"]}})["Items"]
    assert len(items) == 1


def test_bad_input_gets_a_4xx_json_error_and_service_keeps_serving(served):
    url = served["url"]
    for body, expected in [({"text": ""}, 400), ({"txt": "x"}, 400), ({"text": 5}, 400),
                           ({"text": "x" * 70_000}, 413)]:
        status, reply = _http("POST", f"{url}/v1/requests", body)
        assert status == expected, (body, reply)
        assert reply["error"]["message"]
    assert _http("GET", f"{url}/v1/requests/{'0' * 32}")[0] == 404
    assert _http("GET", f"{url}/v1/requests/not-an-id")[0] == 400
    status, ok = _http("POST", f"{url}/v1/requests", {"text": "still serving"})
    assert status == 202 and _wait_done(url, ok["id"])["status"] == "DONE"


def test_serve_without_arguments_uses_the_shipped_plan(served):
    assert served["plan"] == load_plan(default_plan_path()).to_dict()
    assert served["url"].startswith("http://127.0.0.1:")
    assert served["aws_endpoint_url"].startswith("http://127.0.0.1:")


def test_replay_into_a_pipe_reports_without_progress_bars(served):
    # WHEN `mbs replay` sends 3 s of the trace with its output going to a pipe (as in a log)
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "replay", "--url", served["url"],
         "--duration", "3", "--collect-timeout", "60"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=180)
    # THEN nothing is lost and the report comes without carriage-return bar updates
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stdout + done.stderr
    assert "Replay report (measured on the running service)" in done.stdout


def test_audit_reconciles_the_running_stack(served, capsys):
    from infra.cli.main import main

    # every request these tests sent has finished, so nothing may be unaccounted for
    assert main(["audit", "--state-file", served["state_file"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["unaccounted"] == 0
    assert report["accepted"] == report["done"] + report["failed"] + report["pending"] >= 5


def test_the_openai_client_and_the_bulk_api_share_one_port(served):
    import openai

    # GIVEN `mbs serve`'s one URL
    client = openai.OpenAI(base_url=f"{served['url']}/v1", api_key="local", max_retries=0)
    # WHEN the OpenAI client embeds a list, and the bulk API takes one of the same texts
    reply = client.embeddings.create(input=[LONG_TEXT, *SHORT_TEXTS], model="all-MiniLM-L6-v2")
    status, accepted = _http("POST", f"{served['url']}/v1/requests", {"text": SHORT_TEXTS[0]})
    bulk = _wait_done(served["url"], accepted["id"])
    # THEN the online answer comes in input order, 384-d unit vectors from several buffers,
    # and the bulk path's embedding of the same text is the same vector
    assert status == 202 and [d.index for d in reply.data] == [0, 1, 2, 3]
    vectors = np.array([d.embedding for d in reply.data], dtype=np.float32)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    extras = reply.model_extra["mbs"]["inputs"]
    assert extras[0]["buffer"] != extras[1]["buffer"]
    assert float(np.dot(vectors[1], np.asarray(bulk["embedding"], dtype=np.float32))) >= 0.999
