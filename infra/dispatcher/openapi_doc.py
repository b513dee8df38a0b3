"""The online API's OpenAPI 3.0 document, built from the limits the validator enforces."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from buffers.plan import MODEL_MAX_LENGTH
from functions.shared.model import EMBEDDING_DIM
from infra.dispatcher.openai_schema import MAX_BODY_BYTES, MAX_INPUTS, EncodingFormat

ERROR_STATUSES = ("400", "404", "413", "415", "429", "502", "503", "504")

DESCRIPTION = (
    "OpenAI-compatible embeddings. Each input is routed by its token length to one of the "
    "plan's buffers and batched with inputs of similar length, so the inputs of one call may "
    f"ride in several batches; `data` keeps the order of `input`. Limits: at most {MAX_INPUTS} "
    f"inputs and {MAX_BODY_BYTES} bytes of body. Truncation: an input over "
    f"{MODEL_MAX_LENGTH} tokens ([CLS] and [SEP] included) is embedded from its first "
    f"{MODEL_MAX_LENGTH} tokens, as sentence-transformers does; `mbs.inputs[i].truncated` says "
    "so. `usage` counts the tokens the model read. `user` is the fairness tenant under the "
    "vtc policy. Errors use OpenAI's shape; 429 and 503 carry Retry-After; 502 names the "
    "failed invocation or the rejected input; 504 means the SLO could no longer be met."
)


def _request_schema(models: Collection[str]) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object", "required": ["input"], "additionalProperties": False,
        "properties": {
            "input": {"oneOf": [text, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS,
                                       "items": text}]},
            "model": {"type": "string", "enum": sorted(models)},
            "encoding_format": {"type": "string", "enum": [f.value for f in EncodingFormat],
                                "default": EncodingFormat.FLOAT.value},
            "user": {"type": "string"},
            "dimensions": {"type": "integer", "enum": [EMBEDDING_DIM]},
        },
    }


def _mbs_input_schema() -> dict[str, Any]:
    integer, number = {"type": "integer"}, {"type": "number"}
    return {"type": "object", "properties": {
        "index": integer, "buffer": {"type": "string"}, "tokens": integer,
        "truncated": {"type": "boolean"}, "padded_length": integer, "batch_size": integer,
        "batch_id": {"type": "string"}, "batch_real_tokens": integer,
        "queue_wait_ms": number, "inference_ms": number, "device": {"type": "string"}}}


def _response_schema() -> dict[str, Any]:
    vector = {"oneOf": [{"type": "array", "items": {"type": "number"},
                         "minItems": EMBEDDING_DIM, "maxItems": EMBEDDING_DIM},
                        {"type": "string", "format": "byte"}]}
    item = {"type": "object", "required": ["object", "index", "embedding"], "properties": {
        "object": {"type": "string", "enum": ["embedding"]}, "index": {"type": "integer"},
        "embedding": vector}}
    usage = {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
        "prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}
    mbs = {"type": "object", "properties": {"inputs": {"type": "array",
                                                       "items": _mbs_input_schema()}}}
    return {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
        "object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": item},
        "model": {"type": "string"}, "usage": usage, "mbs": mbs}}


def _error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": "string", "nullable": True}, "code": {"type": "string"}}}}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def openapi_document(models: Collection[str]) -> dict[str, Any]:
    """The document served at /openapi.json; `models` are the names `model` accepts."""
    error = {"$ref": "#/components/responses/Error"}
    embeddings = {"post": {
        "operationId": "createEmbedding", "summary": "Embed one text or a list of texts",
        "requestBody": {"required": True, "content": _json("EmbeddingRequest")},
        "responses": {"200": {"description": "One embedding per input, in input order.",
                              "content": _json("EmbeddingList")},
                      **{status: error for status in ERROR_STATUSES}}}}
    health = {"get": {"operationId": "health", "responses": {
        "200": {"description": "Serving.", "content": {"application/json": {"schema": {
            "type": "object"}}}},
        "503": {"description": "Draining for shutdown.", "content": {"application/json": {
            "schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "MBS online embeddings", "version": "1.0.0",
                 "description": DESCRIPTION},
        "paths": {"/v1/embeddings": embeddings, "/healthz": health},
        "components": {
            "schemas": {"EmbeddingRequest": _request_schema(models),
                        "EmbeddingList": _response_schema(), "Error": _error_schema()},
            "responses": {"Error": {"description": "OpenAI's error shape.",
                                    "content": _json("Error")}},
        },
    }
