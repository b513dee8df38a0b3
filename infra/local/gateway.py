"""A local API Gateway: real HTTP in, API Gateway v2 events to the handlers, HTTP out."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.events import LocalLambdaContext, apigw_v2_event

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own request payload limit
# Requests handled at once; past this the gateway answers 429 at once instead of queueing
# threads without bound (API Gateway throttles with 429 too).
MAX_IN_FLIGHT = 64
# Connections the kernel queues before the accept loop takes them (socketserver's default is
# 5): a burst of clients must reach the 429 path, not time out in a full listen queue.
LISTEN_BACKLOG = 1024
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. "/v1/requests/{id}", the route key API Gateway uses
    function_name: str
    handler: Handler

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


def _json_bytes(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, {"content-type": "application/json"}, body


def dispatch(routes: list[Route], method: str, raw_path: str, headers: dict[str, str],
             body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Route one HTTP request to a handler and turn its response back into HTTP."""
    path, _, query = raw_path.partition("?")
    for route in routes:
        params = route.match(method, path)
        if params is None:
            continue
        event = apigw_v2_event(method, path, f"{method} {route.template}", headers, body,
                               query=query, path_parameters=params or None)
        reply = route.handler(event, LocalLambdaContext(function_name=route.function_name))
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        return int(reply.get("statusCode", 200)), dict(reply.get("headers") or {}), data
    if any(r.match(m, path) is not None for r in routes for m in ("GET", "POST")):
        return _json_bytes(405, "method_not_allowed", f"{method} is not allowed on {path}")
    return _json_bytes(404, "not_found", f"no route {method} {path}")


class _RequestHandler(BaseHTTPRequestHandler):
    routes: list[Route] = []
    slots: threading.BoundedSemaphore = threading.BoundedSemaphore(MAX_IN_FLIGHT)
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the handlers log
        return

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_PAYLOAD_BYTES:
            status, headers, data = _json_bytes(
                413, "body_too_large", f"payload must be <= {MAX_PAYLOAD_BYTES} bytes")
            self.close_connection = True
        elif not self.slots.acquire(blocking=False):
            self.rfile.read(length)
            status, headers, data = _json_bytes(429, "too_many_requests",
                                                "the gateway is saturated; retry after 1 s")
            headers["Retry-After"] = "1"
        else:
            try:
                status, headers, data = self._dispatch(length)
            finally:
                self.slots.release()
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, length: int) -> tuple[int, dict[str, str], bytes]:
        body = self.rfile.read(length) if length else b""
        try:
            return dispatch(self.routes, self.command, self.path, dict(self.headers.items()),
                            body)
        except Exception as exc:  # a handler crash is a 500, as API Gateway reports it
            return _json_bytes(500, "internal_error", type(exc).__name__)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


class HttpGateway:
    """A threaded HTTP server on 127.0.0.1 in front of the handlers."""

    def __init__(self, routes: list[Route], port: int = 0, host: str = "127.0.0.1",
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        handler_cls = type("BoundHandler", (_RequestHandler,), {
            "routes": routes, "slots": threading.BoundedSemaphore(max_in_flight)})
        self._server = _Server((host, port), handler_cls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-gateway",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
