"""Plans as JSON: parsing a plan's object (PlanError names the bad field), and plan files
(read, written atomically, and the plans shipped in buffers/plans/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buffers.plan import (
    DEFAULT_MIN_INSTANCES,
    MODEL_MAX_LENGTH,
    PLAN_VERSION,
    BackendType,
    BufferSpec,
    DispatchMode,
    Plan,
    PlanError,
)

_BUFFER_FIELDS = {
    "name": str,
    "min_length": int,
    "max_length": int,
    "max_batch_size": int,
    "timeout_ms": int,
    "memory_mb": int,
    "dispatch_mode": str,
    "max_concurrency": int,
    "max_batch_tokens": (int, type(None)),
}
_REQUIRED_BUFFER_FIELDS = ("min_length", "max_length", "max_batch_size", "timeout_ms", "memory_mb")
_PLAN_FIELDS = {"version", "name", "max_length", "policy", "buffers", "meta", "backend",
                "instance_type", "min_instances", "max_instances"}


def _typed(where: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    # bool is an int subclass in Python; a plan field of true/false is a mistake, not a 1/0.
    if isinstance(value, bool) or not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(
            t.__name__ for t in expected
        )
        raise PlanError(f"{where} must be {names}, got {value!r}")
    return value


def _buffer_from_dict(index: int, raw: Any) -> BufferSpec:
    where = f"buffers[{index}]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where} must be an object, got {raw!r}")
    unknown = sorted(set(raw) - set(_BUFFER_FIELDS))
    if unknown:
        raise PlanError(f"{where} has unknown field(s) {unknown}")
    for key in _REQUIRED_BUFFER_FIELDS:
        if key not in raw:
            raise PlanError(f"{where}.{key} is required")
    values = {k: _typed(f"{where}.{k}", v, _BUFFER_FIELDS[k]) for k, v in raw.items()}
    mode = values.get("dispatch_mode", DispatchMode.DISPATCHER.value)
    try:
        values["dispatch_mode"] = DispatchMode(mode)
    except ValueError:
        valid = [m.value for m in DispatchMode]
        raise PlanError(f"{where}.dispatch_mode must be one of {valid}, got {mode!r}") from None
    values.setdefault("name", f"b{index}")
    return BufferSpec(**values)


def plan_from_dict(raw: Any) -> Plan:
    """Build and validate a Plan from its JSON object; PlanError names the bad field."""
    if not isinstance(raw, dict):
        raise PlanError(f"plan must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _PLAN_FIELDS)
    if unknown:
        raise PlanError(f"plan has unknown field(s) {unknown}")
    version = raw.get("version")
    if version != PLAN_VERSION:
        raise PlanError(f"version must be {PLAN_VERSION}, got {version!r}")
    buffers = raw.get("buffers")
    if not isinstance(buffers, list) or not buffers:
        raise PlanError(f"buffers must be a non-empty list, got {buffers!r}")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise PlanError(f"meta must be an object, got {meta!r}")
    return Plan(
        buffers=tuple(_buffer_from_dict(i, b) for i, b in enumerate(buffers)),
        name=_typed("name", raw.get("name", "plan"), str),
        max_length=_typed("max_length", raw.get("max_length", MODEL_MAX_LENGTH), int),
        policy=_typed("policy", raw.get("policy", "size_timeout"), str),
        version=version,
        meta=meta,
        **_fleet_from_dict(raw),
    )


def _fleet_from_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """The backend and fleet fields, typed; their combination is checked by _validate_fleet."""
    backend = _typed("backend", raw.get("backend", BackendType.LAMBDA.value), str)
    try:
        kind = BackendType(backend)
    except ValueError:
        valid = [b.value for b in BackendType]
        raise PlanError(f"backend must be one of {valid}, got {backend!r}") from None
    return {
        "backend": kind,
        "instance_type": _typed("instance_type", raw.get("instance_type"), (str, type(None))),
        "min_instances": _typed("min_instances",
                                raw.get("min_instances", DEFAULT_MIN_INSTANCES), int),
        "max_instances": _typed("max_instances", raw.get("max_instances"), (int, type(None))),
    }


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"plan file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"plan file {str(path)!r} is not valid JSON: {exc}") from None
    return plan_from_dict(raw)


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write a plan atomically (temp file then rename), so a reader never sees half a plan."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(plan.to_json(), encoding="utf-8")
    tmp.replace(path)


def default_plan_path(name: str = "default") -> Path:
    """Path of a plan shipped with the package (buffers/plans/NAME.json)."""
    path = Path(__file__).resolve().parent / "plans" / f"{name}.json"
    if not path.exists():
        shipped = sorted(p.stem for p in path.parent.glob("*.json"))
        raise PlanError(f"no shipped plan {name!r}; shipped plans: {shipped}")
    return path
