"""The floors in `mbs compare` and in the simulator: the bound and the clairvoyant schedule as
policies, MBS's ratio to each, the SLO-blind oracle labelled as such, and the schedule policy's
replay (each batch launched when its last member arrives)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from infra.cli import compare as compare_cmd
from infra.cli.main import build_parser
from optimizer.compare.comparison import POLICIES, CompareSettings, compare
from optimizer.compare.workbench import Tuned, Workbench
from optimizer.floors.clairvoyant import Schedule
from optimizer.floors.replay import replay
from optimizer.platform.backends import make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.workload.lengths import token_lengths
from optimizer.workload.workloads import WorkloadSpec, build_workload

SLICE = ["--start", "600", "--duration", "60"]
SETTINGS = CompareSettings(max_buffers=4, evals=3, memory_choices_mb=(1769, 3008),
                           oracle_max_batch=32)


def stub(bench: Workbench, max_buffers: int, evals: int) -> Tuned:
    """The shipped plans in place of the search."""
    name = "default" if max_buffers > 1 else "batch"
    return Tuned(load_plan(default_plan_path(name)), 0.1, evals, True)


@cache
def _slice() -> tuple[np.ndarray, np.ndarray]:
    workload = build_workload(WorkloadSpec(start_s=600.0, duration_s=60.0))
    return workload.arrivals_s, token_lengths(workload)


def _bench(percentile: float) -> Workbench:
    arrivals, lengths = _slice()
    return Workbench(arrivals, lengths, make_backend("lambda", None, Pricing()), 1000.0,
                     percentile)


def test_compare_reports_both_floors_and_mbs_ratio_to_each(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["compare", "--json", *SLICE, "--percentile", "50"])
    assert compare_cmd.run(args, tuner=stub, settings=SETTINGS) == 0
    report = json.loads(capsys.readouterr().out)
    policies, ratios = report["policies"], report["ratios"]
    assert {"bound", "clairvoyant", "oracle"} <= set(policies) == set(POLICIES)
    bound, clair, mbs = policies["bound"], policies["clairvoyant"], policies["mbs"]
    assert bound["plan"] is None and bound["feasible"] is None and bound["tail_ms"] is None
    assert clair["feasible"] is True and clair["plan"]["policy"] == "schedule"
    for figure, field in (("end_to_end", "end_to_end_usd"), ("infer", "infer_usd")):
        assert ratios["mbs_vs_bound"][figure] == pytest.approx(
            mbs["cost"][field] / bound["cost"][field])
        assert ratios["clairvoyant_vs_bound"][figure] == pytest.approx(
            clair["cost"][field] / bound["cost"][field])
        assert ratios["mbs_vs_clairvoyant"][figure] == pytest.approx(
            mbs["cost"][field] / clair["cost"][field])
    # the bracket: the bound under the clairvoyant schedule, end to end and infer alone
    assert bound["cost"]["infer_usd"] <= clair["cost"]["infer_usd"]
    assert "SLO-blind" in policies["oracle"]["tuning"]
    assert bound["settings"]["certificate_gap"] < 0.05


def test_where_no_batching_meets_the_slo_both_floors_say_so() -> None:
    # GIVEN p99 on a slice whose first seconds hold more requests than may miss, all of them
    # due while the first environment is still cold
    result = compare(_bench(99.0), stub, SETTINGS)
    bound, clair = result.outcomes["bound"], result.outcomes["clairvoyant"]
    assert bound.feasible is False and "before any environment is warm" in \
        bound.settings["infeasible"]
    assert clair.feasible is False  # the replay with the lowest tail, reported as missing
    assert result.ratios()["clairvoyant_vs_bound"]["infer"] >= 1.0


def test_the_table_names_the_floors(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["compare", *SLICE, "--percentile", "50"])
    assert compare_cmd.run(args, tuner=stub, settings=SETTINGS) == 0
    out = capsys.readouterr().out
    for label in ("lower bound (SLO)", "clairvoyant", "oracle floor (SLO-blind)",
                  "MBS / lower bound: end to end", "clairvoyant / lower bound (the bracket)"):
        assert label in out


def test_a_schedule_replays_each_batch_when_its_last_member_arrives() -> None:
    arrivals = np.array([0.0, 0.1, 0.2, 0.5, 0.9])
    lengths = np.array([10, 20, 30, 40, 50])
    schedule = Schedule(((0, 2), (1,), (3, 4)), 1769, 1000.0, 0.0, 1)
    result = replay(schedule, 4, arrivals, lengths, make_backend("lambda", None,
                                                                 Pricing()).service_ms,
                    Pricing(), 1000.0, LambdaRules(cold_start_ms=0.0))
    rows = result.batch_of_request
    assert rows[0] == rows[2] != rows[1] and rows[3] == rows[4]
    assert result.batches.start_s[rows[[0, 1, 3]]] == pytest.approx([0.2, 0.1, 0.9])
    assert result.batches.padded_length[rows[[0, 1, 3]]].tolist() == [30, 20, 50]


def test_a_schedule_that_drops_a_request_is_refused() -> None:
    schedule = Schedule(((0,),), 1769, 1000.0, 0.0, 1)
    with pytest.raises(RuntimeError, match="a request was lost"):
        replay(schedule, 2, np.array([0.0, 0.1]), np.array([5, 6]),
               make_backend("lambda", None, Pricing()).service_ms, Pricing(), 1000.0)
