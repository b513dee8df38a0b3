"""Validation of `POST /v1/requests` bodies. Pure: bytes in, a Submission or an InputError out."""

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
ALLOWED_FIELDS = frozenset({"text", "tenant", "slo_ms"})
DEFAULT_TENANT = "default"


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
    text: str
    tenant: str | None = None  # as given in the body; the caller's identity decides in the end
    slo_ms: int | None = None


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


def _field_text(obj: dict[str, Any]) -> str:
    if "text" not in obj:
        raise InputError(400, "missing_field", "field 'text' is required")
    text = obj["text"]
    if not isinstance(text, str):
        raise InputError(
            400, "wrong_type", f"field 'text' must be a string, got {type(text).__name__}"
        )
    if not text.strip():
        raise InputError(400, "empty_text", "field 'text' must not be empty or whitespace")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON can carry "\ud800" escapes that decode to a lone surrogate: not a character,
        # and the tokenizer cannot take it.
        raise InputError(400, "invalid_text", f"field 'text' holds an unpaired surrogate at "
                         f"position {exc.start}") from None
    return text


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


def parse_submission(raw: bytes, content_type: str | None, max_body_bytes: int) -> Submission:
    """Validate a request body; raises InputError (4xx) naming what is wrong."""
    _check_envelope(raw, content_type, max_body_bytes)
    obj = _decode_json(raw)
    if not isinstance(obj, dict):
        raise InputError(400, "wrong_type", f"body must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - ALLOWED_FIELDS)
    if unknown:
        raise InputError(400, "unknown_field", f"unknown field(s) {unknown}; allowed: "
                         f"{sorted(ALLOWED_FIELDS)}")
    return Submission(text=_field_text(obj), tenant=_field_tenant(obj), slo_ms=_field_slo_ms(obj))


def check_request_id(request_id: str) -> str:
    """Request ids are 32 lowercase hex digits (uuid4().hex)."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InputError(
            400, "invalid_id", f"request id must be 32 lowercase hex digits, got {request_id!r}"
        )
    return request_id
