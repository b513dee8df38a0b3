"""The bulk API bridged onto the online service's ASGI server: same events, same limits."""

from __future__ import annotations

import json
import threading

from starlette.applications import Starlette
from starlette.testclient import TestClient

from infra.local.bulk_bridge import bulk_routes
from infra.local.gateway import MAX_PAYLOAD_BYTES, Route


def _echo(event: dict, context: object) -> dict:
    """A handler that answers with what the event told it (API Gateway v2 shape)."""
    return {"statusCode": 202, "headers": {"content-type": "application/json", "x-seen": "1"},
            "body": json.dumps({"route": event["routeKey"], "raw": event.get("rawQueryString"),
                                "id": (event.get("pathParameters") or {}).get("id"),
                                "tenant": event["headers"].get("x-mbs-tenant")})}


ROUTES = [Route("POST", "/v1/requests", "ingest", _echo),
          Route("GET", "/v1/requests/{id}", "results", _echo)]


def test_requests_reach_their_handler_as_api_gateway_events():
    client = TestClient(Starlette(routes=bulk_routes(ROUTES)))
    posted = client.post("/v1/requests?x=1", json={"text": "hi"},
                         headers={"X-MBS-Tenant": "team-a"})
    got = client.get("/v1/requests/abc")
    assert posted.status_code == 202 and posted.headers["x-seen"] == "1"
    assert posted.json() == {"route": "POST /v1/requests", "raw": "x=1", "id": None,
                             "tenant": "team-a"}
    assert got.json()["route"] == "GET /v1/requests/{id}" and got.json()["id"] == "abc"


def test_a_method_without_a_route_gets_405_json():
    client = TestClient(Starlette(routes=bulk_routes(ROUTES)))
    reply = client.delete("/v1/requests/abc")
    assert reply.status_code == 405 and reply.json()["error"]["code"] == "method_not_allowed"


def test_a_body_past_api_gateways_limit_gets_413():
    client = TestClient(Starlette(routes=bulk_routes(ROUTES)))
    reply = client.post("/v1/requests", content=b"x",
                        headers={"content-length": str(MAX_PAYLOAD_BYTES + 1)})
    assert reply.status_code == 413


def test_past_the_in_flight_cap_the_answer_is_429_with_retry_after():
    release = threading.Event()
    entered = threading.Event()

    def slow(event: dict, context: object) -> dict:
        entered.set()
        release.wait(10)
        return {"statusCode": 202, "body": "{}"}

    app = Starlette(routes=bulk_routes([Route("POST", "/v1/requests", "ingest", slow)],
                                       max_in_flight=1))
    with TestClient(app) as client:
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(
            status=client.post("/v1/requests", json={}).status_code))
        worker.start()
        assert entered.wait(10)
        second = client.post("/v1/requests", json={})
        release.set()
        worker.join(10)
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert first["status"] == 202
