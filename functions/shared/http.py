"""JSON responses for the HTTP handlers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from functions.shared.submission import InputError


def json_response(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def error_response(error: InputError) -> Response:
    return json_response(error.status, error.body())


def not_found_response(path: str) -> Response:
    return json_response(404, {"error": {"code": "not_found", "message": f"no route {path}"}})


RETRY_AFTER_S = 1


def overloaded_response(buffer_name: str) -> Response:
    """429 with Retry-After: the buffer's queue is past its depth limit; nothing was stored."""
    return Response(
        status_code=429, content_type=content_types.APPLICATION_JSON,
        headers={"Retry-After": str(RETRY_AFTER_S)},
        body={"error": {"code": "overloaded",
                        "message": f"buffer {buffer_name!r} is saturated; retry after "
                                   f"{RETRY_AFTER_S} s"}})


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Every route's InputError becomes its 4xx JSON; an unknown route a JSON 404."""

    @app.exception_handler(InputError)
    def on_input_error(error: InputError) -> Response:
        return error_response(error)

    @app.not_found
    def on_not_found(_: Exception) -> Response:
        return not_found_response(app.current_event.path)
