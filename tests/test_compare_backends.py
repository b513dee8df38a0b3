"""`mbs compare --backend lambda,gpu` (optimizer/compare/across.py, crossover.py): the crossover
on hand-made series, the documented JSON keys and the table, with stub searchers (no search)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from buffers.plan import BufferSpec, Plan
from infra.cli import compare_backends
from infra.cli.main import build_parser
from optimizer.compare.across import SCHEMA, BackendSweep, Figures, RateWork, run_sweep
from optimizer.compare.crossover import Crossover, cheaper, crossovers
from optimizer.platform.cost_breakdown import CostBreakdown
from optimizer.platform.metrics import PlanMetrics

RATES = [1.0, 10.0, 100.0, 1000.0]
# HAND-MADE cost series ($/1M): CPU Lambda nearly flat, a GPU fleet's floor falling as 1/rate
LAMBDA = [5.6, 3.9, 3.8, 3.7]
GPU = [300.0, 32.0, 4.0, 0.6]


def test_the_crossover_is_interpolated_in_log_rate_on_the_log_cost_gap() -> None:
    (found,) = crossovers(RATES, LAMBDA, GPU, ("lambda", "gpu"))
    # by hand: the gap log(lambda / gpu) is log(3.8 / 4) < 0 at 100x, log(3.7 / 0.6) > 0 at 1000x
    g0, g1 = math.log(3.8 / 4.0), math.log(3.7 / 0.6)
    at = math.exp(math.log(100.0) + math.log(10.0) * g0 / (g0 - g1))
    assert found == Crossover(pytest.approx(at), "lambda", "gpu", (100.0, 1000.0))
    assert 100.0 < found.rate_scale < 200.0
    assert found.to_dict()["between"] == [100.0, 1000.0]


def test_no_crossover_where_one_is_always_cheaper_or_figures_are_missing() -> None:
    assert crossovers(RATES, LAMBDA, [c * 100 for c in LAMBDA], ("lambda", "gpu")) == ()
    # a missing figure (no plan met the SLO) is skipped, not bridged with a guess
    (found,) = crossovers(RATES, LAMBDA, [300.0, None, None, 0.6], ("lambda", "gpu"))
    assert found.bracket == (1.0, 1000.0)
    # a tie at a measured rate is a crossover only if the sign differs on both sides
    assert crossovers([1.0, 10.0, 100.0], [1.0, 2.0, 1.0], [2.0, 2.0, 2.0]) == ()
    (tie,) = crossovers([1.0, 10.0, 100.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], ("a", "b"))
    assert tie.rate_scale == pytest.approx(10.0) and (tie.below, tie.above) == ("a", "b")
    # and both ways: the cheaper one may change back
    assert [c.above for c in crossovers([1.0, 10.0, 100.0], [1.0, 3.0, 1.0],
                                        [2.0, 2.0, 2.0], ("a", "b"))] == ["b", "a"]
    assert cheaper(1.0, 2.0, ("a", "b")) == "a" and cheaper(None, 2.0) is None


def test_crossover_input_is_validated() -> None:
    with pytest.raises(ValueError, match="ascending"):
        crossovers([10.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one entry per rate"):
        crossovers([1.0, 10.0], [1.0], [1.0, 1.0])


def _metrics(cost_per_million: float, instance_hours: float | None) -> PlanMetrics:
    requests = 1000.0
    return PlanMetrics(requests=requests, invocations=100.0,
                       cost=CostBreakdown(infer_compute_usd=cost_per_million * requests / 1e6),
                       p50_ms=50.0, p95_ms=80.0, p99_ms=90.0, slo_attainment=1.0,
                       real_tokens=1000.0, padded_tokens=1200.0, cold_starts=0.0,
                       instance_hours=instance_hours)


PLAN = Plan(buffers=(BufferSpec("all", 1, 256, 8, 100, 1024),))


def _stubs() -> dict:
    """STUB searchers: the hand-made series above as figures, no search run."""
    def searcher(backend: str):
        def search(work: RateWork, policy: str) -> Figures:
            i = RATES.index(work.rate_scale)
            base = (LAMBDA if backend == "lambda" else GPU)[i]
            cost = base * (1.1 if policy == "batch" else 1.0)
            hours = None if backend == "lambda" else 2.86
            return Figures(policy, True, _metrics(cost, hours), PLAN, "stub", "", 0.1, 3)
        return search

    return {"lambda": {"mbs": searcher("lambda"), "batch": searcher("lambda")},
            "gpu": {"mbs": searcher("gpu"), "batch": searcher("gpu"),
                    "ragged": searcher("gpu")}}


def _works() -> list[RateWork]:
    return [RateWork(r, f"stub x{r:g} rate", np.arange(3.0), np.array([5, 6, 7]), 1000.0)
            for r in RATES]


def _sweep() -> BackendSweep:
    return run_sweep(_works(), _stubs(), {"lambda": {"profile": "p", "model": "m"},
                                          "gpu": {"profile": "q", "model": "n"}}, "superpose")


def test_the_sweep_json_has_the_documented_keys() -> None:
    out = _sweep().to_dict()
    assert set(out) == {"schema", "figures", "rate_mode", "slo_ms", "percentile", "backends",
                        "rates", "crossovers"}
    assert out["schema"] == SCHEMA and out["figures"] == "simulated"
    assert out["rate_mode"] == "superpose"
    row = out["rates"][0]
    assert set(row) == {"rate_scale", "workload", "requests", "cheaper", "backends"}
    assert row["cheaper"] == {"mbs": "lambda", "batch": "lambda"}
    assert out["rates"][-1]["cheaper"] == {"mbs": "gpu", "batch": "gpu"}
    assert set(row["backends"]) == {"lambda", "gpu"}
    assert set(row["backends"]["gpu"]) == {"mbs", "batch", "ragged"}
    figures = row["backends"]["gpu"]["mbs"]
    assert set(figures) == {"feasible", "end_to_end_cost_per_million_usd",
                            "infer_cost_per_million_usd", "instance_hours", "padding_overhead",
                            "mean_batch_size", "p99_ms", "slo_attainment", "plan", "tuning",
                            "message", "search"}
    assert figures["end_to_end_cost_per_million_usd"] == pytest.approx(300.0)
    assert figures["instance_hours"] == 2.86
    assert row["backends"]["lambda"]["mbs"]["instance_hours"] is None
    (mbs,) = out["crossovers"]["mbs"]
    assert set(mbs) == {"rate_scale", "cheaper_below", "cheaper_above", "between"}
    assert (mbs["cheaper_below"], mbs["cheaper_above"]) == ("lambda", "gpu")


def test_an_infeasible_figure_has_no_cost_and_no_crossover_across_it() -> None:
    missed = Figures("mbs", False, _metrics(1.0, 3.0), None, "stub", "missed")
    assert missed.cost_usd is None and missed.to_dict()["end_to_end_cost_per_million_usd"] is None


def test_the_command_prints_the_table_and_writes_the_chart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["compare", "--backend", "gpu,lambda", "--rate-scale",
                                      "1,10,100,1000", "--plots", str(tmp_path)])
    kinds = compare_backends.backend_kinds(args.backend)
    assert kinds == ("lambda", "gpu")
    # STUB searchers; the workloads are the real trace's (built, not searched)
    assert compare_backends.run(args, kinds, tuple(RATES), _stubs(),
                                {"lambda": {"profile": "p", "model": "m"},
                                 "gpu": {"profile": "q", "model": "n"}}) == 0
    text = capsys.readouterr().out
    assert "every figure SIMULATED" in text and "RAGGED e2e $/1M" in text
    assert "crossover for MBS: lambda -> gpu" in text
    assert (tmp_path / "cost_vs_rate_backends.png").stat().st_size > 0


def test_backend_lists_fail_fast() -> None:
    with pytest.raises(ValueError, match="Unknown backend: 'tpu'"):
        compare_backends.backend_kinds("lambda,tpu")
    assert json.dumps(compare_backends.backend_kinds("gpu")) == '["gpu"]'
