"""The bulk path's routes on the online service's ASGI server, so `mbs serve` has one port.

Each request becomes the API Gateway v2 event the handlers take, through the same `dispatch` as
the stand-alone local gateway (infra/local/gateway.py), run on a worker thread: the handlers
block on moto. The gateway's limits hold here too: payloads past API Gateway's 10 MB get 413,
and past MAX_IN_FLIGHT requests at once the answer is 429 with Retry-After, as API Gateway
throttles.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as AsgiRoute

from infra.local.gateway import MAX_IN_FLIGHT, MAX_PAYLOAD_BYTES, Route, dispatch

BULK_PATHS = ("/v1/requests", "/v1/requests/{id}", "/v1/jobs/{id}")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]  # the rest get dispatch's 405


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, headers=headers, media_type="application/json")


def bulk_routes(routes: Sequence[Route], max_in_flight: int = MAX_IN_FLIGHT) -> list[BaseRoute]:
    """ASGI routes that hand the bulk API's requests to its in-process handlers."""
    slots = threading.BoundedSemaphore(max_in_flight)
    pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="bulk-api")

    def handle(method: str, raw_path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        try:
            return dispatch(list(routes), method, raw_path, headers, body)
        finally:
            slots.release()

    async def forward(request: Request) -> Response:
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_PAYLOAD_BYTES:
            return _error(413, "body_too_large", f"payload must be <= {MAX_PAYLOAD_BYTES} bytes")
        body = await request.body()
        if not slots.acquire(blocking=False):
            return _error(429, "too_many_requests", "the gateway is saturated; retry after 1 s",
                          {"Retry-After": "1"})
        raw_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        loop = asyncio.get_running_loop()
        status, headers, data = await loop.run_in_executor(
            pool, handle, request.method, raw_path, dict(request.headers.items()), body)
        kept = {k: v for k, v in headers.items() if k.lower() not in ("content-length",
                                                                      "connection")}
        return Response(data, status, headers=kept)

    return [AsgiRoute(path, forward, methods=METHODS) for path in BULK_PATHS]
