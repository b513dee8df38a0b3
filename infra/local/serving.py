"""Both request paths of a plan on one local port: what `mbs serve` and `mbs demo` run.

- online: `POST /v1/embeddings`, the dispatcher service (infra/dispatcher) with the infer
  function in this process;
- bulk: `POST /v1/requests`, `GET /v1/requests/{id}`, the local stack (moto in server mode,
  the queue dispatcher, the handlers in-process), bridged onto the same uvicorn server.
The model is loaded once and shared by both paths (one forward pass at a time per process).
"""

from __future__ import annotations

from dataclasses import dataclass

from buffers.plan import Plan
from infra.dispatcher.app import ModelChoice, create_app, served_model
from infra.dispatcher.server import BackgroundServer
from infra.local.bulk_bridge import bulk_routes
from infra.local.stack import LocalStack, profile_predictor

STAND_IN_ENV = {"MBS_STANDIN_MODEL": "1"}  # the bulk path's model port serves the stand-in


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: port (0 = any free one), model, policy, default SLO, logging."""

    port: int = 0
    host: str = "127.0.0.1"
    model: str = ModelChoice.MINILM
    policy: str | None = None
    slo_ms: float | None = None
    log_level: str = "WARNING"
    metrics: bool = False
    max_waiting_inputs: int | None = None


class LocalService:
    """`with LocalService(plan, options) as service:` serves both paths at `service.url`."""

    def __init__(self, plan: Plan, options: ServeOptions | None = None) -> None:
        self.plan = plan
        self.options = options or ServeOptions()
        served = served_model(self.options.model)  # an unknown model fails before anything
        extra_env = STAND_IN_ENV if self.options.model == ModelChoice.STAND_IN else (
            {"MBS_MODEL_DIR": str(served.directory)} if served.directory else None)
        self.stack = LocalStack(plan, port=None, log_level=self.options.log_level,
                                metrics=self.options.metrics, extra_env=extra_env,
                                policy=self.options.policy, default_slo_ms=self.options.slo_ms)
        self.server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the local service is not started")
        return self.server.url

    def start(self) -> LocalService:
        opts = self.options
        self.stack.start()
        try:
            predict_ms = profile_predictor(opts.policy or self.plan.policy)
            app = create_app(self.plan, model=opts.model, policy=opts.policy,
                             predict_ms=predict_ms, slo_ms=opts.slo_ms,
                             max_waiting_inputs=opts.max_waiting_inputs,
                             extra_routes=bulk_routes(self.stack.routes))
            self.server = BackgroundServer(app, host=opts.host, port=opts.port).start()
        except BaseException:
            self.stack.stop()
            raise
        return self

    def stop(self) -> None:
        """Drain the online buffers and finish open requests, then drain the bulk path."""
        if self.server is not None:
            self.server.stop()
        self.stack.stop()

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
