"""GET /v1/requests/{id}, GET /v1/requests?ids=a,b,c and GET /v1/jobs/{id}: status and results.

Every route answers only the caller's own requests and jobs: another tenant's id looks unknown.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.logic.jobs import job_view
from functions.logic.lookup import tenant_view, tenant_views
from functions.shared import deps
from functions.shared.http import install_error_handlers, json_response
from functions.shared.identity import authenticated_tenant
from functions.shared.settings import get_settings
from functions.shared.submission import (
    DEFAULT_TENANT,
    MAX_TEXTS,
    InputError,
    check_request_id,
)

logger = Logger(service="results")
app = APIGatewayHttpResolver()
install_error_handlers(app)


def _caller() -> str:
    return authenticated_tenant(app.current_event.raw_event,
                                get_settings().trust_tenant_header) or DEFAULT_TENANT


def _not_found(what: str, some_id: str) -> Response:
    return json_response(404, {"error": {"code": "unknown_id",
                                         "message": f"no {what} with id {some_id!r}"}})


@app.get("/v1/requests/<request_id>")
def get_request(request_id: str) -> Response:
    item = tenant_view(deps.result_store(), check_request_id(request_id), _caller())
    if item is None:
        return _not_found("request", request_id)
    return json_response(200, item)


def _ids_param(raw: str | None) -> list[str]:
    """?ids=a,b,c: 1..MAX_TEXTS well-formed ids; duplicates then dropped, order kept."""
    if not raw:
        raise InputError(400, "missing_field", "query parameter 'ids' is required "
                         "(comma-separated request ids)")
    given = raw.split(",")
    if len(given) > MAX_TEXTS:
        raise InputError(400, "list_size", f"'ids' must name 1..{MAX_TEXTS} requests, "
                         f"got {len(given)}")
    return list(dict.fromkeys(check_request_id(i) for i in given))


@app.get("/v1/requests")
def get_requests() -> Response:
    query = app.current_event.query_string_parameters
    if unknown := sorted(set(query) - {"ids"}):
        raise InputError(400, "unknown_field", f"unknown query parameter(s) {unknown}; "
                         f"allowed: ['ids']")
    ids = _ids_param(query.get("ids"))
    found, missing = tenant_views(deps.result_store(), ids, _caller())
    return json_response(200, {"results": found, "missing": missing})


@app.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    objects = deps.result_objects()
    if objects is None:
        return _not_found("job", job_id)  # no bucket: no job was ever created here
    view = job_view(deps.job_store(), objects, check_request_id(job_id), _caller())
    if view is None:
        return _not_found("job", job_id)
    return json_response(200, view)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
