"""Pure timing and admission rules of the online service, with a fake clock; and its env config."""

from __future__ import annotations

import json

import pytest

from buffers.plan import PlanError
from buffers.plan_files import default_plan_path, load_plan
from infra.dispatcher import admission
from infra.dispatcher.config import InvokeMode, config_from_env
from tests.support.online import small_plan

PLAN = small_plan([(32, 8, 250), (256, 4, 1500)], max_concurrency=3)


def test_the_queue_bound_fills_every_slot_twice():
    assert admission.default_queue_limit(PLAN) == 2 * (8 * 3 + 4 * 3)


def test_a_request_is_admitted_whole_or_not_at_all():
    assert admission.admits(waiting=70, incoming=2, limit=72)
    assert not admission.admits(waiting=70, incoming=3, limit=72)


def test_retry_after_is_one_batching_cycle_in_whole_seconds():
    assert admission.retry_after_s(PLAN, expected_service_s=0.0) == 2  # ceil(1.5)
    assert admission.retry_after_s(small_plan([(256, 4, 10)]), 0.05) == 1  # at least 1 s
    assert admission.retry_after_s(PLAN, expected_service_s=0.7) == 3


def test_deadlines_and_the_give_up_time_on_a_fake_clock():
    now_s = 1000.0
    deadline = admission.deadline_s(now_s, slo_ms=500)
    assert deadline == pytest.approx(1000.5)
    assert admission.deadline_s(now_s, None) is None
    # a batch takes 120 ms: an input still waiting at 1000.38 can no longer finish in time
    assert admission.give_up_at_s(deadline, 0.12, slo_ms=500) == pytest.approx(1000.38)
    # a batch takes 2 s, past the SLO: inputs still get half the SLO to launch, so batches run
    # and their measurements let the estimate recover
    assert admission.give_up_at_s(deadline, 2.0, slo_ms=500) == pytest.approx(1000.25)


def test_service_time_is_an_exponential_average():
    measured = admission.Ewma()
    measured.observe(0.100)
    assert measured.mean_s == pytest.approx(0.100)
    measured.observe(0.200)
    assert measured.mean_s == pytest.approx(0.8 * 0.100 + 0.2 * 0.200)
    with pytest.raises(ValueError, match="-1"):
        measured.observe(-1)


def test_config_from_env_defaults():
    config = config_from_env({})
    assert config.plan == load_plan(default_plan_path())
    assert (config.invoke, config.model, config.port, config.host) == \
        (InvokeMode.INPROCESS, "minilm", 8080, "0.0.0.0")
    assert config.slo_ms is None and config.functions == {}


def test_config_from_env_for_lambda():
    functions = {"b0": "arn:aws:lambda:us-east-1:123456789012:function:embed-b0",
                 "b1": "embed-b1"}
    config = config_from_env({"MBS_PLAN": PLAN.to_json(), "MBS_INVOKE": "lambda",
                              "MBS_INFER_FUNCTIONS": json.dumps(functions), "PORT": "9000",
                              "MBS_SLO_MS": "800", "MBS_MODEL": "stand-in"})
    assert config.plan == PLAN and config.functions == functions
    assert (config.port, config.slo_ms, config.model) == (9000, 800.0, "stand-in")


@pytest.mark.parametrize("env, named", [
    ({"MBS_INVOKE": "http"}, "MBS_INVOKE"),
    ({"MBS_MODEL": "gpt"}, "MBS_MODEL"),
    ({"PORT": "eighty"}, "PORT"),
    ({"MBS_SLO_MS": "-5"}, "MBS_SLO_MS"),
    ({"MBS_INVOKE": "lambda"}, "MBS_INFER_FUNCTIONS"),
    ({"MBS_INVOKE": "lambda", "MBS_INFER_FUNCTIONS": '{"short": "f"}'}, "medium"),
])
def test_config_errors_name_the_variable(env, named):
    with pytest.raises(ValueError, match=named):
        config_from_env(env)


def test_a_missing_plan_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="nope.json"):
        config_from_env({"MBS_PLAN": str(tmp_path / "nope.json")})


def test_a_late_loop_counts_as_overload():
    assert admission.loop_overloaded(lag_s=0.080, max_lag_ms=50)
    assert not admission.loop_overloaded(lag_s=0.020, max_lag_ms=50)
    assert not admission.loop_overloaded(lag_s=5.0, max_lag_ms=None)


def test_a_saturated_event_loop_refuses_with_429():
    import asyncio
    import time

    from infra.dispatcher.errors import ApiError
    from infra.dispatcher.service import OnlineService
    from tests.support.online import GatedInvoker

    async def scenario() -> ApiError | None:
        service = OnlineService(PLAN, GatedInvoker(), "stand-in", max_loop_lag_ms=50)
        await service.start()
        service.check_admission(1)  # an idle loop admits
        # GIVEN a backlog of CPU work on the loop: 80 callbacks of 5 ms, as when requests
        # arrive faster than the process can handle them (the phenomenon itself)
        for _ in range(80):
            asyncio.get_running_loop().call_soon(time.sleep, 0.005)
        await asyncio.sleep(admission.LAG_PROBE_S * 2)
        try:
            service.check_admission(1)
            refused = None
        except ApiError as exc:
            refused = exc
        await service.stop()
        return refused

    refused = asyncio.run(scenario())
    assert refused is not None and refused.status == 429 and "ms late" in refused.message
    assert refused.retry_after_s >= 1
