"""`mbs optimize`: the plan file round-trips with its meta; no feasible plan exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buffers.gears import gears_from_plan
from buffers.plan_files import load_plan, save_plan
from infra.cli.main import main

SLICE = ["--workload", "azure-code", "--start", "600", "--duration", "120"]
# 15 minutes: long enough that the 6 s cold starts at the start stay under 1% of requests
WINDOW = ["--workload", "azure-code", "--start", "0", "--duration", "900"]


def test_optimize_writes_a_plan_that_round_trips(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "plan.json"
    code = main(["optimize", *WINDOW, "--evals", "300", "--max-buffers", "2", "--out", str(out),
                 "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    plan = load_plan(out)
    assert printed["plan"] == plan.to_dict()
    meta = plan.meta
    assert meta["slo_ms"] == 1000.0 and meta["percentile"] == 99.0
    assert meta["mode"] == "dispatcher" and meta["seed"] == 0
    assert meta["workload"]["requests"] > 1000
    assert "azure-code" in meta["workload"]["description"]
    assert meta["profile"]["date"] and meta["pricing"]["as_of"]
    assert 8 <= meta["search"]["evaluations"] <= 300 and meta["search"]["wall_s"] > 0
    for source in ("modelled", "simulated"):
        assert meta["predicted"][source]["p99_ms"] <= 1000.0
    # save -> load gives the same plan and the same meta
    again = tmp_path / "again.json"
    save_plan(plan, again)
    reloaded = load_plan(again)
    assert reloaded == plan and reloaded.meta == plan.meta
    assert again.read_text() == out.read_text()


def test_optimize_without_a_feasible_plan_exits_non_zero(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "plan.json"
    # forced onto CPU Lambda: by default the backend choice would plan the GPU fleet, whose
    # launch floor (~4 ms) meets 5 ms
    code = main(["optimize", *SLICE, "--slo-ms", "5", "--evals", "60", "--max-buffers", "1",
                 "--backend", "lambda", "--out", str(out)])
    assert code == 1
    assert "no plan written: no plan met p99 <= 5 ms" in capsys.readouterr().err
    assert not out.exists()


def test_optimize_with_gears_records_them_in_meta(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    code = main(["optimize", *WINDOW, "--evals", "300", "--max-buffers", "2", "--gears",
                 "--out", str(out)])
    assert code == 0
    plan = load_plan(out)
    if "gears" in plan.meta:  # written only when the geared replay meets the SLO
        gears = gears_from_plan(plan)
        assert gears is not None and len(gears.plans) == gears.config.gears
        assert plan.meta["gears"]["simulated"]["geared"]["p99_ms"] <= 1000.0
