"""The invoke adapters and the batch runner: recorded Lambda replies (botocore's Stubber, and a
fake client for what the Stubber cannot raise), payload splitting, and poison isolation."""

from __future__ import annotations

import io
import json
import logging

import boto3
import numpy as np
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from functions.embed import BadEvent, embed_event, parse_event
from functions.shared.model import StandInEmbedder
from infra.dispatcher.execute import (
    REPLY_BYTES_PER_INPUT,
    max_items_per_reply,
    run_batch,
    run_isolating,
    split_to_fit,
)
from infra.dispatcher.invoke import (
    MAX_SYNC_PAYLOAD_BYTES,
    READ_TIMEOUT_MARGIN_S,
    FailureKind,
    InferInput,
    InProcessInvoker,
    InvokeFailed,
    LambdaInvoker,
    encode_event,
    failure_kind,
    lambda_client,
)
from tests.support.online import PoisonEmbedder

FUNCTIONS = {"short": "mbs-embed-short"}
REQUEST_ID = "8f2a3c1e-0b4d-4e52-9a7f-3c6d2e1f0a9b"


def _inputs(*texts: str) -> list[InferInput]:
    return [InferInput(str(i), t) for i, t in enumerate(texts)]


def _client():
    return boto3.client("lambda", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # nosec B106 - never sent


def _reply(payload: dict, function_error: str | None = None) -> dict:
    """A recorded Invoke response: status 200, the payload as a stream, FunctionError if set."""
    body = json.dumps(payload).encode()
    reply = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
             "Payload": StreamingBody(io.BytesIO(body), len(body))}
    if function_error:
        reply["FunctionError"] = function_error
    return reply


def _stubbed(*replies: dict) -> tuple[LambdaInvoker, Stubber]:
    client = _client()
    stubber = Stubber(client)
    for reply in replies:
        stubber.add_response("invoke", reply, {"FunctionName": "mbs-embed-short",
                                               "InvocationType": "RequestResponse",
                                               "Payload": ANY})
    stubber.activate()
    return LambdaInvoker(client, FUNCTIONS), stubber


def _ok_payload(n: int) -> dict:
    vectors = StandInEmbedder().embed([f"t{i}" for i in range(n)]).vectors
    return {"embeddings": vectors.tolist(), "padded_length": 4, "inference_ms": 12.5,
            "device": "cpu", "model": "all-MiniLM-L6-v2"}


def test_a_successful_reply_is_parsed():
    invoker, stubber = _stubbed(_reply(_ok_payload(2)))
    reply = invoker.invoke("short", _inputs("a", "b"))
    assert reply.embeddings.shape == (2, 384) and reply.embeddings.dtype == np.float32
    assert (reply.padded_length, reply.device, reply.model) == (4, "cpu", "all-MiniLM-L6-v2")
    stubber.assert_no_pending_responses()


def test_function_error_unhandled_is_a_failure_even_with_status_200():
    # GIVEN the reply Lambda sends when the handler raised: StatusCode 200, FunctionError set
    recorded = _reply({"errorMessage": "the model cannot take this input",
                       "errorType": "ValueError", "requestId": REQUEST_ID,
                       "stackTrace": ["  File \"/var/task/functions/embed.py\", line 80\n"]},
                      function_error="Unhandled")
    invoker, _ = _stubbed(recorded)
    with pytest.raises(InvokeFailed) as caught:
        invoker.invoke("short", _inputs("a"))
    assert caught.value.kind is FailureKind.INPUT
    assert caught.value.error_type == "ValueError"
    assert "cannot take this input" in caught.value.message


@pytest.mark.parametrize("payload", [
    {"errorMessage": "2024-05-01T10:00:00.000Z 8f2a3c1e Task timed out after 60.05 seconds"},
    {"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: 8f2a Error: Task timed out "
                                                      "after 60.00 seconds"},
    {"errorType": "Runtime.ExitError", "errorMessage": "RequestId: 8f2a Error: Runtime exited "
                                                       "with error: signal: killed"},
    {"errorType": "ModelLoadError", "errorMessage": "could not load the model"},
])
def test_timeouts_crashes_and_dead_models_fail_the_whole_batch(payload):
    invoker, _ = _stubbed(_reply(payload, function_error="Unhandled"))
    with pytest.raises(InvokeFailed) as caught:
        invoker.invoke("short", _inputs("a", "b"))
    assert caught.value.kind is FailureKind.FUNCTION  # bisecting would only run it again


def test_a_throttle_is_not_an_input_error():
    client = _client()
    stubber = Stubber(client)
    stubber.add_client_error("invoke", service_error_code="TooManyRequestsException",
                             service_message="Rate Exceeded.", http_status_code=429)
    stubber.activate()
    with pytest.raises(InvokeFailed) as caught:
        LambdaInvoker(client, FUNCTIONS).invoke("short", _inputs("a"))
    assert caught.value.kind is FailureKind.THROTTLED


class _TimingOutClient:
    """A Lambda client whose read times out (the Stubber cannot raise botocore's own errors)."""

    calls = 0

    def invoke(self, **kwargs):
        self.calls += 1
        raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com/2015-03-31/"
                                            "functions/mbs-embed-short/invocations")


def test_a_read_timeout_fails_once_and_is_not_retried():
    client = _TimingOutClient()
    with pytest.raises(InvokeFailed) as caught:
        LambdaInvoker(client, FUNCTIONS).invoke("short", _inputs("a"))
    assert caught.value.kind is FailureKind.TRANSPORT
    assert client.calls == 1


def test_the_client_never_retries_and_outwaits_the_function():
    client = lambda_client(function_timeout_s=60, max_connections=40, region="us-east-1")
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.read_timeout == 60 + READ_TIMEOUT_MARGIN_S > 60
    assert client.meta.config.max_pool_connections >= 40


def test_an_oversized_payload_is_refused_before_it_is_sent():
    client = _TimingOutClient()
    big = _inputs(*["x" * (1024 * 1024)] * 7)  # 7 MiB of text
    with pytest.raises(InvokeFailed) as caught:
        LambdaInvoker(client, FUNCTIONS).invoke("short", big)
    assert caught.value.kind is FailureKind.TOO_LARGE
    assert client.calls == 0


def test_an_oversized_batch_is_split_into_invocations_that_fit():
    # GIVEN a batch of 7 texts of 1 MiB each (7 MiB in all) and a recorded reply per chunk
    big = _inputs(*[f"{i}" + "y" * (1024 * 1024) for i in range(7)])
    chunks = split_to_fit("short", big, MAX_SYNC_PAYLOAD_BYTES, None)
    assert [len(encode_event("short", c)) <= MAX_SYNC_PAYLOAD_BYTES for c in chunks] \
        == [True] * len(chunks)
    assert [i.id for c in chunks for i in c] == [i.id for i in big]  # order kept
    invoker, stubber = _stubbed(*[_reply(_ok_payload(len(c))) for c in chunks])
    # WHEN the runner runs the batch THEN each chunk is one invocation, and every input served
    outcome = run_batch(invoker, "short", big)
    assert len(chunks) == 2 and outcome.splits == 1 and outcome.invocations == 2
    assert sorted(outcome.done) == [i.id for i in big] and not outcome.failed
    stubber.assert_no_pending_responses()


def test_replies_are_kept_under_the_response_limit_too():
    limit = max_items_per_reply(MAX_SYNC_PAYLOAD_BYTES)
    assert limit * REPLY_BYTES_PER_INPUT < MAX_SYNC_PAYLOAD_BYTES
    # the longest reply JSON of a float32 vector is within the per-input estimate
    worst = np.full(384, -1.2345678e-05, dtype=np.float32)
    assert len(json.dumps(worst.tolist())) <= REPLY_BYTES_PER_INPUT
    chunks = split_to_fit("short", _inputs(*["a"] * (limit + 1)), MAX_SYNC_PAYLOAD_BYTES,
                          limit)
    assert [len(c) for c in chunks] == [limit, 1]


def test_a_poison_input_is_isolated_by_bisection(caplog):
    invoker = InProcessInvoker(PoisonEmbedder())
    texts = [f"text {i}" for i in range(8)]
    texts[5] = "a POISON text"
    with caplog.at_level(logging.WARNING, logger="mbs.dispatcher"):
        outcome = run_isolating(invoker, "short", _inputs(*texts))
    assert sorted(outcome.failed) == ["5"]
    assert outcome.failed["5"].kind is FailureKind.INPUT
    assert sorted(outcome.done) == [str(i) for i in range(8) if i != 5]
    # 8 -> 4 -> 2 -> 1: two halves per level, three levels; every one counted and logged
    assert outcome.invocations == 7 and outcome.bisect_invocations == 6
    assert sum("bisecting" in r.message for r in caplog.records) == 3


def test_a_whole_batch_failure_is_not_bisected():
    class DeadModel(StandInEmbedder):
        def embed(self, texts):
            raise MemoryError("the model ran out of memory")

    outcome = run_isolating(InProcessInvoker(DeadModel()), "short", _inputs("a", "b", "c", "d"))
    assert outcome.invocations == 1 and outcome.bisect_invocations == 0
    assert sorted(outcome.failed) == ["0", "1", "2", "3"]
    assert outcome.failed["0"].kind is FailureKind.FUNCTION


def test_failure_kinds():
    assert failure_kind("PoisonInput", "the model rejected an input") is FailureKind.INPUT
    assert failure_kind("Runtime.OutOfMemory", "") is FailureKind.FUNCTION
    assert failure_kind("Unhandled", "Task timed out after 3.00 seconds") is FailureKind.FUNCTION


def test_embed_function_answers_in_input_order_and_names_its_model():
    event = {"inputs": [{"id": "a", "text": "first"}, {"id": "b", "text": "second one"}],
             "buffer": "short"}
    reply = embed_event(event, StandInEmbedder())
    assert reply["model"] == "stand-in" and reply["device"] == "stand-in"
    again = StandInEmbedder().embed(["first", "second one"]).vectors
    np.testing.assert_array_equal(np.asarray(reply["embeddings"], dtype=np.float32), again)
    json.dumps(reply)  # what Lambda serializes


@pytest.mark.parametrize("event, named", [
    ([], "object"), ({"buffer": "b"}, "inputs"), ({"inputs": [], "buffer": "b"}, "inputs"),
    ({"inputs": [{"id": "1"}], "buffer": "b"}, "inputs[0]"), ({"inputs": [{"text": "x"}]},
                                                             "buffer"),
])
def test_embed_function_rejects_bad_events_naming_the_field(event, named):
    with pytest.raises(BadEvent, match=named.replace("[", r"\[")):
        parse_event(event)


class _LocalLambdaClient:
    """Runs functions/embed.py's handler as the Lambda Python runtime does: the payload is
    parsed JSON, the return value is serialized JSON, and an exception becomes a
    FunctionError "Unhandled" reply carrying errorType and errorMessage."""

    def __init__(self) -> None:
        self.calls = []

    def invoke(self, FunctionName, InvocationType, Payload):  # noqa: N803 - boto3's names
        from functions import embed
        from infra.local.events import LocalLambdaContext

        self.calls.append((FunctionName, InvocationType))
        context = LocalLambdaContext(function_name=FunctionName)
        try:
            body, error = json.dumps(embed.handler(json.loads(Payload), context)), None
        except Exception as exc:
            body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                               "requestId": context.aws_request_id, "stackTrace": []})
            error = "Unhandled"
        reply = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
                 "Payload": StreamingBody(io.BytesIO(body.encode()), len(body))}
        return {**reply, "FunctionError": error} if error else reply


@pytest.fixture
def stand_in_function(monkeypatch):
    """The handler's model port set to the stand-in (MBS_STANDIN_MODEL), as on a cold start."""
    from functions.shared.model import get_embedder

    monkeypatch.setenv("MBS_STANDIN_MODEL", "1")
    get_embedder.cache_clear()
    yield
    get_embedder.cache_clear()


def test_the_lambda_adapter_and_the_handler_speak_the_same_json(stand_in_function):
    client = _LocalLambdaClient()
    invoker = LambdaInvoker(client, FUNCTIONS)
    reply = invoker.invoke("short", _inputs("first", "second one"))
    assert client.calls == [("mbs-embed-short", "RequestResponse")]
    assert reply.model == "stand-in" and reply.embeddings.shape == (2, 384)
    np.testing.assert_array_equal(reply.embeddings,
                                  StandInEmbedder().embed(["first", "second one"]).vectors)


def test_a_handler_exception_is_isolated_through_lambda_replies(monkeypatch):
    # GIVEN the handler's model port wrapped to raise on a poison text
    from functions import embed

    monkeypatch.setattr(embed, "get_embedder", PoisonEmbedder)
    client = _LocalLambdaClient()
    texts = ["fine", "also fine", "POISON here", "fine again"]
    # WHEN the batch runs through the Lambda adapter
    outcome = run_batch(LambdaInvoker(client, FUNCTIONS), "short", _inputs(*texts))
    # THEN the FunctionError replies were failures, and bisection isolated the poison input
    assert sorted(outcome.failed) == ["2"] and sorted(outcome.done) == ["0", "1", "3"]
    assert outcome.failed["2"].error_type == "ValueError"
    assert len(client.calls) == outcome.invocations == 5
