"""Gears of a gpu plan carry the fleet's bounds (buffers/gears.py): in plan meta, in the
simulated fleet (optimizer/sim/fleet.py), in the search (optimizer/search/fleet_gears.py), in
the dispatcher (infra/dispatcher/fleet_scaling.py) and in the template's permissions."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import replace

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

import optimizer.sim  # noqa: F401  (registers the policies)
from buffers.gears import GearConfig, GearSet, gears_from_plan
from buffers.plan import BufferSpec, Plan, PlanError
from buffers.plan_files import load_plan, save_plan
from functions.shared.model import StandInEmbedder
from infra.aws.render import build_template
from infra.aws.template import gpu as gpu_template
from infra.cli.main import main
from infra.dispatcher import fleet_scaling
from infra.dispatcher.__main__ import _fleet_scaler
from infra.dispatcher.app import create_app
from infra.dispatcher.config import config_from_env
from infra.dispatcher.invoke import InProcessInvoker
from infra.dispatcher.server import BackgroundServer
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.pricing import Pricing
from optimizer.search.fleet_gears import fleet_gear_space, plan_fleet_gears
from optimizer.search.gpu import gpu_space
from optimizer.sim.engine import simulate
from optimizer.sim.fleet import FleetLauncher, bound_switches
from optimizer.sim.inputs import SimInputs
from tests.support.online import post_json, small_plan, wait_until
from tests.test_render import shipped

RULES = ScalingRules()
SLO_MS = 1000.0


def service_ms(batch: int, length: int, memory_mb: float) -> float:
    """A GPU-like pass: 20 ms, then 25 ms per input (16 inputs: 420 ms, ~38 req/s)."""
    return 20.0 + 25.0 * batch


def gpu_plan(min_instances: int = 3, max_instances: int = 12, batch: int = 16) -> Plan:
    return Plan(buffers=(BufferSpec("short", 1, 128, batch, 100, 1024, max_concurrency=64),
                         BufferSpec("long", 129, 256, batch, 100, 1024, max_concurrency=64)),
                name="fleet", backend="gpu", instance_type="g6.xlarge",
                min_instances=min_instances, max_instances=max_instances)


# Up within seconds of a step to over 40 req/s; down below 20 req/s.
STEP_CONFIG = GearConfig(up_rps=(40.0,), down_rps=(20.0,), tau_s=10.0, min_dwell_s=30.0)


def step_up(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """5 req/s for 5 min, then 150 req/s for 7 min: three instances (~114 req/s) saturate."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 300, 1_500),
                                       rng.uniform(300, 720, 63_000)]))
    return arrivals, np.full(arrivals.size, 64)


# --- plan meta -------------------------------------------------------------------------------

def test_gpu_gear_meta_round_trips_with_its_fleet_bounds(tmp_path) -> None:
    static = gpu_plan()
    high = gpu_plan(min_instances=8, max_instances=24, batch=32)
    gears = GearSet((replace(static, name="fleet-gear0"), replace(high, name="fleet-gear1")),
                    STEP_CONFIG)
    levels = gears.to_meta()["levels"]
    assert [(lv["min_instances"], lv["max_instances"]) for lv in levels] == [(3, 12), (8, 24)]
    path = tmp_path / "plan.json"
    save_plan(replace(static, meta={"gears": gears.to_meta()}), path)
    loaded = gears_from_plan(load_plan(path))
    assert loaded == gears
    assert [(p.min_instances, p.max_instances) for p in loaded.plans] == [(3, 12), (8, 24)]
    assert {p.instance_type for p in loaded.plans} == {"g6.xlarge"}


def test_a_level_without_bounds_keeps_the_plans_and_lambda_levels_are_unchanged() -> None:
    static = gpu_plan()
    meta = GearSet((static, static), STEP_CONFIG).to_meta()
    for level in meta["levels"]:
        del level["min_instances"], level["max_instances"]
    loaded = gears_from_plan(replace(static, meta={"gears": meta}))
    assert [(p.min_instances, p.max_instances) for p in loaded.plans] == [(3, 12), (3, 12)]
    cpu = Plan(buffers=tuple(replace(s, memory_mb=1769) for s in static.buffers))
    cpu_meta = GearSet((cpu, cpu), STEP_CONFIG).to_meta()
    assert all("min_instances" not in level for level in cpu_meta["levels"])
    assert gears_from_plan(replace(cpu, meta={"gears": cpu_meta})).plans[1].backend == "lambda"


@pytest.mark.parametrize("field, value, needle", [
    ("min_instances", 0, "min_instances must be in 1..15000, got 0"),
    ("max_instances", 2, "max_instances must be in min_instances 3..15000, got 2"),
    ("max_instances", 20_000, "got 20000"),
    ("min_instances", "8", "levels[1].min_instances must be an integer, got '8'"),
])
def test_a_bad_gear_bound_is_rejected_by_name(field: str, value: object, needle: str) -> None:
    static = gpu_plan()
    meta = GearSet((static, static), STEP_CONFIG).to_meta()
    meta["levels"][1][field] = value
    with pytest.raises(PlanError) as info:
        gears_from_plan(replace(static, meta={"gears": meta}))
    assert needle in str(info.value)


def test_lambda_levels_may_not_hold_fleet_bounds() -> None:
    cpu = Plan(buffers=tuple(replace(s, memory_mb=1769) for s in gpu_plan().buffers))
    meta = GearSet((cpu, cpu), STEP_CONFIG).to_meta()
    meta["levels"][0]["min_instances"] = 5
    with pytest.raises(PlanError, match="apply to backend 'gpu' only"):
        gears_from_plan(replace(cpu, meta={"gears": meta}))


def test_gears_keep_one_instance_type() -> None:
    other = replace(gpu_plan(), instance_type="g5.xlarge")
    with pytest.raises(ValueError, match=r"gear 1.instance_type must equal the layout's "
                                         r"'g6.xlarge', got 'g5.xlarge'"):
        GearSet((gpu_plan(), other), STEP_CONFIG)


# --- simulator -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def step_runs():
    """The step-up trace on the static plan, and on gears whose high gear raises the floor."""
    arrivals, lengths = step_up()
    static = gpu_plan()
    gears = GearSet((static, gpu_plan(min_instances=8)), STEP_CONFIG)
    captured: list[FleetLauncher] = []
    original = FleetLauncher.finish

    def spy(self: FleetLauncher, end_s: float) -> None:
        captured.append(self)
        original(self, end_s)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FleetLauncher, "finish", spy)  # to read the geared run's fleet afterwards
        base = simulate(static, arrivals, lengths, service_ms, Pricing(), SLO_MS)
        geared = simulate(static, arrivals, lengths, service_ms, Pricing(), SLO_MS, gears=gears)
    return arrivals, gears, base, geared, captured[1]


def test_a_floor_raising_gear_serves_a_step_with_fewer_slo_misses(step_runs) -> None:
    arrivals, gears, base, geared, _ = step_runs
    misses = {name: int(np.sum(run.latency_ms > SLO_MS))
              for name, run in (("static", base), ("geared", geared))}
    assert misses["geared"] < 0.7 * misses["static"], misses
    # the switch came seconds after the step, and with it the floor of eight
    (initial, switches) = bound_switches(arrivals, gears)
    assert (initial.min_instances, [(round(t), b.min_instances) for t, b in switches][:1]) == \
        (3, [(round(switches[0][0]), 8)])
    assert 300 < switches[0][0] < 310


def test_fleet_invariants_hold_while_gears_switch_the_bounds(step_runs) -> None:
    arrivals, gears, _, geared, fleet = step_runs
    _, switches = bound_switches(arrivals, gears)
    up_s = switches[0][0]
    lifetimes = np.asarray(fleet.lifetimes)
    spans = lifetimes[:, 1] - lifetimes[:, 0]
    # instance-seconds are the sum of the lifetimes, and that is what is billed
    assert fleet.instance_seconds() == pytest.approx(float(spans.sum()))
    assert geared.metrics.instance_hours == pytest.approx(float(spans.sum()) / 3600.0)
    # the five missing instances were launched at the switch, billed from it
    launched_at_switch = np.sum(np.isclose(lifetimes[:, 0], up_s))
    assert launched_at_switch == 5
    # no batch runs on an instance before it serves, after it retires, or beside another
    serves_from = lifetimes[:, 0] + np.where(np.arange(len(lifetimes)) >= 3, RULES.launch_s, 0)
    rows = np.asarray(fleet.instance_of)
    start, end = geared.batches.start_s, geared.batches.end_s
    for instance_id in range(len(lifetimes)):
        mine = np.nonzero(rows == instance_id)[0]
        assert np.all(start[mine] >= serves_from[instance_id] - 1e-9)
        assert np.all(end[mine] <= lifetimes[instance_id, 1] + 1e-9)
        order = np.argsort(start[mine])
        assert np.all(start[mine][order][1:] >= end[mine][order][:-1] - 1e-9)
    # never more batches in flight than instances serving; the raised floor holds once up
    for s in start[:: max(1, start.size // 400)]:
        running = int(np.sum((start <= s) & (end > s)))
        serving = int(np.sum((serves_from <= s) & (lifetimes[:, 1] > s)))
        assert running <= serving
        assert serving >= (8 if s >= up_s + RULES.launch_s else 3)


def test_a_lowered_ceiling_is_retired_by_scale_in() -> None:
    # GIVEN a burst that grows the fleet in a high gear of ceiling 12, then a quiet spell whose
    # gear has ceiling 3
    rng = np.random.default_rng(3)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 600, 90_000), rng.uniform(600, 2400, 900)]))
    lengths = np.full(arrivals.size, 64)
    static = gpu_plan(min_instances=3, max_instances=3)
    gears = GearSet((static, gpu_plan(min_instances=3, max_instances=12)),
                    replace(STEP_CONFIG, initial_gear=1, initial_rps=150.0))
    run = simulate(static, arrivals, lengths, service_ms, Pricing(), SLO_MS, gears=gears)
    spans = run.instance_lifetimes_s
    # THEN the fleet grew past 3 in the burst, and within the scale-in window after the switch
    # down only the three of the lower gear's ceiling remain
    assert len(spans) > 3
    _, switches = bound_switches(arrivals, gears)
    down_s = switches[-1][0]
    alive_late = np.sum(spans[:, 1] > down_s + RULES.scale_in_window_s + RULES.tick_s)
    assert alive_late == 3


# --- search ----------------------------------------------------------------------------------

def test_the_search_gives_each_gear_fleet_bounds_that_meet_the_slo_in_the_replay() -> None:
    # GIVEN 10 min at 3 req/s, 10 min at 45 req/s, 10 min at 3 req/s on a GPU whose pass
    # costs 0.5 ms a padded token, and a static plan of that gpu space
    rng = np.random.default_rng(0)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 600, 1_800),
                                       rng.uniform(600, 1200, 27_000),
                                       rng.uniform(1200, 1800, 1_800)]))
    lengths = np.clip(rng.lognormal(3.5, 0.7, arrivals.size).astype(int), 1, 256)
    space = gpu_space("g6.xlarge", 2, slo_ms=SLO_MS, batch_range=(1, 64),
                      max_instances=(3, 4, 6, 8, 12))
    cap = space.concurrencies[0]
    static = Plan(buffers=(BufferSpec("short", 1, 64, 8, 45, 1024, max_concurrency=cap),
                           BufferSpec("long", 65, 256, 4, 45, 1024, max_concurrency=cap)),
                  name="mbs-optimized", backend="gpu", instance_type="g6.xlarge",
                  max_instances=12)
    sim = SimInputs(arrivals, lengths, lambda b, n, m: 5.0 + 0.5 * b * n, Pricing())
    # WHEN two gears are planned
    found = plan_fleet_gears(static, sim, space, SLO_MS, 99.0, 30, 0,
                             GearConfig(up_rps=(30.0,), down_rps=(15.0,)))
    # THEN each gear searched its own traffic and has bounds from the ladders, on the plan's
    # instance type, never under the static floor; the replay of the whole trace with them
    # (each gear's bounds from its switch on) meets the SLO
    gear_space = fleet_gear_space(static, space)
    assert all(n > 0 for n in found.requests) and None not in found.searches
    for plan in found.gears.plans:
        assert plan.instance_type == "g6.xlarge" and plan.buffers[0].memory_mb == 1024
        assert plan.min_instances in gear_space.min_instances
        assert plan.max_instances in gear_space.max_instances
        assert 3 <= plan.min_instances <= plan.max_instances
    assert found.meets_slo and found.geared_percentile_ms <= SLO_MS
    assert found.geared.instance_hours is not None
    replay = simulate(static, arrivals, lengths, sim.service_ms, Pricing(), SLO_MS,
                      gears=found.gears)
    assert float(np.percentile(replay.latency_ms, 99.0)) == pytest.approx(
        found.geared_percentile_ms)
    levels = found.meta()["levels"]
    assert [(lv["min_instances"], lv["max_instances"]) for lv in levels] == [
        (p.min_instances, p.max_instances) for p in found.gears.plans]


def test_mbs_optimize_gpu_gears_prints_and_records_each_gears_fleet(tmp_path, capsys) -> None:
    out = tmp_path / "plan.json"
    args = ["optimize", "--workload", "azure-code", "--duration", "600", "--backend", "gpu",
            "--instance-types", "g6.xlarge", "--gears", "--evals", "40", "--max-buffers", "1",
            "--out", str(out)]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    levels = printed["gears"]["levels"]
    assert all({"min_instances", "max_instances"} <= set(level) for level in levels)
    assert "instance_hours" in printed["gears"]["simulated"]["geared"]
    plan = load_plan(out)
    if printed["gears"]["meets_slo"]:  # written only when the geared replay meets the SLO
        gears = gears_from_plan(plan)
        assert [(p.min_instances, p.max_instances) for p in gears.plans] == [
            (lv["min_instances"], lv["max_instances"]) for lv in levels]
    assert main(args) == 0
    text = capsys.readouterr().out
    for g, level in enumerate(levels):
        assert (f"gear {g}:" in text and
                f"fleet {level['min_instances']}-{level['max_instances']} x g6.xlarge" in text)
    assert "instance-hours; geared" in text


# --- dispatcher ------------------------------------------------------------------------------

SHORT = "a short text"
FUNCTION = "mbs-embed-gpu"
# Each arrival adds 20 req/s to the measured rate, which decays by e in 50 ms: three inputs at
# once switch up; one input after a pause switches back down.
SWITCHING = GearConfig(up_rps=(50.0,), down_rps=(30.0,), tau_s=0.05, min_dwell_s=0.0)


def geared_gpu_plan(low: tuple[int, int] = (3, 6), high: tuple[int, int] = (8, 16)) -> Plan:
    base = replace(small_plan([(256, 4, 20)]), backend="gpu", instance_type="g6.xlarge",
                   min_instances=3, max_instances=6)
    gears = GearSet((replace(base, min_instances=low[0], max_instances=low[1]),
                     replace(base, min_instances=high[0], max_instances=high[1])), SWITCHING)
    return replace(base, meta={"gears": gears.to_meta()})


@contextmanager
def serving(plan: Plan, **options):
    app = create_app(plan, model="stand-in", invoker=InProcessInvoker(StandInEmbedder()),
                     **options)
    server = BackgroundServer(app).start()
    try:
        yield server, app.state.service
    finally:
        server.stop()


def switch_up_then_down(url: str) -> None:
    """Three inputs at once (up), a pause, then one input (down); each answered 200."""
    assert post_json(url, {"input": [SHORT] * 3})[0] == 200
    time.sleep(0.3)  # the rate decays by e^-6: the next arrival finds it under 30 req/s
    assert post_json(url, {"input": SHORT})[0] == 200


def stubbed_lambda() -> tuple[object, Stubber]:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")  # nosec B106 - never sent: stubbed
    return client, Stubber(client)


def expected_call(bounds: tuple[int, int]) -> dict:
    return {"FunctionName": FUNCTION, "Qualifier": "$LATEST.PUBLISHED",
            "FunctionScalingConfig": {"MinExecutionEnvironments": bounds[0],
                                      "MaxExecutionEnvironments": bounds[1]}}


def test_the_dispatcher_sets_the_fleet_once_per_switch_through_lambda() -> None:
    # GIVEN the Lambda port on a stubbed client (botocore checks each call against the API
    # model) expecting the high gear's bounds, then the low gear's
    client, stubber = stubbed_lambda()
    for bounds in ((8, 16), (3, 6)):
        stubber.add_response("put_function_scaling_config", {"FunctionState": "Active"},
                             expected_call(bounds))
    scaler = fleet_scaling.LambdaFleetScaler(client, FUNCTION)
    with stubber, serving(geared_gpu_plan(), fleet_scaler=scaler) as (server, service):
        # WHEN the load switches the gear up and back down
        switch_up_then_down(server.url)
        wait_until(lambda: service.snapshot()["fleet"]["calls"] == 2)
        fleet = service.snapshot()["fleet"]
        # THEN exactly those two calls were made, off the request path, and none failed
        stubber.assert_no_pending_responses()
    assert fleet["scaler"] == "lambda: PutFunctionScalingConfig"
    assert (fleet["applied"], fleet["errors"], fleet["gear"]) == ([3, 6], 0, 0)


def test_a_failed_scaling_call_is_counted_and_never_reaches_a_request() -> None:
    client, stubber = stubbed_lambda()
    stubber.add_client_error("put_function_scaling_config", "ResourceConflictException",
                             "The function is being updated", http_status_code=409,
                             expected_params=expected_call((8, 16)))
    stubber.add_response("put_function_scaling_config", {"FunctionState": "Active"},
                         expected_call((3, 6)))
    scaler = fleet_scaling.LambdaFleetScaler(client, FUNCTION)
    with stubber, serving(geared_gpu_plan(), fleet_scaler=scaler) as (server, service):
        switch_up_then_down(server.url)  # both requests answered 200
        wait_until(lambda: service.snapshot()["fleet"]["calls"] == 2)
        fleet = service.snapshot()["fleet"]
    assert fleet["errors"] == 1 and "ResourceConflictException" in fleet["last_error"]
    assert fleet["applied"] == [3, 6]


def test_locally_the_bounds_are_recorded_and_labelled_as_no_fleet() -> None:
    # GIVEN the initial gear's bounds differ from the plan's (the deployed ones)
    plan = geared_gpu_plan(low=(4, 6))
    with serving(plan) as (server, service):
        switch_up_then_down(server.url)
        wait_until(lambda: service.snapshot()["fleet"]["calls"] == 3)
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as reply:
            status = json.loads(reply.read())
    # THEN the start set the initial gear's, then each switch its gear's; /healthz says so
    assert status["fleet"]["scaler"] == "local: no fleet to scale"
    assert status["fleet"]["applied"] == [4, 6] and status["fleet"]["errors"] == 0
    assert service._fleet.scaler.requested == [(4, 6), (8, 16), (4, 6)]


def test_a_lambda_plan_or_one_without_gears_has_no_fleet_to_set() -> None:
    plain = small_plan([(256, 4, 20)])
    assert fleet_scaling.gear_fleet(plain, None, fleet_scaling.LocalFleetScaler()) is None
    plan = geared_gpu_plan()
    assert fleet_scaling.gear_fleet(replace(plan, meta={}), None,
                                    fleet_scaling.LocalFleetScaler()) is None


def test_the_container_scales_the_one_gpu_function_its_plan_invokes(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    plan = geared_gpu_plan()
    env = {"MBS_PLAN": plan.to_json(), "MBS_INVOKE": "lambda",
           "MBS_INFER_FUNCTIONS": json.dumps({"b0": FUNCTION})}
    scaler = _fleet_scaler(config_from_env(env))
    assert isinstance(scaler, fleet_scaling.LambdaFleetScaler)
    assert (scaler.function_name, scaler.qualifier) == (FUNCTION, "$LATEST.PUBLISHED")
    assert _fleet_scaler(config_from_env({"MBS_PLAN": plan.to_json()})) is None


# --- template --------------------------------------------------------------------------------

def test_the_dispatcher_may_set_the_gpu_functions_fleet_bounds_and_nothing_else() -> None:
    template = build_template(shipped("gpu"))
    policy = template["Resources"][gpu_template.FLEET_BOUNDS_POLICY]
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Condition"] == template["Resources"]["DispatcherTaskRole"]["Condition"]
    props = policy["Properties"]
    assert props["Roles"] == [{"Ref": "DispatcherTaskRole"}]
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["lambda:PutFunctionScalingConfig"]
    assert statement["Resource"] == [
        {"Fn::GetAtt": [gpu_template.GPU_FUNCTION, "Arn"]},
        {"Fn::Sub": "${EmbedGpuFunction.Arn}:$LATEST.PUBLISHED"}]
    # the qualifier the dispatcher's port sends is the version the grant names
    assert gpu_template.LATEST_PUBLISHED == fleet_scaling.LATEST_PUBLISHED
    assert gpu_template.FLEET_BOUNDS_POLICY not in build_template(shipped("default"))[
        "Resources"]
