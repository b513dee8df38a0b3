"""Validation of `POST /v1/embeddings` bodies (OpenAI's embeddings request). Pure: bytes in, an
EmbeddingRequest or an ApiError out, before anything is tokenized or batched.

Limits (documented in the OpenAPI document too):
- at most MAX_INPUTS inputs per request: one request's inputs ride in the service's batches, so
  a bound keeps one caller from filling a buffer alone (OpenAI allows 2,048);
- at most MAX_BODY_BYTES of body (1 MiB: 256 inputs of ~4 KiB, far past 256 tokens each);
- `model` is optional; when given it must name the served model (404 `model_not_found`
  otherwise, as OpenAI answers), so that a client never mistakes these vectors for another
  model's;
- `dimensions`, when given, must be the model's 384: the model cannot shorten its vectors.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from functions.shared.model import EMBEDDING_DIM
from infra.dispatcher.errors import ApiError

MAX_INPUTS = 256
MAX_BODY_BYTES = 1024 * 1024
ALLOWED_FIELDS = ("input", "model", "encoding_format", "user", "dimensions")


class EncodingFormat(StrEnum):
    FLOAT = "float"
    BASE64 = "base64"  # little-endian float32 bytes, base64-encoded, as OpenAI sends them


@dataclass(frozen=True)
class EmbeddingRequest:
    inputs: tuple[str, ...]
    model: str | None = None
    encoding_format: EncodingFormat = EncodingFormat.FLOAT
    user: str | None = None


def check_envelope(content_type: str | None, body: bytes) -> None:
    """415 for a body that is not JSON by its media type, 400 for an empty one."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, got {content_type!r}")
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty; send a JSON object")


def too_large(size_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large",
                    f"request body must be <= {MAX_BODY_BYTES} bytes, got {size_bytes}")


def _decode(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"body is not valid UTF-8 at byte {exc.start}") \
            from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc.msg} at line "
                       f"{exc.lineno} column {exc.colno}") from None


def _type_error(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, "invalid_type", f"'{param}' must be {expected}, got "
                    f"{type(value).__name__} {_short(value)}", param)


def _short(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=True)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _text(param: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error(param, "a string", value)
    if not value:
        raise ApiError(400, "empty_input", f"'{param}' must not be an empty string", param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON can carry "\ud800" escapes that decode to a lone surrogate: not a character.
        raise ApiError(400, "invalid_text", f"'{param}' holds an unpaired surrogate at "
                       f"position {exc.start}", param) from None
    return value


def _inputs(obj: dict[str, Any]) -> tuple[str, ...]:
    if "input" not in obj:
        raise ApiError(400, "missing_required_parameter", "'input' is required", "input")
    raw = obj["input"]
    if isinstance(raw, str):
        return (_text("input", raw),)
    if not isinstance(raw, list):
        raise _type_error("input", "a string or an array of strings", raw)
    if not raw:
        raise ApiError(400, "empty_input", "'input' must hold at least one string, got []",
                       "input")
    if len(raw) > MAX_INPUTS:
        raise ApiError(400, "too_many_inputs", f"'input' may hold at most {MAX_INPUTS} "
                       f"strings, got {len(raw)}", "input")
    return tuple(_text(f"input[{i}]", item) for i, item in enumerate(raw))


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    if name not in obj:
        return None
    if not isinstance(obj[name], str):
        raise _type_error(name, "a string", obj[name])
    return obj[name]


def _encoding(obj: dict[str, Any]) -> EncodingFormat:
    raw = obj.get("encoding_format", EncodingFormat.FLOAT.value)
    try:
        return EncodingFormat(raw)
    except (ValueError, TypeError):
        valid = [f.value for f in EncodingFormat]
        raise ApiError(400, "invalid_encoding_format", f"'encoding_format' must be one of "
                       f"{valid}, got {_short(raw)}", "encoding_format") from None


def _check_dimensions(obj: dict[str, Any]) -> None:
    if "dimensions" not in obj:
        return
    value = obj["dimensions"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("dimensions", "an integer", value)
    if value != EMBEDDING_DIM:
        raise ApiError(400, "invalid_dimensions", f"'dimensions' must be {EMBEDDING_DIM} "
                       f"(the model's width), got {value}", "dimensions")


def _check_model(model: str | None, served: Collection[str]) -> None:
    if model is not None and model not in served:
        raise ApiError(404, "model_not_found", f"the model {model!r} is not served here; "
                       f"served: {sorted(served)}", "model")


def parse_embedding_request(body: bytes, content_type: str | None,
                            served_models: Collection[str]) -> EmbeddingRequest:
    """Validate a request body; raises ApiError (4xx) naming what is wrong."""
    check_envelope(content_type, body)
    obj = _decode(body)
    if not isinstance(obj, dict):
        raise _type_error("body", "a JSON object", obj)
    unknown = sorted(set(obj) - set(ALLOWED_FIELDS))
    if unknown:
        raise ApiError(400, "unknown_parameter", f"unrecognized request argument(s) {unknown}; "
                       f"allowed: {list(ALLOWED_FIELDS)}", unknown[0])
    inputs = _inputs(obj)
    model = _optional_str(obj, "model")
    _check_model(model, served_models)
    encoding = _encoding(obj)
    _check_dimensions(obj)
    return EmbeddingRequest(inputs=inputs, model=model, encoding_format=encoding,
                            user=_optional_str(obj, "user"))
