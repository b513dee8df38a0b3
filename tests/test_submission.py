from __future__ import annotations

import base64
import json
import uuid

import pytest

from functions.shared.submission import (
    MAX_SLO_MS,
    InputError,
    Submission,
    body_bytes,
    check_request_id,
    parse_submission,
)

JSON = "application/json"
LIMIT = 1024


def parse(obj_or_raw: object, content_type: str | None = JSON, limit: int = LIMIT) -> Submission:
    raw = obj_or_raw if isinstance(obj_or_raw, bytes) else json.dumps(obj_or_raw).encode()
    return parse_submission(raw, content_type, limit)


def rejects(obj_or_raw: object, content_type: str | None = JSON, limit: int = LIMIT) -> InputError:
    with pytest.raises(InputError) as err:
        parse(obj_or_raw, content_type, limit)
    return err.value


# ---- valid bodies -----------------------------------------------------------------------------


def test_text_only_takes_defaults():
    assert parse({"text": "a fine film"}) == Submission(text="a fine film", tenant=None,
                                                        slo_ms=None)


def test_all_fields():
    assert parse({"text": "x", "tenant": "acme-1.eu_w", "slo_ms": 500}) == Submission(
        "x", "acme-1.eu_w", 500)


def test_text_is_kept_verbatim():
    text = "  ünïcödé — 映画 🎬 \n second line  "
    assert parse({"text": text}).text == text


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON",
    " application/json ;charset=UTF-8"])
def test_content_type_variants_are_accepted(content_type):
    assert parse({"text": "x"}, content_type).text == "x"


def test_body_of_exactly_the_limit_is_accepted():
    raw = json.dumps({"text": "a"}).encode()
    raw = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(raw) == LIMIT
    assert parse(raw).text == "a"


@pytest.mark.parametrize("slo", [1, MAX_SLO_MS, None])
def test_slo_bounds_are_inclusive(slo):
    assert parse({"text": "x", "slo_ms": slo}).slo_ms == slo


def test_tenant_of_64_characters_is_accepted():
    assert parse({"text": "x", "tenant": "t" * 64}).tenant == "t" * 64


# ---- bad bodies: status and stable code ------------------------------------------------------


BAD = [
    # (id, body (object or raw bytes), content type, status, code)
    ("no-content-type", {"text": "x"}, None, 415, "unsupported_media_type"),
    ("text-plain", {"text": "x"}, "text/plain", 415, "unsupported_media_type"),
    ("json-suffix-lookalike", {"text": "x"}, "application/jsonx", 415, "unsupported_media_type"),
    ("too-large", {"text": "x" * LIMIT}, JSON, 413, "body_too_large"),
    ("empty", b"", JSON, 400, "empty_body"),
    ("whitespace-only", b" \n\t ", JSON, 400, "empty_body"),
    ("invalid-utf8", b'{"text": "\xff\xfe"}', JSON, 400, "invalid_utf8"),
    ("invalid-json", b'{"text": ', JSON, 400, "invalid_json"),
    ("trailing-garbage", b'{"text": "x"} y', JSON, 400, "invalid_json"),
    ("array", [{"text": "x"}], JSON, 400, "wrong_type"),
    ("string", "text", JSON, 400, "wrong_type"),
    ("null", b"null", JSON, 400, "wrong_type"),
    ("missing-text", {"tenant": "acme"}, JSON, 400, "missing_field"),
    ("empty-text", {"text": ""}, JSON, 400, "empty_text"),
    ("whitespace-text", {"text": " \n\t "}, JSON, 400, "empty_text"),
    ("int-text", {"text": 5}, JSON, 400, "wrong_type"),
    ("null-text", {"text": None}, JSON, 400, "wrong_type"),
    ("list-text", {"text": ["a"]}, JSON, 400, "wrong_type"),
    ("lone-surrogate", {"text": "a\ud800b"}, JSON, 400, "invalid_text"),
    ("unknown-field", {"text": "x", "model": "gpt"}, JSON, 400, "unknown_field"),
    ("empty-tenant", {"text": "x", "tenant": ""}, JSON, 400, "invalid_tenant"),
    ("tenant-with-space", {"text": "x", "tenant": "a b"}, JSON, 400, "invalid_tenant"),
    ("tenant-with-slash", {"text": "x", "tenant": "a/b"}, JSON, 400, "invalid_tenant"),
    ("tenant-trailing-newline", {"text": "x", "tenant": "acme\n"}, JSON, 400, "invalid_tenant"),
    ("tenant-too-long", {"text": "x", "tenant": "t" * 65}, JSON, 400, "invalid_tenant"),
    ("tenant-not-string", {"text": "x", "tenant": 7}, JSON, 400, "invalid_tenant"),
    ("tenant-null", {"text": "x", "tenant": None}, JSON, 400, "invalid_tenant"),
    ("slo-bool", {"text": "x", "slo_ms": True}, JSON, 400, "wrong_type"),
    ("slo-str", {"text": "x", "slo_ms": "100"}, JSON, 400, "wrong_type"),
    ("slo-float", {"text": "x", "slo_ms": 100.5}, JSON, 400, "wrong_type"),
    ("slo-zero", {"text": "x", "slo_ms": 0}, JSON, 400, "out_of_range"),
    ("slo-negative", {"text": "x", "slo_ms": -5}, JSON, 400, "out_of_range"),
    ("slo-huge", {"text": "x", "slo_ms": MAX_SLO_MS + 1}, JSON, 400, "out_of_range"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_body_maps_to_status_and_code(body, content_type, status, code):
    error = rejects(body, content_type)
    assert (error.status, error.code) == (status, code)
    assert error.body() == {"error": {"code": code, "message": error.message}}
    assert error.message


def test_size_is_checked_before_json_is_parsed():
    # a body too large AND not JSON is reported as too large: no parsing of oversized input
    assert rejects(b"{" * (LIMIT + 1)).status == 413


def test_content_type_is_checked_first():
    assert rejects(b"", "text/plain").status == 415


@pytest.mark.parametrize(("body", "needle"), [
    ({"text": "x", "slo_ms": 0}, "got 0"),
    ({"text": "x", "tenant": "a b"}, "'a b'"),
    ({"text": "x", "zzz": 1, "aaa": 2}, "['aaa', 'zzz']"),
    ({"text": 5}, "got int"),
])
def test_messages_name_the_bad_value(body, needle):
    assert needle in rejects(body).message


def test_invalid_utf8_names_the_byte_offset():
    assert "at byte 10" in rejects(b'{"text": "\xff"}').message


# ---- body_bytes ---------------------------------------------------------------------------------


def test_absent_body_is_empty():
    assert body_bytes(None, False) == b""
    assert body_bytes(None, True) == b""


def test_plain_body_is_utf8_encoded():
    assert body_bytes('{"text": "é"}', False) == '{"text": "é"}'.encode()


def test_base64_body_is_decoded_and_parses():
    raw = json.dumps({"text": "hello"}).encode()
    decoded = body_bytes(base64.b64encode(raw).decode(), True)
    assert decoded == raw
    assert parse_submission(decoded, JSON, LIMIT).text == "hello"


def test_base64_body_keeps_invalid_utf8_for_the_parser_to_reject():
    decoded = body_bytes(base64.b64encode(b'{"text": "\xff"}').decode(), True)
    assert decoded == b'{"text": "\xff"}'
    with pytest.raises(InputError) as err:
        parse_submission(decoded, JSON, LIMIT)
    assert err.value.code == "invalid_utf8"


@pytest.mark.parametrize("body", ["not base64!", "abc", "YWJj=x"])
def test_invalid_base64_is_a_400(body):
    with pytest.raises(InputError) as err:
        body_bytes(body, True)
    assert (err.value.status, err.value.code) == (400, "invalid_body")


# ---- request ids -----------------------------------------------------------------------------


def test_uuid4_hex_is_a_valid_request_id():
    request_id = uuid.uuid4().hex
    assert check_request_id(request_id) == request_id


@pytest.mark.parametrize("request_id", [
    "", "abc", "0123456789ABCDEF0123456789ABCDEF", str(uuid.UUID(int=1)),
    "0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcdeg",
    "../0123456789abcdef0123456789abcd", "0123456789abcdef0123456789abcdef\n",
])
def test_malformed_request_id_is_a_400(request_id):
    with pytest.raises(InputError) as err:
        check_request_id(request_id)
    assert (err.value.status, err.value.code) == (400, "invalid_id")


def test_nul_and_control_characters_are_accepted():
    # Harmless: the SQS body is json.dumps output (pure ASCII) and the tokenizer drops them.
    assert parse({"text": "a\x00b\x07c"}).text == "a\x00b\x07c"


def test_lone_surrogate_escape_is_a_400_naming_the_position():
    with pytest.raises(InputError) as exc:
        parse_submission(b'{"text": "ab\\ud800"}', "application/json", 1000)
    assert exc.value.status == 400 and "position 2" in exc.value.message
