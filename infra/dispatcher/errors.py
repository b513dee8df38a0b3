"""The online API's one error type, in OpenAI's shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

from typing import Any

from infra.dispatcher.invoke import FailureKind, InvokeFailed

# OpenAI's error types (the API reference, "Error codes"): a client mistake, a refusal to
# take more work, or a failure on the server's side.
INVALID_REQUEST = "invalid_request_error"
RATE_LIMIT = "rate_limit_error"
SERVER_ERROR = "server_error"


class ApiError(Exception):
    """An HTTP error: status, a stable machine code, and a message that names the bad value."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def type(self) -> str:
        if self.status == 429:
            return RATE_LIMIT
        return SERVER_ERROR if self.status >= 500 else INVALID_REQUEST

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


MAX_REASON_CHARS = 300  # a reply's error message is the function's; keep stack dumps out


def infer_error(failure: InvokeFailed, buffer: str) -> ApiError:
    """What a caller whose input's invocation failed is told: 502, or 503 when throttled."""
    reason = f"{failure.error_type}: {failure.message}"[:MAX_REASON_CHARS]
    if failure.kind is FailureKind.INPUT:
        return ApiError(502, "input_rejected", f"the model rejected this input (isolated from "
                        f"its batch in buffer {buffer!r}): {reason}")
    if failure.kind is FailureKind.THROTTLED:
        return ApiError(503, "infer_throttled", f"buffer {buffer!r}'s function was throttled: "
                        f"{reason}", retry_after_s=1)
    return ApiError(502, "infer_failed", f"buffer {buffer!r}'s function failed this batch "
                    f"({failure.kind.value}): {reason}")
