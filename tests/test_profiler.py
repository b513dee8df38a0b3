"""The profiler on the real model: a tiny grid, its structure and positivity; the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.main import main
from infra.cli.profile import parse_sizes
from optimizer.platform.latency_model import LatencyModel, load_profile
from optimizer.profiling.profiler import measure_grid, repeats_for, run_profile


@pytest.mark.model
def test_measure_grid_tiny() -> None:
    points = measure_grid([1, 2], [8, 16], warmup=1, repeats=2, threads=1)
    assert [(p.batch, p.length) for p in points] == [(1, 8), (1, 16), (2, 8), (2, 16)]
    for p in points:
        assert 0 < p.p10_ms <= p.median_ms <= p.p90_ms
        assert p.repeats == 2


@pytest.mark.model
def test_run_profile_tiny_writes_a_loadable_profile(tmp_path: Path) -> None:
    seen: list[str] = []
    profile = run_profile([1, 2], [8, 16], warmup=1, repeats=2, threads=2, patience_s=0,
                          cold_start_runs=0, on_point=lambda label, _: seen.append(label))
    assert len(seen) == 8  # the 2-thread grid, then the 1-thread pass for Amdahl's p
    assert profile["device"] == "cpu" and profile["threads"] == 2 and profile["torch"]
    assert len(profile["grid"]) == len(profile["amdahl"]["grid_1_thread"]) == 4
    assert all(g["median_ms"] > 0 and g["foreign_cores"] >= 0 for g in profile["grid"])
    assert 0.0 <= profile["amdahl"]["parallel_fraction"] <= 1.0
    assert profile["fit"]["max_rel_err"] >= profile["fit"]["median_rel_err"] >= 0
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(profile), encoding="utf-8")
    _, model = load_profile(path)
    assert isinstance(model, LatencyModel) and model.predict_ms(2, 16) > 0


def test_repeats_shrink_for_slow_points_but_never_below_three() -> None:
    assert repeats_for(10.0, 10, 2000.0) == 10
    assert repeats_for(500.0, 10, 2000.0) == 4
    assert repeats_for(3400.0, 10, 2000.0) == 3
    assert repeats_for(3400.0, 2, 2000.0) == 2


def test_parse_sizes_names_the_bad_value() -> None:
    assert parse_sizes("4, 1,2,4", "--batches") == [1, 2, 4]
    with pytest.raises(ValueError, match="'x'"):
        parse_sizes("1,x", "--batches")
    with pytest.raises(ValueError, match="got 0"):
        parse_sizes("0,4", "--lengths")


def test_cli_rejects_bad_values_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--batches", "0,x"]) == 2
    assert "mbs: error: --batches" in capsys.readouterr().err
    assert main(["profile", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err
