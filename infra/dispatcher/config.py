"""The container's configuration, from environment variables (`python -m infra.dispatcher`).

- MBS_PLAN: a plan file's path, or the plan's JSON itself (default: the shipped default plan);
- MBS_INVOKE: `inprocess` (the model in this process; default) or `lambda`;
- MBS_INFER_FUNCTIONS: with lambda, a JSON object of buffer name -> function name or ARN, one
  per buffer of the plan;
- MBS_INFER_TIMEOUT_S: the infer functions' timeout (default 60, the template's); the invoke
  read timeout is set above it;
- MBS_MODEL: `minilm` (default) or `stand-in`;
- MBS_SLO_MS: a deadline per request (default none); MBS_POLICY: overrides the plan's policy;
- MBS_MAX_WAITING_INPUTS: the admission queue's bound (default: admission.default_queue_limit);
- MBS_MAX_LOOP_LAG_MS: event-loop lateness past which requests get 429 (default 50);
- HOST (default 0.0.0.0) and PORT (default 8080); MBS_LOG_LEVEL (default info).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from buffers.plan import Plan
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict
from infra.dispatcher import admission
from infra.dispatcher.app import ModelChoice

DEFAULT_PORT = 8080
DEFAULT_INFER_TIMEOUT_S = 60.0


class InvokeMode(StrEnum):
    INPROCESS = "inprocess"
    LAMBDA = "lambda"


@dataclass(frozen=True)
class ServiceConfig:
    plan: Plan
    invoke: InvokeMode
    model: ModelChoice
    functions: dict[str, str]
    infer_timeout_s: float
    slo_ms: float | None
    policy: str | None
    max_waiting_inputs: int | None
    max_loop_lag_ms: float
    host: str
    port: int
    log_level: str


def _plan(raw: str | None) -> Plan:
    if not raw:
        return load_plan(default_plan_path())
    if raw.lstrip().startswith("{"):
        return plan_from_dict(json.loads(raw))
    return load_plan(raw)


def _choice(env: Mapping[str, str], name: str, kind: type[StrEnum], default: str) -> Any:
    value = env.get(name) or default
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {[k.value for k in kind]}, got {value!r}") \
            from None


def _number(env: Mapping[str, str], name: str, kind: type, default: Any = None) -> Any:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {raw!r}")
    return value


def _functions(raw: str | None, plan: Plan, invoke: InvokeMode) -> dict[str, str]:
    if invoke is not InvokeMode.LAMBDA:
        return {}
    try:
        functions = json.loads(raw or "")
    except json.JSONDecodeError:
        raise ValueError(f"MBS_INFER_FUNCTIONS must be a JSON object, got {raw!r}") from None
    if not isinstance(functions, dict) or not all(isinstance(v, str) for v in functions.values()):
        raise ValueError(f"MBS_INFER_FUNCTIONS must map buffer names to function names, "
                         f"got {raw!r}")
    missing = sorted({s.name for s in plan.buffers} - set(functions))
    if missing:
        raise ValueError(f"MBS_INFER_FUNCTIONS has no function for buffer(s) {missing}")
    return functions


def config_from_env(env: Mapping[str, str]) -> ServiceConfig:
    """Read and check every variable; ValueError (or PlanError) names the bad one."""
    plan = _plan(env.get("MBS_PLAN"))
    invoke = _choice(env, "MBS_INVOKE", InvokeMode, InvokeMode.INPROCESS)
    return ServiceConfig(
        plan=plan, invoke=invoke, model=_choice(env, "MBS_MODEL", ModelChoice, "minilm"),
        functions=_functions(env.get("MBS_INFER_FUNCTIONS"), plan, invoke),
        infer_timeout_s=_number(env, "MBS_INFER_TIMEOUT_S", float, DEFAULT_INFER_TIMEOUT_S),
        slo_ms=_number(env, "MBS_SLO_MS", float),
        policy=env.get("MBS_POLICY") or None,
        max_waiting_inputs=_number(env, "MBS_MAX_WAITING_INPUTS", int),
        max_loop_lag_ms=_number(env, "MBS_MAX_LOOP_LAG_MS", float,
                                admission.DEFAULT_MAX_LOOP_LAG_MS),
        host=env.get("HOST") or "0.0.0.0",  # nosec B104 - a container listens on its interface
        port=_number(env, "PORT", int, DEFAULT_PORT),
        log_level=(env.get("MBS_LOG_LEVEL") or "info").lower(),
    )
