"""`mbs compare`: the JSON schema, the ratios, the oracle floor, the grids and the plots.

The Bayesian search is replaced by a stub tuner (dependency injection) that hands back the
shipped plans at once, so these tests check compare's own logic and stay fast.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from buffers.plan import BufferSpec, DispatchMode, Plan
from buffers.plan_files import default_plan_path, load_plan
from infra.cli import compare as compare_cmd
from infra.cli.main import build_parser
from optimizer.compare.comparison import (
    ONLINE_REFERENCE,
    POLICIES,
    RATES_SCHEMA,
    SCHEMA,
    CompareSettings,
    Comparison,
    compare,
)
from optimizer.compare.grid import BaselineGrids, Candidate, _best
from optimizer.compare.workbench import Tuned, Workbench
from optimizer.platform.backends import make_backend
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.workload.lengths import token_lengths
from optimizer.workload.workloads import WorkloadSpec, build_workload

SLICE = ["--start", "600", "--duration", "120"]  # the demo's bursty slice: 484 requests
SETTINGS = CompareSettings(max_buffers=4, evals=3, memory_choices_mb=(1769, 3008),
                           oracle_max_batch=32)
COST_KEYS = {"end_to_end_cost_per_million_usd", "infer_cost_per_million_usd",
             "batching_cost_per_million_usd"}
METRIC_KEYS = COST_KEYS | {"cost_per_million_usd", "total_cost_per_million_usd", "p50_ms", "p95_ms",
               "p99_ms", "slo_attainment", "padding_overhead", "invocations", "requests",
               "cold_starts", "mean_batch_size", "cost", "per_buffer", "low_traffic_share",
               "low_traffic_p99_bound_ms"}
POLICY_KEYS = METRIC_KEYS | {"tail_ms", "feasible", "plan", "tuning", "settings"}


class StubTuner:
    """Stands in for the search: the shipped 4-buffer plan for MBS, the batch plan for BATCH."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int]] = []

    def __call__(self, bench: Workbench, max_buffers: int, evals: int) -> Tuned:
        self.calls.append((bench.slo_ms, max_buffers, evals))
        name = "default" if max_buffers > 1 else "batch"
        return Tuned(load_plan(default_plan_path(name)), wall_s=0.25, evaluations=evals,
                     feasible=True)


class ModeStubTuner(StubTuner):
    """In managed mode: the shipped managed plan for MBS, one managed buffer for BATCH."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[tuple[str, int]] = []

    def __call__(self, bench: Workbench, max_buffers: int, evals: int) -> Tuned:
        self.modes.append((bench.mode, max_buffers))
        if bench.mode != "managed":
            return super().__call__(bench, max_buffers, evals)
        plan = load_plan(default_plan_path("managed")) if max_buffers > 1 else Plan(buffers=(
            BufferSpec("all", 1, 256, 32, 10_000, 1769, DispatchMode.MANAGED),))
        return Tuned(plan, wall_s=0.25, evaluations=evals, feasible=True)


@cache
def _slice() -> tuple[np.ndarray, np.ndarray]:
    workload = build_workload(WorkloadSpec(start_s=600.0, duration_s=120.0))
    return workload.arrivals_s, token_lengths(workload)


def _bench(slo_ms: float = 1000.0) -> Workbench:
    arrivals, lengths = _slice()
    return Workbench(arrivals, lengths, make_backend("lambda", None, Pricing()), slo_ms)


def _run_json(capsys: pytest.CaptureFixture[str], *flags: str) -> dict:
    args = build_parser().parse_args(["compare", "--json", *SLICE, *flags])
    assert compare_cmd.run(args, tuner=StubTuner(), settings=SETTINGS) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_json_has_the_documented_schema(capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_json(capsys, "--slo-ms", "1000")
    assert report["schema"] == SCHEMA and report["figures"] == "simulated"
    assert report["slo_ms"] == 1000.0 and report["percentile"] == 99.0
    assert report["mode"] == "dispatcher"
    assert report["workload"]["requests"] == 484
    assert "azure-code" in report["workload"]["description"]
    assert report["backend"]["name"] == "lambda" and report["backend"]["device"] == "cpu"
    assert set(report["policies"]) == set(POLICIES)
    for name, policy in report["policies"].items():
        searched = name in ("mbs", "batch")
        assert set(policy) == POLICY_KEYS | ({"search"} if searched else set()), name
        assert policy["requests"] == 484
        if searched:
            assert policy["search"] == {"wall_s": 0.25, "evaluations": 3}
    assert report["policies"]["oracle"]["plan"] is None
    assert report["policies"]["oracle"]["feasible"] is None
    assert len(report["policies"]["mbs"]["plan"]["buffers"]) == 4
    assert len(report["policies"]["batch"]["plan"]["buffers"]) == 1
    assert report["policies"]["triton"]["plan"]["policy"] == "triton"
    assert set(report["ratios"]) == {"cost_vs_mbs", "padding_vs_mbs", "invocations_vs_mbs",
                                     "mbs_vs_oracle", "mbs_vs_bound", "mbs_vs_clairvoyant",
                                     "clairvoyant_vs_bound"}
    assert set(report["ratios"]["cost_vs_mbs"]) == {"batch", "no_batching", "triton",
                                                     "plain_lambda", "oracle", "bound",
                                                     "clairvoyant"}
    assert report["workload"]["rate_scale"] == 1.0
    for name, policy in report["policies"].items():
        # the old keys are aliases of end to end (mbs.compare/2)
        assert policy["cost_per_million_usd"] == policy["end_to_end_cost_per_million_usd"], name
        assert policy["total_cost_per_million_usd"] == policy["cost_per_million_usd"], name
        assert 0 < policy["infer_cost_per_million_usd"] <= policy[
            "batching_cost_per_million_usd"] < policy["end_to_end_cost_per_million_usd"], name
    assert report["policies"]["plain_lambda"]["cost"]["path"] == "plain_lambda"
    assert report["policies"]["mbs"]["cost"]["path"] == "online"


def test_ratios_are_each_policy_over_mbs(capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_json(capsys)
    policies, ratios = report["policies"], report["ratios"]
    mbs = policies["mbs"]
    for name in ("batch", "no_batching", "triton", "plain_lambda", "oracle"):
        assert ratios["cost_vs_mbs"][name] == pytest.approx(
            policies[name]["cost_per_million_usd"] / mbs["cost_per_million_usd"])
        assert ratios["invocations_vs_mbs"][name] == pytest.approx(
            policies[name]["invocations"] / mbs["invocations"])
    assert ratios["mbs_vs_oracle"] == pytest.approx(
        mbs["cost_per_million_usd"] / policies["oracle"]["cost_per_million_usd"])
    assert ratios["padding_vs_mbs"]["no_batching"] == 0.0  # no batch, no padding


def test_the_oracle_is_at_most_every_policy() -> None:
    result = compare(_bench(), StubTuner(), SETTINGS)
    floor = result.cost_usd("oracle")
    for name in POLICIES:
        if name == "bound":  # computed on the online path, not a policy that runs
            continue
        assert floor <= result.cost_usd(name) + 1e-12, name
    assert result.outcomes["oracle"].metrics.padding_overhead == 0.0


def test_every_policy_is_simulated_on_the_same_requests() -> None:
    result = compare(_bench(), StubTuner(), SETTINGS)
    for name in ("mbs", "batch", "no_batching", "triton", "plain_lambda"):
        outcome = result.outcomes[name]
        assert outcome.latency_ms.size == 484
        assert outcome.tail_ms == pytest.approx(np.percentile(outcome.latency_ms, 99))
        assert outcome.feasible == (outcome.tail_ms <= 1000.0)


def test_a_tight_slo_makes_the_grid_pick_the_lowest_tail() -> None:
    # GIVEN an SLO no grid point meets
    bench = _bench(slo_ms=1.0)
    grids = BaselineGrids.build(bench, (3008,))
    best = _best(grids.triton, bench)
    tails = [bench.tail_ms(c.result.latency_ms) for c in grids.triton]
    # THEN the pick is the lowest tail, and it is reported as missing the SLO
    assert bench.tail_ms(best.result.latency_ms) == min(tails)
    assert compare(bench, StubTuner(), SETTINGS, grids=grids).outcomes["triton"].feasible is False


def test_the_grid_pick_is_the_cheapest_that_meets_the_slo() -> None:
    # GIVEN a grid, and an SLO at the median of its points' tails: about half meet it
    grids = BaselineGrids.build(_bench(), (1769, 3008))
    tails = [_bench().tail_ms(c.result.latency_ms) for c in grids.triton]
    bench = _bench(slo_ms=float(np.median(tails)))
    meets = [c for c, tail in zip(grids.triton, tails, strict=True) if tail <= bench.slo_ms]
    assert 0 < len(meets) < len(grids.triton) == 2 * 4 * 4 * 3
    # THEN the pick is the cheapest of those, and it is re-simulated at this SLO
    assert _best(grids.triton, bench).cost_usd == min(c.cost_usd for c in meets)
    triton = compare(bench, StubTuner(), SETTINGS, grids=grids).outcomes["triton"]
    assert triton.feasible is True
    assert triton.metrics.slo_attainment == pytest.approx(
        np.mean(triton.latency_ms <= bench.slo_ms))


def test_a_sweep_re_optimizes_at_every_slo(capsys: pytest.CaptureFixture[str],
                                           tmp_path) -> None:
    tuner = StubTuner()
    args = build_parser().parse_args(["compare", "--json", *SLICE, "--plots", str(tmp_path),
                                      "--sweep-slos", "2000,500", "--sweep-evals", "2"])
    assert compare_cmd.run(args, tuner=tuner, settings=SETTINGS) == 0
    report = json.loads(capsys.readouterr().out)
    # the main comparison at 1000 ms, then MBS and BATCH searched again at each swept SLO
    assert tuner.calls == [(1000.0, 4, 3), (1000.0, 1, 3), (500.0, 4, 2), (500.0, 1, 2),
                           (2000.0, 4, 2), (2000.0, 1, 2)]
    sweep = report["plots"]["sweep"]
    assert [p["slo_ms"] for p in sweep] == [500.0, 2000.0]
    assert set(sweep[0]["cost_per_million_usd"]) == set(POLICIES)
    for name in ("latency_cdf.png", "cost_per_policy.png", "cost_vs_slo.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_plain_lambda_is_the_no_batching_run_behind_the_http_api() -> None:
    result = compare(_bench(), StubTuner(), SETTINGS)
    plain, none = result.outcomes["plain_lambda"], result.outcomes["no_batching"]
    # the same runs (one request per invocation, cold starts included), at the same memory
    assert plain.settings["memory_mb"] == none.settings["memory_mb"]
    np.testing.assert_array_equal(plain.latency_ms, none.latency_ms)
    assert plain.metrics.p99_ms == pytest.approx(np.percentile(none.latency_ms, 99))
    assert plain.metrics.invocations == none.metrics.invocations == 484
    assert plain.metrics.cold_starts == none.metrics.cold_starts > 0
    # priced as a plain Lambda: one HTTP API request, the invocation (INIT included), Lambda's
    # log lines and the response's egress per request; no dispatcher, queue or table
    cost, gb = plain.metrics.cost, 1024 ** 3
    assert cost.infer_usd == pytest.approx(none.metrics.cost.infer_usd)
    assert cost.api_usd == pytest.approx(484 * 1.00e-6)
    assert cost.logs_usd == pytest.approx(484 * 350 / gb * 0.50)
    assert cost.egress_usd == pytest.approx(484 * (300 + 150 + 120 + 384 * 12) / gb * 0.09)
    assert cost.end_to_end_usd == pytest.approx(
        cost.infer_usd + cost.api_usd + cost.logs_usd + cost.egress_usd)
    assert plain.plan.name == "plain-lambda"


def test_a_rate_sweep_compares_at_every_rate(capsys: pytest.CaptureFixture[str],
                                             tmp_path) -> None:
    tuner = StubTuner()
    args = build_parser().parse_args(["compare", "--json", *SLICE, "--rate-scale", "10,1",
                                      "--plots", str(tmp_path), "--sweep-slos", "1000",
                                      "--sweep-evals", "1"])
    assert compare_cmd.run(args, tuner=tuner, settings=SETTINGS) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == RATES_SCHEMA and report["figures"] == "simulated"
    assert report["rate_scales"] == [1.0, 10.0]
    assert len(report["comparisons"]) == 2
    for scale, one in zip((1.0, 10.0), report["comparisons"], strict=True):
        assert one["schema"] == SCHEMA and one["workload"]["rate_scale"] == scale
        assert f"x{scale:g} rate" in one["workload"]["description"]
        assert one["workload"]["requests"] == 484  # the same window, ten times faster
        assert set(one["policies"]) == set(POLICIES)
    # the dispatcher's fixed cost spreads over 10x the requests per hour at 10x
    fleet = [c["policies"]["mbs"]["cost"]["dispatcher_compute_usd"] for c in report["comparisons"]]
    assert fleet[1] == pytest.approx(fleet[0] / 10, rel=0.05)
    for name in ("cost_vs_rate.png", "rate1x_cost_per_policy.png",
                 "rate10x_cost_per_policy.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    assert report["plots"]["files"] == [str(tmp_path / "cost_vs_rate.png")]


def test_the_table_says_every_figure_is_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["compare", *SLICE])
    assert compare_cmd.run(args, tuner=StubTuner(), settings=SETTINGS) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "none measured" in out
    for label in ("MBS", "BATCH tuned", "no batching", "Triton-style", "plain Lambda",
                  "oracle floor", "MBS / oracle floor (simulated end-to-end cost)",
                  "e2e $/1M", "infer $/1M", "batching $/1M", "$/1M by line item", "egress"):
        assert label in out


def test_a_comparison_needs_every_policy() -> None:
    result = compare(_bench(), StubTuner(), SETTINGS)
    partial = {k: v for k, v in result.outcomes.items() if k != "triton"}
    with pytest.raises(ValueError, match=r"missing \['triton'\]"):
        Comparison(1000.0, 99.0, "dispatcher", partial)


def test_a_search_that_returns_too_many_buffers_is_refused() -> None:
    def greedy(bench: Workbench, max_buffers: int, evals: int) -> Tuned:
        return Tuned(load_plan(default_plan_path("default")), 0.0, 1, True)

    with pytest.raises(ValueError, match="returned 4 buffers for max_buffers=1"):
        compare(_bench(), greedy, SETTINGS)


@pytest.mark.parametrize(("change", "message"), [
    ({"slo_ms": 0.0}, "slo_ms must be > 0, got 0.0"),
    ({"percentile": 100.0}, r"percentile must be in \(0, 100\), got 100.0"),
    ({"mode": "batchy"}, "mode must be one of"),
])
def test_workbench_validation_names_the_bad_value(change: dict, message: str) -> None:
    arrivals, lengths = _slice()
    fields = {"slo_ms": 1000.0, **change}
    with pytest.raises(ValueError, match=message):
        Workbench(arrivals, lengths, make_backend("lambda", None, Pricing()), **fields)


def test_settings_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="max_buffers must be >= 2 .* got 1"):
        replace(SETTINGS, max_buffers=1)
    with pytest.raises(ValueError, match="evals must be >= 1, got 0"):
        replace(SETTINGS, evals=0)


def test_bad_flags_fail_with_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    from infra.cli.main import main

    assert main(["compare", "--percentile", "0", *SLICE]) == 2
    assert "--percentile must be in (0, 100), got 0.0" in capsys.readouterr().err
    assert main(["compare", "--sweep-slos", "500,-1", *SLICE]) == 2
    assert "--sweep-slos must be positive ms, got '500,-1'" in capsys.readouterr().err
    assert main(["compare", "--rate-scale", "1,0", *SLICE]) == 2
    assert "--rate-scale must be positive, got '1,0'" in capsys.readouterr().err


def test_candidate_cost_is_the_simulated_end_to_end_cost() -> None:
    bench = replace(_bench(), rules=LambdaRules(cold_start_ms=0.0))
    plan = load_plan(default_plan_path("batch"))
    result = bench.simulate(plan)
    assert Candidate(result, {}, plan).cost_usd == result.metrics.end_to_end_cost_per_million_usd


def test_the_triton_grid_spreads_its_memory_sizes() -> None:
    from optimizer.compare.grid import spread

    assert spread((3008, 1024, 1769), 3) == (1024, 1769, 3008)
    assert spread((512, 1024, 1769, 3008, 5308, 10240), 3) == (512, 1769, 10240)
    assert spread((1024,), 3) == (1024,)


def test_managed_mode_puts_the_online_path_beside_the_bulk_path(
        capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN `mbs compare --mode managed` with an SLO of seconds
    tuner = ModeStubTuner()
    args = build_parser().parse_args(["compare", "--json", *SLICE, "--mode", "managed",
                                      "--slo-ms", "30000"])
    assert compare_cmd.run(args, tuner=tuner, settings=SETTINGS) == 0
    report = json.loads(capsys.readouterr().out)
    # THEN MBS and BATCH are planned for managed mode and priced on the bulk path, and MBS is
    # planned again in dispatcher mode for the same workload and SLO, on the online path
    assert tuner.modes == [("managed", 4), ("managed", 1), ("dispatcher", 4)]
    assert report["mode"] == "managed" and report["slo_ms"] == 30000.0
    policies = report["policies"]
    assert set(policies) == set(POLICIES) | {ONLINE_REFERENCE}
    assert policies["mbs"]["cost"]["path"] == policies["batch"]["cost"]["path"] == "bulk"
    assert policies["oracle"]["cost"]["path"] == "bulk"
    assert policies[ONLINE_REFERENCE]["cost"]["path"] == "online"
    assert "for reference" in policies[ONLINE_REFERENCE]["tuning"]
    for name in ("mbs", ONLINE_REFERENCE):
        assert set(policies[name]) == POLICY_KEYS | {"search"}, name
    assert report["ratios"]["mbs_vs_online"] == pytest.approx(
        policies["mbs"]["end_to_end_cost_per_million_usd"]
        / policies[ONLINE_REFERENCE]["end_to_end_cost_per_million_usd"])
    # AND the table shows the three cost figures of both paths
    args = build_parser().parse_args(["compare", *SLICE, "--mode", "managed", "--slo-ms",
                                      "30000"])
    assert compare_cmd.run(args, tuner=ModeStubTuner(), settings=SETTINGS) == 0
    out = capsys.readouterr().out
    assert "MBS online (ref.)" in out and "MBS on the bulk path / MBS on the online path" in out
