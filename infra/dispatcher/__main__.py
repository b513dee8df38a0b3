"""`python -m infra.dispatcher`: the online service, configured by environment variables (the
variables are listed in infra/dispatcher/config.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from buffers.plan import BackendType
from buffers.types import ServiceTime
from infra.dispatcher.config import InvokeMode, ServiceConfig, config_from_env
from infra.dispatcher.fleet_scaling import FleetScaler, LambdaFleetScaler
from infra.dispatcher.invoke import Invoker, LambdaInvoker, lambda_client
from infra.dispatcher.server import serve_online


def _invoker(config: ServiceConfig) -> Invoker | None:
    if config.invoke is not InvokeMode.LAMBDA:
        return None  # create_app's default: the model in this process
    slots = sum(s.max_concurrency for s in config.plan.buffers)
    return LambdaInvoker(lambda_client(config.infer_timeout_s, slots), config.functions)


def _fleet_scaler(config: ServiceConfig) -> FleetScaler | None:
    """A gpu plan invoked on Lambda: its gears set the one GPU function's fleet bounds."""
    if config.invoke is not InvokeMode.LAMBDA or config.plan.backend is not BackendType.GPU:
        return None  # create_app's default: record the bounds, as no fleet runs here
    functions = sorted(set(config.functions.values()))
    if len(functions) != 1:
        raise ValueError(f"a gpu plan's buffers share one GPU function; MBS_INFER_FUNCTIONS "
                         f"names {functions}")
    return LambdaFleetScaler.for_function(functions[0])


def _predictor(config: ServiceConfig) -> ServiceTime | None:
    """The deadline policy's latency predictor: the shipped profile of the CPU model."""
    if (config.policy or config.plan.policy) != "deadline":
        return None
    from optimizer.platform.latency_model import load_profile  # only this policy needs it

    _, model = load_profile()
    return lambda batch, length, memory_mb: model.predict_ms(batch, length)


def main(env: Mapping[str, str] = os.environ) -> None:
    config = config_from_env(env)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve_online(config.plan, host=config.host, port=config.port, log_level=config.log_level,
                 model=config.model, invoker=_invoker(config), policy=config.policy,
                 predict_ms=_predictor(config), slo_ms=config.slo_ms,
                 max_waiting_inputs=config.max_waiting_inputs,
                 max_loop_lag_ms=config.max_loop_lag_ms, fleet_scaler=_fleet_scaler(config))


if __name__ == "__main__":
    main()
