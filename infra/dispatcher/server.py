"""Running the online app under uvicorn: in the foreground (the container, `mbs serve`), or in a
background thread (tests, the local stack)."""

from __future__ import annotations

import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from buffers.plan import Plan
from infra.dispatcher.app import create_app
from infra.dispatcher.service import OnlineService

# ECS gives a task 30 s between SIGTERM and SIGKILL (stopTimeout's default): finish before it.
GRACEFUL_SHUTDOWN_S = 25
# Longer than a load balancer's idle timeout (ALB: 60 s), so the balancer, not this server,
# closes idle connections and never sends on one this side has just closed.
KEEP_ALIVE_S = 65
LISTEN_BACKLOG = 2048  # a burst must reach the 429 path, not time out in the listen queue


def uvicorn_config(app: Starlette, host: str, port: int, log_level: str = "warning"
                   ) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                          timeout_keep_alive=KEEP_ALIVE_S, backlog=LISTEN_BACKLOG)


class DrainingServer(uvicorn.Server):
    """On SIGTERM or SIGINT, flush the buffers at once, then let uvicorn finish open requests
    (a request waiting for its batch timer would otherwise hold shutdown for that long)."""

    def __init__(self, config: uvicorn.Config, service: OnlineService) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain()
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        if self.service.started:  # before the start nothing is buffered
            self.service.request_drain()


def serve_online(plan: Plan, host: str = "127.0.0.1", port: int = 8080,
                 log_level: str = "info", **app_options: Any) -> None:
    """Serve `plan` on host:port until SIGTERM/SIGINT; options go to create_app."""
    app = create_app(plan, **app_options)
    DrainingServer(uvicorn_config(app, host, port, log_level), app.state.service).run()


class BackgroundServer:
    """`with BackgroundServer(app) as server:` serves at `server.url` until the block ends.

    Port 0 takes a free port; the real one is read back from the bound socket.
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.app = app
        self.server = DrainingServer(uvicorn_config(app, host, port, log_level),
                                     app.state.service)
        self._thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the online service did not start (see the log above)")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Drain, finish open requests, stop (as on SIGTERM)."""
        self.server.drain()
        self.server.should_exit = True
        self._thread.join(timeout=timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
