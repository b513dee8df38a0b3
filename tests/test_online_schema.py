"""Request validation, the response shape, truncation and the OpenAPI document of the online API
(pure: no server)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from buffers.plan import MODEL_MAX_LENGTH
from functions.shared.tokenizer import batch_tokenizer, count_tokens, truncate_text
from infra.dispatcher.errors import ApiError
from infra.dispatcher.execute import Embedded
from infra.dispatcher.inputs import prepare_inputs
from infra.dispatcher.openai_schema import (
    MAX_INPUTS,
    EncodingFormat,
    check_envelope,
    parse_embedding_request,
)
from infra.dispatcher.openapi_doc import openapi_document
from infra.dispatcher.responses import embedding_response, encode_vector
from infra.dispatcher.waiting import InputResult

MODELS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def _parse(body, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_embedding_request(raw, content_type, MODELS)


def _error(body, content_type="application/json") -> ApiError:
    with pytest.raises(ApiError) as caught:
        _parse(body, content_type)
    return caught.value


def test_a_string_and_a_list_are_accepted():
    assert _parse({"input": "hi"}).inputs == ("hi",)
    parsed = _parse({"input": ["a", " ", "b"], "model": MODELS[1], "encoding_format": "base64",
                     "user": "u1", "dimensions": 384})
    assert parsed.inputs == ("a", " ", "b")
    assert parsed.encoding_format is EncodingFormat.BASE64 and parsed.user == "u1"


@pytest.mark.parametrize("body, status, code, param, named", [
    ({"input": ""}, 400, "empty_input", "input", "empty"),
    ({"input": []}, 400, "empty_input", "input", "[]"),
    ({"input": ["a", 3]}, 400, "invalid_type", "input[1]", "int 3"),
    ({"input": ["a", None]}, 400, "invalid_type", "input[1]", "NoneType"),
    ({"input": [[101, 2023]]}, 400, "invalid_type", "input[0]", "[101, 2023]"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, 400, "too_many_inputs", "input", "257"),
    ({"input": {"a": 1}}, 400, "invalid_type", "input", "dict"),
    ({}, 400, "missing_required_parameter", "input", "required"),
    ({"input": "a", "encoding_format": "int8"}, 400, "invalid_encoding_format",
     "encoding_format", "'int8'".replace("'", '"')),
    ({"input": "a", "encoding_format": None}, 400, "invalid_encoding_format",
     "encoding_format", "null"),
    ({"input": "a", "model": "text-embedding-3-small"}, 404, "model_not_found", "model",
     "text-embedding-3-small"),
    ({"input": "a", "model": 7}, 400, "invalid_type", "model", "int"),
    ({"input": "a", "user": ["u"]}, 400, "invalid_type", "user", "list"),
    ({"input": "a", "dimensions": 128}, 400, "invalid_dimensions", "dimensions", "128"),
    ({"input": "a", "dimensions": True}, 400, "invalid_type", "dimensions", "bool"),
    ({"input": "a", "temperature": 1}, 400, "unknown_parameter", "temperature", "temperature"),
    (["a"], 400, "invalid_type", "body", "list"),
    ({"input": "\ud800"}, 400, "invalid_text", "input", "surrogate"),
])
def test_bad_bodies_get_a_4xx_naming_the_bad_value(body, status, code, param, named):
    error = _error(body)
    assert (error.status, error.code, error.param) == (status, code, param)
    assert named in error.message
    shaped = error.body()["error"]
    assert set(shaped) == {"message", "type", "param", "code"}
    assert shaped["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw, content_type, status, code", [
    (b'{"input": "a"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"input": "a"}', None, 415, "unsupported_media_type"),
    (b"", "application/json", 400, "empty_body"),
    (b"   ", "application/json", 400, "empty_body"),
    (b'{"input": "a"', "application/json", 400, "invalid_json"),
    (b'{"input": "\xff"}', "application/json", 400, "invalid_utf8"),
])
def test_bad_envelopes_get_a_4xx(raw, content_type, status, code):
    error = _error(raw, content_type)
    assert (error.status, error.code) == (status, code)


def test_a_charset_parameter_is_allowed():
    check_envelope("application/json; charset=utf-8", b"{}")


def test_errors_map_to_openai_types_and_retry_after():
    assert ApiError(429, "rate_limit_exceeded", "m", retry_after_s=2).type == "rate_limit_error"
    assert ApiError(429, "x", "m", retry_after_s=2).headers() == {"Retry-After": "2"}
    assert ApiError(502, "infer_failed", "m").type == "server_error"


def test_truncation_keeps_exactly_the_tokens_the_model_reads():
    # Words the tokenizer splits into pieces, accents, CJK and one overlong word.
    words = ["unaffable", "café", "東京", "don't", "x" * 150, "re-enter", "naïve"]
    for n in (300, 401, 777):
        text = " ".join(words[i % len(words)] for i in range(n))
        cut, count = truncate_text(text)
        assert count.length == MODEL_MAX_LENGTH and count.truncated
        assert len(cut) < len(text)
        assert batch_tokenizer().encode(cut).ids == batch_tokenizer().encode(text).ids
    short = "a short text"
    assert truncate_text(short) == (short, count_tokens(short))


def test_prepared_inputs_report_truncation():
    long_text = "word " * 400
    short, long = prepare_inputs(["hello", long_text])
    assert (short.tokens, short.truncated) == (3, False)
    assert (long.tokens, long.full_tokens, long.truncated) == (256, 402, True)


def test_base64_is_little_endian_float32_as_openai_sends():
    vector = np.array([1.0, -0.5, 0.25], dtype=np.float32)
    raw = base64.b64decode(encode_vector(vector, EncodingFormat.BASE64))
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), vector)
    assert encode_vector(vector, EncodingFormat.FLOAT).tolist() == [1.0, -0.5, 0.25]


def test_the_response_keeps_input_order_and_puts_mbs_figures_aside():
    prepared = prepare_inputs(["first", "second text"])
    results = [InputResult(Embedded(np.full(384, i, dtype=np.float32), 4, 2, 1.5, "cpu",
                                    "all-MiniLM-L6-v2", "b1", 3 + 4), "short", 3.0)
               for i in range(2)]
    body = embedding_response(results, prepared, "all-MiniLM-L6-v2", EncodingFormat.FLOAT)
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"][0] == 1.0
    assert body["usage"] == {"prompt_tokens": 3 + 4, "total_tokens": 3 + 4}
    assert body["mbs"]["inputs"][1] == {
        "index": 1, "buffer": "short", "tokens": 4, "truncated": False, "padded_length": 4,
        "batch_size": 2, "batch_id": "b1", "batch_real_tokens": 7, "queue_wait_ms": 3.0,
        "inference_ms": 1.5, "device": "cpu"}


def test_the_openapi_document_states_the_limits():
    document = openapi_document(MODELS)
    request = document["components"]["schemas"]["EmbeddingRequest"]
    assert request["properties"]["input"]["oneOf"][1]["maxItems"] == MAX_INPUTS
    assert request["additionalProperties"] is False
    assert request["properties"]["model"]["enum"] == sorted(MODELS)
    assert "1048576 bytes" in document["info"]["description"]
    responses = document["paths"]["/v1/embeddings"]["post"]["responses"]
    assert {"200", "400", "413", "415", "429", "502", "503", "504"} <= set(responses)
