"""--rate-mode superpose: X time-shifted copies of the trace over the same window, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from infra.cli.common import workload_spec
from infra.cli.main import build_parser
from optimizer.workload.traces import Trace, load_preset
from optimizer.workload.workloads import RateMode, WorkloadSpec, load_arrivals

# A small bursty trace: two bursts and a gap, each arrival tagged by its index as its "length".
ARRIVALS = np.array([0.0, 0.001, 0.002, 0.003, 5.0, 5.001, 5.002, 9.0, 10.0])
TRACE = Trace(ARRIVALS, np.arange(ARRIVALS.size), "bursty")


def test_integer_copies_multiply_the_count_and_keep_the_window() -> None:
    out = TRACE.superposed(4, np.random.default_rng(0))
    assert out.count == 4 * TRACE.count
    assert out.duration_s == TRACE.duration_s and out.arrivals_s[0] == 0.0
    assert np.all(np.diff(out.arrivals_s) >= 0)
    assert np.all((out.arrivals_s >= 0) & (out.arrivals_s <= TRACE.duration_s))
    assert np.bincount(out.lengths).tolist() == [4] * TRACE.count  # every arrival, 4 times


def test_each_copy_is_the_trace_shifted_around_the_window() -> None:
    # The offsets are the generator's first draws: copy 0 keeps 0, the others shift and wrap.
    offsets = np.random.default_rng(7).uniform(0.0, 10.0, size=3)
    out = TRACE.superposed(3, np.random.default_rng(7))
    for index, t in enumerate(ARRIVALS):
        expected = sorted([t, *np.mod(t + offsets[1:], 10.0)])
        assert np.allclose(sorted(out.arrivals_s[out.lengths == index]), expected)
    # so a copy keeps the bursts: its 4-arrival burst stays 3 ms wide, wherever it lands
    burst = np.mod(ARRIVALS[:4] + offsets[1], 10.0)
    assert np.ptp(burst) == pytest.approx(0.003)


def test_a_fractional_copy_is_thinned_to_that_fraction() -> None:
    trace = load_preset("azure-code")
    out = trace.superposed(2.25, np.random.default_rng(1))
    extra = out.count - 2 * trace.count
    sigma = np.sqrt(trace.count * 0.25 * 0.75)
    assert abs(extra - 0.25 * trace.count) < 5 * sigma  # Binomial(n, 0.25)
    assert out.duration_s == trace.duration_s
    assert out.lengths is not None and out.lengths.size == out.count


def test_the_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    a = TRACE.superposed(3.5, np.random.default_rng(42))
    b = TRACE.superposed(3.5, np.random.default_rng(42))
    c = TRACE.superposed(3.5, np.random.default_rng(43))
    assert np.array_equal(a.arrivals_s, b.arrivals_s) and np.array_equal(a.lengths, b.lengths)
    assert not np.array_equal(a.arrivals_s, c.arrivals_s)
    assert np.array_equal(TRACE.superposed(1, np.random.default_rng(0)).arrivals_s, ARRIVALS)


@pytest.mark.parametrize(("copies", "period", "message"), [
    (0.5, None, "copies 0.5 must be >= 1"), (float("nan"), None, "copies nan"),
    (2, 0.0, "period_s 0.0 must be > 0")])
def test_bad_superpositions_name_the_value(copies, period, message) -> None:
    with pytest.raises(ValueError, match=message):
        TRACE.superposed(copies, np.random.default_rng(0), period_s=period)


def test_the_workload_spec_superposes_or_compresses_by_its_mode() -> None:
    base = load_arrivals(WorkloadSpec(start_s=600.0, duration_s=300.0))
    spread = load_arrivals(WorkloadSpec(start_s=600.0, duration_s=300.0, rate_scale=10,
                                        rate_mode="superpose", seed=3))
    squeezed = load_arrivals(WorkloadSpec(start_s=600.0, duration_s=300.0, rate_scale=10))
    assert spread.count == 10 * base.count and spread.duration_s == base.duration_s
    assert squeezed.count == base.count
    assert squeezed.duration_s == pytest.approx(base.duration_s / 10)
    again = load_arrivals(WorkloadSpec(start_s=600.0, duration_s=300.0, rate_scale=10,
                                       rate_mode="superpose", seed=3))
    assert np.array_equal(spread.arrivals_s, again.arrivals_s)
    assert "x10 rate (superposed)" in WorkloadSpec(rate_scale=10, rate_mode="superpose").describe()
    assert "x10 rate (time compressed)" in WorkloadSpec(rate_scale=10).describe()
    with pytest.raises(ValueError, match="'stretch'"):
        WorkloadSpec(rate_mode="stretch")


@pytest.mark.parametrize("command", ["simulate", "compare", "optimize", "replay"])
def test_every_command_with_workload_flags_takes_rate_mode(command, capsys) -> None:
    parser = build_parser()
    required = ["--out", "plan.json"] if command == "optimize" else []
    args = parser.parse_args([command, *required, "--rate-scale", "100", "--rate-mode",
                              "superpose"])
    assert workload_spec(args).rate_mode == RateMode.SUPERPOSE
    assert workload_spec(parser.parse_args([command, *required])).rate_mode == RateMode.COMPRESS
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    assert "superpose: lay X copies" in " ".join(capsys.readouterr().out.split())
