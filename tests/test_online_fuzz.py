"""The online API fuzzed from the OpenAPI document it serves (schemathesis + hypothesis), over
real HTTP with the stand-in model: every malformed input gets a 4xx in OpenAI's error shape,
never a 5xx or a hang, and valid ones are answered as documented."""

from __future__ import annotations

import json
import urllib.request

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, openapi

from buffers.plan_files import default_plan_path, load_plan
from infra.dispatcher.app import create_app
from infra.dispatcher.server import BackgroundServer
from tests.support.online import post_json

# derandomize: the same examples on every run, so CI is reproducible.
FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(create_app(load_plan(default_plan_path()), model="stand-in")) as s:
        yield s


@pytest.fixture(scope="module")
def operation(server):
    with urllib.request.urlopen(f"{server.url}/openapi.json", timeout=10) as reply:
        document = json.loads(reply.read())
    return openapi.from_dict(document)["/v1/embeddings"]["POST"]


def _assert_openai_error(status: int, body: object, what: object) -> None:
    assert 400 <= status < 500, (status, what, body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, what
    assert error["code"] and error["message"], what


def test_malformed_requests_get_4xx(server, operation):
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def check(case):
        response = case.call(base_url=server.url, timeout=30)
        _assert_openai_error(response.status_code, response.json(), case.body)

    check()


def _utf8(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_valid_requests_are_answered_as_documented(server, operation):
    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def check(case):
        assume(_utf8(case.body))  # lone surrogates are valid JSON strings, not text
        response = case.call(base_url=server.url, timeout=30)
        assert response.status_code == 200, (response.status_code, case.body)
        case.validate_response(response)

    check()


def test_raw_bytes_bodies_and_content_types_get_4xx(server):
    # Invalid UTF-8, control characters, empty bodies, odd media types: below what a JSON
    # schema can describe.
    @FUZZ
    @given(body=st.one_of(st.binary(max_size=300), st.just(b""),
                          st.just(b"\xff\xfe{\"input\": 1}"), st.just(b'{"input": "\\ud800"}')),
           content_type=st.sampled_from(["application/json", "text/plain",
                                         "application/x-www-form-urlencoded",
                                         "application/json; charset=latin-1"]))
    def check(body, content_type):
        try:
            parsed = json.loads(body.decode("utf-8"))
            assume(not (isinstance(parsed, dict) and isinstance(parsed.get("input"), str)))
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
        status, _, reply = post_json(server.url, body, content_type=content_type)
        _assert_openai_error(status, reply, (body[:60], content_type))

    check()


def test_the_service_still_serves_after_fuzzing(server):
    status, _, body = post_json(server.url, {"input": ["still", "fine"], "model": "stand-in"})
    assert status == 200 and len(body["data"]) == 2
