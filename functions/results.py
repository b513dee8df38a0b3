"""GET /v1/requests/{id}: a request's status, and its result once done."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.logic.lookup import tenant_view
from functions.shared import deps
from functions.shared.http import install_error_handlers, json_response
from functions.shared.identity import authenticated_tenant
from functions.shared.settings import get_settings
from functions.shared.submission import DEFAULT_TENANT, check_request_id

logger = Logger(service="results")
app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.get("/v1/requests/<request_id>")
def get_request(request_id: str) -> Response:
    caller = authenticated_tenant(app.current_event.raw_event,
                                  get_settings().trust_tenant_header) or DEFAULT_TENANT
    item = tenant_view(deps.result_store(), check_request_id(request_id), caller)
    if item is None:
        return json_response(404, {"error": {"code": "unknown_id",
                                              "message": f"no request with id {request_id!r}"}})
    return json_response(200, item)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
