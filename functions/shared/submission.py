"""Validation of `POST /v1/requests` bodies. Pure: bytes in, a Submission or an InputError out.

Two forms: `{"text": str, ...}` submits one text, `{"texts": [str, ...], ...}` up to MAX_TEXTS.
A list is all or nothing: if any item is invalid, the whole request is refused with the 4xx
that names the first bad item (`texts[3] must not be empty ...`), and nothing is stored or
enqueued. A client then fixes or drops that item and sends the list again, with no partial
submission to reconcile.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_SLO_MS = 15 * 60 * 1000  # a Lambda runs at most 15 minutes; a longer SLO is meaningless
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
REQUEST_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
ALLOWED_FIELDS = frozenset({"text", "texts", "tenant", "slo_ms", "output"})
DEFAULT_TENANT = "default"
# Texts per list submission. One call then covers 100 texts: 4 BatchWriteItem calls (25 items
# each) and, per buffer, SendMessageBatch calls of up to 10 messages; and the reply of a batch
# read of 100 results (GET /v1/requests?ids=...) is one BatchGetItem (100 keys at most).
MAX_TEXTS = 100


class InputError(Exception):
    """A client error: HTTP status, a stable machine code, and a message naming the bad value."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Submission:
    text: str | None  # the one-text form; None for a list
    tenant: str | None = None  # as given in the body; the caller's identity decides in the end
    slo_ms: int | None = None
    texts: tuple[str, ...] = ()  # the list form
    output_s3: bool = False  # the list's results go to S3 as one object when all are done

    @property
    def many(self) -> bool:
        return self.text is None


def body_bytes(body: str | None, is_base64: bool) -> bytes:
    """The raw request body of an API Gateway v2 event."""
    if body is None:
        return b""
    if not is_base64:
        return body.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(400, "invalid_body", "request body is not valid base64") from None


def _check_envelope(raw: bytes, content_type: str | None, max_body_bytes: int) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise InputError(
            415, "unsupported_media_type",
            f"Content-Type must be application/json, got {content_type!r}",
        )
    if len(raw) > max_body_bytes:
        raise InputError(
            413, "body_too_large", f"body must be <= {max_body_bytes} bytes, got {len(raw)}"
        )
    if not raw.strip():
        raise InputError(400, "empty_body", "request body is empty; send a JSON object")


def _decode_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            400, "invalid_utf8", f"body is not valid UTF-8 at byte {exc.start}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(400, "invalid_json", f"body is not valid JSON: {exc.msg} "
                         f"at line {exc.lineno} column {exc.colno}") from None


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise InputError(
            400, "wrong_type", f"{name} must be a string, got {type(text).__name__}"
        )
    if not text.strip():
        raise InputError(400, "empty_text", f"{name} must not be empty or whitespace")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON can carry "\ud800" escapes that decode to a lone surrogate: not a character,
        # and the tokenizer cannot take it.
        raise InputError(400, "invalid_text", f"{name} holds an unpaired surrogate at "
                         f"position {exc.start}") from None
    return text


def _field_texts(obj: dict[str, Any], max_text_bytes: int) -> tuple[str, ...]:
    texts = obj["texts"]
    if not isinstance(texts, list):
        raise InputError(400, "wrong_type",
                         f"field 'texts' must be a list of strings, got {type(texts).__name__}")
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise InputError(400 if not texts else 413, "list_size",
                         f"field 'texts' must hold 1..{MAX_TEXTS} texts, got {len(texts)}")
    checked = tuple(_check_text(text, f"texts[{i}]") for i, text in enumerate(texts))
    for i, text in enumerate(checked):
        if (size := len(text.encode("utf-8"))) > max_text_bytes:
            raise InputError(413, "text_too_large",
                             f"texts[{i}] must be <= {max_text_bytes} bytes, got {size}")
    return checked


def _field_output(obj: dict[str, Any]) -> bool:
    output = obj.get("output")
    if output is None:
        return False
    if not isinstance(output, dict) or set(output) - {"s3"} or not isinstance(
            output.get("s3", False), bool):
        raise InputError(400, "invalid_output",
                         f"field 'output' must be {{\"s3\": true|false}}, got {output!r}")
    return output.get("s3", False)


def _field_tenant(obj: dict[str, Any]) -> str | None:
    if "tenant" not in obj:
        return None
    tenant = obj["tenant"]
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise InputError(
            400, "invalid_tenant",
            f"field 'tenant' must be 1-64 letters, digits, '_', '-' or '.', got {tenant!r}",
        )
    return tenant


def _field_slo_ms(obj: dict[str, Any]) -> int | None:
    slo = obj.get("slo_ms")
    if slo is None:
        return None
    if isinstance(slo, bool) or not isinstance(slo, int):
        raise InputError(400, "wrong_type", f"field 'slo_ms' must be an integer, got {slo!r}")
    if not 1 <= slo <= MAX_SLO_MS:
        raise InputError(400, "out_of_range", f"field 'slo_ms' must be in 1..{MAX_SLO_MS}, "
                         f"got {slo}")
    return slo


def parse_submission(raw: bytes, content_type: str | None, max_body_bytes: int,
                     max_list_body_bytes: int | None = None) -> Submission:
    """Validate a request body; raises InputError (4xx) naming what is wrong.

    max_body_bytes bounds a one-text body and each text of a list; max_list_body_bytes (default:
    the same) bounds a list's body.
    """
    _check_envelope(raw, content_type, max(max_body_bytes, max_list_body_bytes or 0))
    obj = _decode_json(raw)
    if not isinstance(obj, dict):
        raise InputError(400, "wrong_type", f"body must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - ALLOWED_FIELDS)
    if unknown:
        raise InputError(400, "unknown_field", f"unknown field(s) {unknown}; allowed: "
                         f"{sorted(ALLOWED_FIELDS)}")
    if "text" in obj and "texts" in obj:
        raise InputError(400, "conflicting_fields", "send 'text' (one) or 'texts' (a list), "
                         "not both")
    tenant, slo_ms = _field_tenant(obj), _field_slo_ms(obj)
    if "texts" in obj:
        return Submission(text=None, tenant=tenant, slo_ms=slo_ms,
                          texts=_field_texts(obj, max_body_bytes), output_s3=_field_output(obj))
    if "text" not in obj:
        raise InputError(400, "missing_field", "field 'text' (or 'texts') is required")
    if "output" in obj:
        raise InputError(400, "invalid_output", "field 'output' goes with 'texts' (a list)")
    if len(raw) > max_body_bytes:
        raise InputError(
            413, "body_too_large", f"body must be <= {max_body_bytes} bytes, got {len(raw)}")
    return Submission(text=_check_text(obj["text"], "field 'text'"), tenant=tenant, slo_ms=slo_ms)


def check_request_id(request_id: str) -> str:
    """Request ids are 32 lowercase hex digits (uuid4().hex)."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InputError(
            400, "invalid_id", f"request id must be 32 lowercase hex digits, got {request_id!r}"
        )
    return request_id
