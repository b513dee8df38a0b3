from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from buffers.plan import (
    DEFAULT_MIN_INSTANCES,
    MAX_FLEET_INSTANCES,
    MODEL_MAX_LENGTH,
    BackendType,
    BufferSpec,
    DispatchMode,
    Plan,
    PlanError,
)
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict, save_plan

SHIPPED = ("default", "batch", "managed", "gpu")


def two_buffer_plan() -> dict[str, Any]:
    """A valid plan dict: 1..32 and 33..256, dispatcher mode."""
    return {
        "version": 1,
        "name": "t",
        "max_length": 256,
        "policy": "size_timeout",
        "buffers": [
            {"name": "short", "min_length": 1, "max_length": 32, "max_batch_size": 8,
             "timeout_ms": 100, "memory_mb": 2048},
            {"name": "long", "min_length": 33, "max_length": 256, "max_batch_size": 4,
             "timeout_ms": 200, "memory_mb": 3008, "max_concurrency": 5,
             "max_batch_tokens": 512},
        ],
        "meta": {"source": "test"},
    }


# ---- shipped plans -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_plan_loads_and_covers_every_length(name):
    plan = load_plan(default_plan_path(name))
    assert plan.name == name
    assert plan.max_length == MODEL_MAX_LENGTH
    assert plan.buffers[0].min_length == 1
    assert plan.buffers[-1].max_length == MODEL_MAX_LENGTH
    for before, after in zip(plan.buffers, plan.buffers[1:], strict=False):
        assert after.min_length == before.max_length + 1


def test_shipped_default_plan_has_four_dispatcher_buffers():
    plan = load_plan(default_plan_path())
    assert [b.name for b in plan.buffers] == ["short", "medium", "long", "xlong"]
    assert {b.dispatch_mode for b in plan.buffers} == {DispatchMode.DISPATCHER}


def test_shipped_gpu_plan_names_its_fleet():
    plan = load_plan(default_plan_path("gpu"))
    assert plan.backend is BackendType.GPU
    assert (plan.instance_type, plan.min_instances, plan.max_instances) == ("g6.xlarge", 3, 6)


def test_shipped_lambda_plans_run_on_lambda_with_no_fleet():
    for name in ("default", "batch", "managed"):
        plan = load_plan(default_plan_path(name))
        assert plan.backend is BackendType.LAMBDA
        assert (plan.instance_type, plan.max_instances) == (None, None)
        assert plan.min_instances == DEFAULT_MIN_INSTANCES == 3


def test_shipped_managed_plan_is_managed():
    plan = load_plan(default_plan_path("managed"))
    assert {b.dispatch_mode for b in plan.buffers} == {DispatchMode.MANAGED}


def test_unknown_shipped_plan_lists_the_shipped_ones():
    with pytest.raises(PlanError) as err:
        default_plan_path("nope")
    assert "'nope'" in str(err.value)
    for name in SHIPPED:
        assert name in str(err.value)


# ---- round trips -----------------------------------------------------------------------------


def test_dict_round_trip_is_identity():
    plan = plan_from_dict(two_buffer_plan())
    again = plan_from_dict(plan.to_dict())
    assert again == plan
    assert again.meta == {"source": "test"}
    assert again.to_dict() == plan.to_dict()


def test_defaults_are_filled_in():
    spec = plan_from_dict(two_buffer_plan()).buffers[0]
    assert spec.dispatch_mode is DispatchMode.DISPATCHER
    assert spec.max_concurrency == 10
    assert spec.max_batch_tokens is None
    assert spec.timeout_s == pytest.approx(0.1)


def test_missing_buffer_name_defaults_to_its_index():
    raw = two_buffer_plan()
    del raw["buffers"][1]["name"]
    assert plan_from_dict(raw).buffers[1].name == "b1"


@pytest.mark.parametrize("name", SHIPPED)
def test_file_round_trip(tmp_path, name):
    plan = load_plan(default_plan_path(name))
    path = tmp_path / "nested" / "plan.json"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert loaded == plan
    assert loaded.meta == plan.meta
    assert json.loads(path.read_text()) == plan.to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == ["plan.json"]  # no temp file left


def test_save_replaces_an_existing_plan(tmp_path):
    path = tmp_path / "plan.json"
    save_plan(load_plan(default_plan_path("batch")), path)
    save_plan(plan_from_dict(two_buffer_plan()), path)
    assert load_plan(path).name == "t"


def test_lookup_by_buffer_name():
    plan = plan_from_dict(two_buffer_plan())
    assert plan.buffer("long").max_length == 256
    with pytest.raises(KeyError, match="nope"):
        plan.buffer("nope")


def test_accepts_is_inclusive():
    spec = plan_from_dict(two_buffer_plan()).buffers[1]
    assert [spec.accepts(n) for n in (32, 33, 256, 257)] == [False, True, True, False]


# ---- malformed plans: PlanError names the field ------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting raw[...][...] = value, path like 'buffers.1.min_length'."""

    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return mutate


def _managed_buffer(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw["buffers"][0].update(dispatch_mode="managed", **fields)

    return mutate


MALFORMED = [
    # (id, mutation, text the message must contain)
    ("gap", _set("buffers.1.min_length", 34), "buffers[1].min_length"),
    ("overlap", _set("buffers.1.min_length", 32), "buffers[1].min_length"),
    ("first-not-1", _set("buffers.0.min_length", 2), "buffers[0].min_length"),
    ("last-short-of-plan", _set("buffers.1.max_length", 255), "buffers[1].max_length"),
    ("plan-max-vs-last", _set("max_length", 128), "buffers[1].max_length"),
    ("plan-max-too-big", _set("max_length", 512), "max_length must be in 1..256"),
    ("inverted-range", _set("buffers.0.max_length", 0), "buffers[0].max_length"),
    ("batch-zero", _set("buffers.0.max_batch_size", 0), "buffers[0].max_batch_size"),
    ("dispatcher-batch-huge", _set("buffers.0.max_batch_size", 1025), "buffers[0].max_batch_size"),
    ("negative-timeout", _set("buffers.0.timeout_ms", -1), "buffers[0].timeout_ms"),
    ("memory-low", _set("buffers.0.memory_mb", 127), "buffers[0].memory_mb"),
    ("memory-high", _set("buffers.1.memory_mb", 10_241), "buffers[1].memory_mb"),
    ("concurrency-low", _set("buffers.0.max_concurrency", 1), "buffers[0].max_concurrency"),
    ("concurrency-high", _set("buffers.0.max_concurrency", 1001), "buffers[0].max_concurrency"),
    ("unknown-buffer-field", _set("buffers.0.batch", 8), "buffers[0] has unknown field"),
    ("unknown-plan-field", _set("extra", 1), "unknown field(s) ['extra']"),
    ("missing-memory", _delete("buffers.0.memory_mb"), "buffers[0].memory_mb is required"),
    ("missing-min", _delete("buffers.1.min_length"), "buffers[1].min_length is required"),
    ("str-for-int", _set("buffers.0.max_batch_size", "8"), "buffers[0].max_batch_size must be int"),
    ("float-for-int", _set("buffers.0.timeout_ms", 1.5), "buffers[0].timeout_ms must be int"),
    ("bool-for-int", _set("buffers.0.max_batch_size", True),
     "buffers[0].max_batch_size must be int"),
    ("bool-for-plan-int", _set("max_length", True), "max_length must be int"),
    ("int-for-name", _set("buffers.0.name", 3), "buffers[0].name must be str"),
    ("bool-for-tokens", _set("buffers.1.max_batch_tokens", False), "buffers[1].max_batch_tokens"),
    ("bad-name-chars", _set("buffers.0.name", "a b"), "buffers[0].name"),
    ("non-ascii-name", _set("buffers.0.name", "caf\u00e9"), "buffers[0].name must be 1-40 ASCII"),
    ("name-too-long", _set("buffers.0.name", "x" * 41), "buffers[0].name must be 1-40 ASCII"),
    ("duplicate-names", _set("buffers.1.name", "short"), "buffers[].name must be unique"),
    ("bad-dispatch-mode", _set("buffers.0.dispatch_mode", "lambda"), "buffers[0].dispatch_mode"),
    ("wrong-version", _set("version", 2), "version must be 1"),
    ("missing-version", _delete("version"), "version must be 1"),
    ("no-buffers", _set("buffers", []), "buffers must be a non-empty list"),
    ("buffer-not-object", _set("buffers.0", "short"), "buffers[0] must be an object"),
    ("meta-not-object", _set("meta", []), "meta must be an object"),
    ("tokens-below-length", _set("buffers.1.max_batch_tokens", 255), "buffers[1].max_batch_tokens"),
    ("managed-fractional-window", _managed_buffer(timeout_ms=1500),
     "buffers[0].timeout_ms must be a whole number of seconds"),
    ("managed-window-over-300s", _managed_buffer(timeout_ms=301_000),
     "buffers[0].timeout_ms must be <= 300000"),
    ("managed-batch-over-10-without-window", _managed_buffer(timeout_ms=0, max_batch_size=11),
     "buffers[0].max_batch_size must be <= 10 when"),
    ("managed-batch-over-10000", _managed_buffer(timeout_ms=1000, max_batch_size=10_001),
     "buffers[0].max_batch_size must be <= 10000"),
]


@pytest.mark.parametrize(("mutate", "needle"), [(m, n) for _, m, n in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_plan_raises_plan_error_naming_the_field(mutate, needle):
    raw = two_buffer_plan()
    plan_from_dict(raw)  # the base plan is valid
    mutate(raw)
    with pytest.raises(PlanError) as err:
        plan_from_dict(raw)
    assert needle in str(err.value)


@pytest.mark.parametrize(("field", "bad"), [("buffers.0.memory_mb", 127),
                                            ("buffers.0.timeout_ms", -5),
                                            ("buffers.0.max_batch_size", 0)])
def test_error_message_shows_the_bad_value(field, bad):
    raw = two_buffer_plan()
    _set(field, bad)(raw)
    with pytest.raises(PlanError, match=f"got {bad}$"):
        plan_from_dict(raw)


@pytest.mark.parametrize(("timeout_ms", "batch"), [(0, 10), (1000, 10_000), (300_000, 32)])
def test_managed_limits_are_inclusive(timeout_ms, batch):
    raw = two_buffer_plan()
    _managed_buffer(timeout_ms=timeout_ms, max_batch_size=batch)(raw)
    assert plan_from_dict(raw).buffers[0].dispatch_mode is DispatchMode.MANAGED


def test_max_batch_tokens_equal_to_length_is_allowed():
    raw = two_buffer_plan()
    raw["buffers"][1]["max_batch_tokens"] = 256
    assert plan_from_dict(raw).buffers[1].max_batch_tokens == 256


@pytest.mark.parametrize("raw", [[], "plan", None, 3])
def test_plan_must_be_an_object(raw):
    with pytest.raises(PlanError, match="plan must be a JSON object"):
        plan_from_dict(raw)


def test_direct_construction_is_validated_too():
    good = plan_from_dict(two_buffer_plan()).buffers
    gap = BufferSpec("long", 40, 256, 4, 100, 2048)
    with pytest.raises(PlanError, match=r"buffers\[1\].min_length must be 33"):
        Plan(buffers=(good[0], gap))


def test_plan_error_is_a_value_error():
    assert issubclass(PlanError, ValueError)


def test_validation_does_not_mutate_the_input():
    raw = two_buffer_plan()
    before = copy.deepcopy(raw)
    plan_from_dict(raw)
    assert raw == before


# ---- files -------------------------------------------------------------------------------------


def test_non_json_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{not json")
    with pytest.raises(PlanError, match="is not valid JSON"):
        load_plan(path)


def test_json_file_that_is_not_an_object(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("[1, 2]")
    with pytest.raises(PlanError, match="plan must be a JSON object, got list"):
        load_plan(path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(PlanError, match="does not exist") as err:
        load_plan(path)
    assert "absent.json" in str(err.value)


def test_malformed_file_names_the_field(tmp_path):
    raw = two_buffer_plan()
    raw["buffers"][0]["memory_mb"] = 64
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError, match=r"buffers\[0\].memory_mb"):
        load_plan(path)


# ---- backend and fleet ---------------------------------------------------------------------


def gpu_plan(**fields: Any) -> dict[str, Any]:
    """two_buffer_plan() on the gpu backend: g6.xlarge, 3..6 instances, overridden by fields."""
    raw = two_buffer_plan()
    raw.update({"backend": "gpu", "instance_type": "g6.xlarge", "min_instances": 3,
                "max_instances": 6, **fields})
    return raw


def test_lambda_plans_leave_the_fleet_fields_out_of_their_json():
    # GIVEN a plan written before the backend fields existed
    raw = two_buffer_plan()
    # WHEN it is loaded and written again
    plan = plan_from_dict(raw)
    # THEN it runs on lambda and its JSON has the same keys as before: no backend or fleet
    assert plan.backend is BackendType.LAMBDA
    assert list(plan.to_dict()) == list(raw)


def test_an_explicit_lambda_backend_reads_like_no_backend():
    raw = two_buffer_plan()
    raw["backend"] = "lambda"
    assert plan_from_dict(raw) == plan_from_dict(two_buffer_plan())


def test_gpu_plan_round_trips_with_its_fleet():
    plan = plan_from_dict(gpu_plan())
    assert (plan.backend, plan.instance_type, plan.min_instances, plan.max_instances) == (
        BackendType.GPU, "g6.xlarge", 3, 6)
    assert plan_from_dict(plan.to_dict()) == plan
    assert list(plan.to_dict())[:8] == ["version", "name", "max_length", "policy", "backend",
                                        "instance_type", "min_instances", "max_instances"]


def test_gpu_fleet_floor_defaults_to_three_instances():
    raw = gpu_plan()
    del raw["min_instances"]
    assert plan_from_dict(raw).min_instances == 3


def test_a_fixed_fleet_is_allowed():
    assert plan_from_dict(gpu_plan(min_instances=4, max_instances=4)).max_instances == 4


def test_direct_construction_takes_the_backend_as_a_string():
    buffers = plan_from_dict(two_buffer_plan()).buffers
    plan = Plan(buffers=buffers, backend="gpu", instance_type="g5.xlarge", max_instances=3)
    assert plan.backend is BackendType.GPU
    with pytest.raises(PlanError, match=r"backend must be one of \['lambda', 'gpu'\], got 'tpu'"):
        Plan(buffers=buffers, backend="tpu")


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        del raw[key]

    return mutate


FLEET_MALFORMED = [
    # (id, the gpu plan's mutation, text the message must contain)
    ("unknown-backend", _set("backend", "tpu"),
     "backend must be one of ['lambda', 'gpu'], got 'tpu'"),
    ("backend-not-str", _set("backend", 1), "backend must be str, got 1"),
    ("no-instance-type", _drop("instance_type"),
     "instance_type is required when backend is 'gpu'"),
    ("malformed-instance-type", _set("instance_type", "G6 XLARGE"),
     "instance_type must be an EC2 instance type such as 'g6.xlarge', got 'G6 XLARGE'"),
    ("instance-type-not-str", _set("instance_type", 6), "instance_type must be str or NoneType"),
    ("no-max", _drop("max_instances"), "max_instances is required when backend is 'gpu'"),
    ("min-zero", _set("min_instances", 0), "min_instances must be in 1..15000, got 0"),
    ("max-below-min", _set("max_instances", 2),
     "max_instances must be in min_instances 3..15000, got 2"),
    ("max-over-limit", _set("max_instances", MAX_FLEET_INSTANCES + 1),
     f"max_instances must be in min_instances 3..15000, got {MAX_FLEET_INSTANCES + 1}"),
    ("bool-for-min", _set("min_instances", True), "min_instances must be int, got True"),
    ("str-for-max", _set("max_instances", "6"), "max_instances must be int or NoneType, got '6'"),
    ("fleet-on-lambda", _set("backend", "lambda"),
     "instance_type applies to backend 'gpu' only; backend is 'lambda', got 'g6.xlarge'"),
]


@pytest.mark.parametrize(("mutate", "needle"), [(m, n) for _, m, n in FLEET_MALFORMED],
                         ids=[i for i, _, _ in FLEET_MALFORMED])
def test_malformed_fleet_raises_plan_error_naming_the_value(mutate, needle):
    raw = gpu_plan()
    plan_from_dict(raw)  # the base gpu plan is valid
    mutate(raw)
    with pytest.raises(PlanError) as err:
        plan_from_dict(raw)
    assert needle in str(err.value)


@pytest.mark.parametrize(("field", "value"), [("min_instances", 5), ("max_instances", 9)])
def test_fleet_bounds_on_a_lambda_plan_are_refused(field, value):
    raw = two_buffer_plan()
    raw[field] = value
    with pytest.raises(PlanError, match=f"{field} applies to backend 'gpu' only; backend is "
                                        f"'lambda', got {value}$"):
        plan_from_dict(raw)
