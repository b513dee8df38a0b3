from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from infra.local.events import LocalLambdaContext, apigw_v2_event, sqs_event
from infra.local.gateway import HttpGateway, Route, dispatch
from tests.conftest import load_event

Seen = list[tuple[dict[str, Any], Any]]


def echo_routes(seen: Seen) -> list[Route]:
    """POST /v1/requests and GET /v1/requests/{id}, both answering with the event they got."""

    def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append((event, context))
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps(event), "isBase64Encoded": False}

    return [Route("POST", "/v1/requests", "mbs-ingest", echo),
            Route("GET", "/v1/requests/{id}", "mbs-results", echo)]


def call(method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"") -> tuple[int, dict[str, str], dict[str, Any] | bytes, Seen]:
    seen: Seen = []
    status, out_headers, data = dispatch(echo_routes(seen), method, path, headers or {}, body)
    try:
        return status, out_headers, json.loads(data), seen
    except ValueError:
        return status, out_headers, data, seen


def test_get_route_key_and_path_parameters():
    status, headers, event, seen = call("GET", "/v1/requests/abc123")
    assert status == 200
    assert headers == {"content-type": "application/json"}
    assert event["routeKey"] == "GET /v1/requests/{id}"
    assert event["requestContext"]["routeKey"] == "GET /v1/requests/{id}"
    assert event["pathParameters"] == {"id": "abc123"}
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/v1/requests/abc123"
    assert event["requestContext"]["http"]["method"] == "GET"
    assert "body" not in event
    (_, context), = seen
    assert isinstance(context, LocalLambdaContext)
    assert context.function_name == "mbs-results"


def test_post_has_no_path_parameters_and_keeps_a_text_body():
    body = json.dumps({"text": "é"}).encode()
    _, _, event, _ = call("POST", "/v1/requests", {"Content-Type": "application/json"}, body)
    assert event["routeKey"] == "POST /v1/requests"
    assert "pathParameters" not in event
    assert event["isBase64Encoded"] is False
    assert event["body"].encode() == body


def test_headers_are_lowercased():
    _, _, event, _ = call("POST", "/v1/requests",
                          {"Content-Type": "application/json", "X-Tenant-Hint": "Acme",
                           "USER-AGENT": "ua/1"}, b"{}")
    assert event["headers"] == {"content-type": "application/json", "x-tenant-hint": "Acme",
                                "user-agent": "ua/1"}
    assert event["requestContext"]["http"]["userAgent"] == "ua/1"


def test_non_utf8_body_is_base64_encoded():
    raw = b'{"text": "\xff\xfe"}'
    _, _, event, _ = call("POST", "/v1/requests", {"content-type": "application/json"}, raw)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_query_string_is_split_off_the_path():
    _, _, event, _ = call("GET", "/v1/requests/abc?verbose=1&x")
    assert event["pathParameters"] == {"id": "abc"}
    assert event["rawQueryString"] == "verbose=1&x"
    assert event["queryStringParameters"] == {"verbose": "1", "x": ""}


@pytest.mark.parametrize("path", ["/v1/other", "/v1/requests/a/b", "/", "/v1/requests/"])
def test_unknown_route_is_a_404(path):
    status, headers, body, seen = call("GET", path)
    assert status == 404
    assert headers == {"content-type": "application/json"}
    assert body["error"]["code"] == "not_found"
    assert seen == []


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/requests"), ("DELETE", "/v1/requests/abc"), ("POST", "/v1/requests/abc"),
    ("PUT", "/v1/requests")])
def test_wrong_method_on_a_known_path_is_a_405(method, path):
    status, _, body, seen = call(method, path)
    assert status == 405
    assert body["error"]["code"] == "method_not_allowed"
    assert seen == []


def test_base64_handler_reply_is_decoded():
    def binary(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 201, "headers": {"x-kind": "bin"},
                "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}

    reply = dispatch([Route("GET", "/bin", "f", binary)], "GET", "/bin", {}, b"")
    assert reply == (201, {"x-kind": "bin"}, b"\x00\xff")


def test_gateway_over_real_http():
    seen: Seen = []
    gateway = HttpGateway(echo_routes(seen))
    gateway.start()
    try:
        request = urllib.request.Request(
            f"{gateway.url}/v1/requests", data=b'{"text": "hi"}', method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200
            event = json.loads(reply.read())
        assert event["body"] == '{"text": "hi"}'
        assert event["headers"]["content-type"] == "application/json"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{gateway.url}/nowhere", timeout=5)
        assert err.value.code == 404
    finally:
        gateway.stop()


# ---- the stored event files have the shape the builders produce ------------------------------


def _keys(event: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    return set(event), set(event["requestContext"]), set(event["requestContext"]["http"])


@pytest.mark.parametrize(("name", "method", "path", "route_key", "params"), [
    ("apigw_v2_post", "POST", "/v1/requests", "POST /v1/requests", None),
    ("apigw_v2_get", "GET", "/v1/requests/0123456789abcdef0123456789abcdef",
     "GET /v1/requests/{id}", {"id": "0123456789abcdef0123456789abcdef"}),
])
def test_stored_apigw_events_match_the_builder(name, method, path, route_key, params):
    stored = load_event(name)
    built = apigw_v2_event(method, path, route_key, {"content-type": "application/json"},
                           b'{"text": "x"}' if method == "POST" else b"",
                           path_parameters=params)
    for built_keys, stored_keys in zip(_keys(built), _keys(stored), strict=True):
        assert built_keys <= stored_keys
    assert stored["routeKey"] == stored["requestContext"]["routeKey"] == route_key
    assert stored["rawPath"] == stored["requestContext"]["http"]["path"] == path
    assert stored["requestContext"]["http"]["method"] == method
    assert all(k == k.lower() for k in stored["headers"])


def test_stored_sqs_event_matches_the_builder():
    stored = load_event("sqs_batch")
    assert len(stored["Records"]) == 2
    messages = [{"MessageId": r["messageId"], "ReceiptHandle": r["receiptHandle"],
                 "Body": r["body"], "Attributes": r["attributes"]} for r in stored["Records"]]
    built = sqs_event(messages, stored["Records"][0]["eventSourceARN"])
    assert built == stored


def test_saturated_gateway_answers_429_with_retry_after():
    # GIVEN a gateway that handles one request at a time, busy with a slow one
    import threading
    import urllib.error
    import urllib.request

    from infra.local.gateway import HttpGateway

    release = threading.Event()

    def slow(event, context):
        release.wait(10)
        return {"statusCode": 200, "body": "{}"}

    gateway = HttpGateway([Route("GET", "/slow", "slow", slow)], max_in_flight=1)
    gateway.start()
    try:
        first = threading.Thread(target=urllib.request.urlopen, args=(f"{gateway.url}/slow",))
        first.start()
        time.sleep(0.3)
        # WHEN a second request arrives
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{gateway.url}/slow", timeout=5)
        # THEN it is refused at once with 429 and Retry-After, instead of queueing
        assert exc.value.code == 429
        assert exc.value.headers["Retry-After"] == "1"
        release.set()
        first.join(10)
    finally:
        release.set()
        gateway.stop()


def test_a_burst_of_connections_is_answered_not_dropped():
    # GIVEN a gateway with 4 slots whose handler takes 50 ms
    from concurrent.futures import ThreadPoolExecutor

    def slowish(event, context):
        time.sleep(0.05)
        return {"statusCode": 202, "body": "{}"}

    gateway = HttpGateway([Route("POST", "/v1/requests", "ingest", slowish)], max_in_flight=4)
    gateway.start()

    def post(_: int) -> int:
        request = urllib.request.Request(f"{gateway.url}/v1/requests", data=b"{}",
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0  # refused, reset or timed out: the gateway fell over

    try:
        # WHEN 300 clients connect at once
        with ThreadPoolExecutor(max_workers=300) as pool:
            statuses = list(pool.map(post, range(300)))
    finally:
        gateway.stop()
    # THEN every one gets an HTTP answer: accepted, or 429 to retry, never a dropped connection
    assert set(statuses) <= {202, 429}, sorted(set(statuses))
    assert statuses.count(202) >= 4 and statuses.count(429) > 0
