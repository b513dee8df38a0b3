"""Invoke adapters: run one batch on a buffer's infer function (functions/embed.py).

- InProcessInvoker calls the function's code in this process (locally, and on a GPU host);
- LambdaInvoker calls the deployed function with Lambda Invoke (RequestResponse).
Both answer an InferReply or raise InvokeFailed, whose kind tells the dispatcher whether halving
the batch can isolate a poison input (INPUT) or the whole batch has failed (the rest).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import boto3
import numpy as np
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.embed import EmbedEvent, embed_batch, model_id

log = logging.getLogger("mbs.dispatcher")

# Lambda quotas: "Invocation payload (request and response): 6 MB each for synchronous".
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# The read timeout sits above the function's own timeout, so a slow batch ends as the function's
# timeout error (a reply) rather than as a client-side timeout with the batch still running.
READ_TIMEOUT_MARGIN_S = 5
# Errors that say the function cannot serve any batch: halving would only multiply them.
WHOLE_BATCH_ERRORS = frozenset({"ModelLoadError", "BadEvent", "MemoryError"})
# Lambda's own failure types (Runtime.ExitError, Runtime.OutOfMemory, Sandbox.Timedout, ...).
PLATFORM_ERROR_PREFIXES = ("Runtime.", "Sandbox.", "Function.")
# Lambda Invoke's throttling errors (API reference, Invoke, "Errors").
THROTTLE_CODES = frozenset({"TooManyRequestsException", "EC2ThrottledException"})


@dataclass(frozen=True)
class InferInput:
    id: str
    text: str  # already cut to the model's 256 tokens
    tokens: int = 0  # the model's token count of `text` (padding accounting; not sent)


@dataclass(frozen=True)
class InferReply:
    embeddings: np.ndarray  # (inputs, dim) float32, in input order
    padded_length: int
    inference_ms: float
    device: str
    model: str


class FailureKind(StrEnum):
    INPUT = "input"  # the function raised on this batch's inputs: bisection can isolate one
    FUNCTION = "function"  # the function cannot serve the batch (model, timeout, crash, reply)
    THROTTLED = "throttled"  # the platform refused the invocation (concurrency)
    TRANSPORT = "transport"  # no reply came back (network, read timeout)
    TOO_LARGE = "too_large"  # the batch's payload is over the invoke limit; it never left


class InvokeFailed(Exception):
    """One invocation failed; `kind` says what may be tried next."""

    def __init__(self, kind: FailureKind, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.kind = kind
        self.error_type = error_type
        self.message = message


def failure_kind(error_type: str, message: str) -> FailureKind:
    """INPUT for an error the function raised on its inputs; FUNCTION for the platform's own."""
    if error_type in WHOLE_BATCH_ERRORS or error_type.startswith(PLATFORM_ERROR_PREFIXES):
        return FailureKind.FUNCTION
    if "Task timed out" in message:  # the timeout reply of older runtimes has no errorType
        return FailureKind.FUNCTION
    return FailureKind.INPUT


def make_event(buffer: str, inputs: Sequence[InferInput]) -> EmbedEvent:
    return {"inputs": [{"id": i.id, "text": i.text} for i in inputs], "buffer": buffer}


def encode_event(buffer: str, inputs: Sequence[InferInput]) -> bytes:
    """The invoke payload, compact, as sent (so that its size is the one that counts)."""
    return json.dumps(make_event(buffer, inputs), separators=(",", ":")).encode("utf-8")


def parse_reply(raw: Any, expected: int) -> InferReply:
    """An EmbedReply dict -> InferReply; InvokeFailed(FUNCTION) if it is not one."""
    try:
        vectors = np.asarray(raw["embeddings"], dtype=np.float32)
        reply = InferReply(embeddings=vectors, padded_length=int(raw["padded_length"]),
                           inference_ms=float(raw["inference_ms"]), device=str(raw["device"]),
                           model=str(raw["model"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvokeFailed(FailureKind.FUNCTION, "BadReply",
                           f"the reply is not an EmbedReply: {exc!r}") from None
    if vectors.ndim != 2 or vectors.shape[0] != expected:
        raise InvokeFailed(FailureKind.FUNCTION, "BadReply",
                           f"expected {expected} embeddings, got shape {vectors.shape}")
    return reply


class Invoker(ABC):
    """Runs one batch on a buffer's infer function."""

    max_request_bytes: int | None = None  # None: no payload limit (in-process)
    max_reply_bytes: int | None = None

    @abstractmethod
    def invoke(self, buffer: str, inputs: Sequence[InferInput]) -> InferReply:
        """Embed `inputs` (one invocation); raises InvokeFailed."""

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Called once before serving (a model's first forward pass is several times slower)."""


class InProcessInvoker(Invoker):
    """Calls functions/embed.py's code with a model held by this process (its vectors stay
    arrays: the JSON round trip of a Lambda reply would only cost time here)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def warm_up(self) -> None:
        self.embedder.embed(["warm up"])

    def invoke(self, buffer: str, inputs: Sequence[InferInput]) -> InferReply:
        try:
            result = embed_batch(make_event(buffer, inputs), self.embedder)
        except Exception as exc:  # what Lambda would report as a FunctionError
            error_type = type(exc).__name__
            raise InvokeFailed(failure_kind(error_type, str(exc)), error_type, str(exc)) \
                from exc
        return InferReply(embeddings=result.vectors, padded_length=result.padded_length,
                          inference_ms=result.inference_ms, device=result.device,
                          model=model_id(self.embedder))


class LambdaInvoker(Invoker):
    """Lambda Invoke (RequestResponse) on the buffer's function; one attempt, never a retry."""

    max_request_bytes = MAX_SYNC_PAYLOAD_BYTES
    max_reply_bytes = MAX_SYNC_PAYLOAD_BYTES

    def __init__(self, client: Any, function_names: Mapping[str, str]) -> None:
        self._client = client
        self._functions = dict(function_names)

    def invoke(self, buffer: str, inputs: Sequence[InferInput]) -> InferReply:
        payload = encode_event(buffer, inputs)
        if len(payload) > MAX_SYNC_PAYLOAD_BYTES:
            raise InvokeFailed(FailureKind.TOO_LARGE, "PayloadTooLarge",
                               f"a batch of {len(inputs)} is {len(payload)} bytes, over the "
                               f"{MAX_SYNC_PAYLOAD_BYTES}-byte invoke limit; split it first")
        response = self._call(self._functions[buffer], payload)
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise _function_error(response["FunctionError"], body)
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvokeFailed(FailureKind.FUNCTION, "BadReply",
                               f"the reply is not JSON: {exc}") from None
        return parse_reply(raw, len(inputs))

    def _call(self, function_name: str, payload: bytes) -> dict[str, Any]:
        try:
            return self._client.invoke(FunctionName=function_name,
                                       InvocationType="RequestResponse", Payload=payload)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            kind = FailureKind.THROTTLED if code in THROTTLE_CODES else FailureKind.FUNCTION
            raise InvokeFailed(kind, code, str(exc)) from exc
        except BotoCoreError as exc:  # read timeout, connection refused or reset
            raise InvokeFailed(FailureKind.TRANSPORT, type(exc).__name__, str(exc)) from exc


def _function_error(function_error: str, body: bytes) -> InvokeFailed:
    """A reply with FunctionError set: a failure, whatever its status code says."""
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    error_type = str(raw.get("errorType") or function_error)
    message = str(raw.get("errorMessage") or body[:200])
    return InvokeFailed(failure_kind(error_type, message), error_type, message)


def lambda_client(function_timeout_s: float, max_connections: int, region: str | None = None
                  ) -> Any:
    """A Lambda client that never retries and outwaits the function's own timeout."""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    read_timeout=function_timeout_s + READ_TIMEOUT_MARGIN_S,
                    connect_timeout=5, max_pool_connections=max(10, max_connections))
    return boto3.client("lambda", region_name=region, config=config)
