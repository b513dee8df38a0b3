"""Backends: GPU per-second pricing through the unchanged cost models, and profile checks.

No GPU was measured in this project. The GPU latency model below is SYNTHETIC, made up to
exercise the code path (per-second billing, memory ignored); no figure here is a GPU figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from infra.cli.main import main
from optimizer.compare.workbench import Workbench
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.platform import backends
from optimizer.platform.backends import (
    GPU_MEMORY_MB,
    BackendError,
    backend_from_model,
    gpu_pricing,
    make_backend,
)
from optimizer.platform.bulk_items import fixed_usd, run_cost
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import GpuLatencyModel, LatencyModel
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import no_batching_plan

BASE = Pricing()
NO_COLD = LambdaRules(cold_start_ms=0.0)
# SYNTHETIC, not a measurement: a made-up GPU-like t(B, L) for exercising the gpu code path.
SYNTHETIC_GPU = LatencyModel(device="cuda:synthetic-test-fixture", threads=1, fixed_ms=4.0,
                             per_item_ms=0.05, per_token_ms=0.004, per_token_sq_ms=0.0)
SLICE = ["--start", "600", "--duration", "120"]


@pytest.fixture
def synthetic_gpu_profile(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic_gpu.json"
    path.write_text(json.dumps({"note": "SYNTHETIC test fixture, not a measurement",
                                "device": SYNTHETIC_GPU.device,
                                "latency_model": SYNTHETIC_GPU.to_dict()}), encoding="utf-8")
    return path


@pytest.fixture
def no_shipped_gpu_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "DEFAULT_GPU_PROFILE", tmp_path / "absent" / "gpu.json")


@pytest.mark.parametrize("duration_ms", [0.0, 1.0, 12.5, 999.0, 1000.0, 1000.1, 2500.0])
def test_gpu_invocations_cost_what_pricing_says_per_second(duration_ms: float) -> None:
    gpu = gpu_pricing(BASE)
    cost = run_cost(0, np.array([4]), np.array([gpu.billed_ms(duration_ms)]),
                    np.array([GPU_MEMORY_MB]), gpu)
    assert cost.infer_compute_usd == pytest.approx(BASE.gpu_invocation_usd(duration_ms))
    assert cost.infer_request_usd == 0.0
    assert gpu.billed_ms(duration_ms) == math.ceil(duration_ms / 1000.0) * 1000


def test_the_request_path_functions_stay_on_lambda_prices() -> None:
    assert fixed_usd(1000, gpu_pricing(BASE)) == fixed_usd(1000, BASE)
    assert gpu_pricing(BASE).sqs_request_usd == BASE.sqs_request_usd


def test_gpu_plans_run_at_one_memory_and_gpu_time_ignores_memory() -> None:
    backend = backend_from_model("gpu", SYNTHETIC_GPU, BASE, "synthetic")
    plan = backend.pin(load_plan(default_plan_path("default")))
    assert {spec.memory_mb for spec in plan.buffers} == {GPU_MEMORY_MB}
    assert SYNTHETIC_GPU(16, 64, 512) == SYNTHETIC_GPU(16, 64, 10240)
    lam = backend_from_model("lambda", LatencyModel("cpu", 2, 9.0, 0.1, 0.2, 0.0, 0.8), BASE,
                             "cpu")
    assert lam.pin(load_plan(default_plan_path("default"))).buffers[0].memory_mb == 3008


def _gpu_bench(lengths_seed: int = 0) -> Workbench:
    rng = np.random.default_rng(lengths_seed)
    arrivals = np.sort(rng.uniform(0.0, 60.0, 400))
    lengths = rng.integers(1, 257, 400)
    backend = backend_from_model("gpu", SYNTHETIC_GPU, BASE, "synthetic")
    return Workbench(arrivals, lengths, backend, 1000.0, rules=NO_COLD)


def test_simulated_gpu_cost_is_per_second_of_each_invocation() -> None:
    bench = _gpu_bench()
    result = bench.simulate(load_plan(default_plan_path("default")))  # 3008 MB, pinned to 1 GB
    log = result.batches
    assert set(log.memory_mb.tolist()) == {GPU_MEMORY_MB}
    expected = sum(BASE.gpu_invocation_usd(ms) for ms in log.service_ms)
    assert result.metrics.cost.infer_compute_usd == pytest.approx(expected)
    assert result.metrics.cost.infer_request_usd == 0.0


def test_the_estimator_bills_gpu_invocations_per_second_too() -> None:
    # GIVEN one request per invocation, every model time < 1 s and no cold starts
    bench = _gpu_bench()
    plan = bench.backend.pin(no_batching_plan(GPU_MEMORY_MB))
    ctx = EstimatorContext.build(bench.arrivals_s, bench.lengths, SYNTHETIC_GPU,
                                 bench.backend.pricing, 1000.0, NO_COLD)
    # THEN each invocation bills one whole GPU-second, in the estimator as in the simulator
    per_s = BASE.gpu_hour_usd / 3600.0
    assert estimate(plan, ctx).cost.infer_compute_usd == pytest.approx(400 * per_s)
    assert bench.simulate(plan).metrics.cost.infer_compute_usd == pytest.approx(400 * per_s)


def test_gpu_without_a_profile_says_how_to_measure_one(no_shipped_gpu_profile: None) -> None:
    with pytest.raises(BackendError, match="mbs profile --device cuda") as info:
        make_backend("gpu", None, BASE)
    assert "optimizer/profiles/README.md" in str(info.value)
    assert "mbs profile --from-reference" in str(info.value)


def test_compare_gpu_without_a_profile_fails_clearly(no_shipped_gpu_profile: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--backend", "gpu", *SLICE]) == 2
    err = capsys.readouterr().err
    assert "gpu backend needs a GPU latency profile" in err
    assert "mbs profile --device cuda" in err


def test_profiles_must_match_their_backend(synthetic_gpu_profile: Path) -> None:
    with pytest.raises(BackendError, match="measured on cuda, got device 'cpu'"):
        make_backend("gpu", "optimizer/profiles/cpu.json", BASE)
    with pytest.raises(BackendError, match="use --backend gpu"):
        make_backend("lambda", synthetic_gpu_profile, BASE)
    with pytest.raises(ValueError, match="Unknown backend: 'tpu'"):
        make_backend("tpu", None, BASE)


def test_compare_runs_the_gpu_fleet_with_a_given_profile(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `--backend gpu` is the LMI fleet (optimizer/compare/across.py): instance time, not
    # per-invocation GPU-seconds. SYNTHETIC GPU-form profile on an L4, not a measurement.
    path = tmp_path / "synthetic_l4.json"
    model = GpuLatencyModel(device="cuda", gpu_name="NVIDIA L4", dtype="float16", launch_ms=3.0,
                            per_token_ms=0.002, per_token_sq_ms=0.0)
    path.write_text(json.dumps({"note": "SYNTHETIC test fixture, not a measurement",
                                "device": "cuda", "latency_model": model.to_dict()}),
                    encoding="utf-8")
    assert main(["compare", "--json", "--backend", "gpu", "--profile", str(path), "--evals",
                 "8", "--instance-types", "g6.xlarge", *SLICE]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "mbs.compare-backends/1" and list(report["backends"]) == ["gpu"]
    gpu = report["rates"][0]["backends"]["gpu"]
    assert set(gpu) == {"mbs", "batch", "ragged"}
    for name, figures in gpu.items():
        if figures["plan"] is not None:
            assert figures["plan"]["backend"] == "gpu", name
            assert figures["plan"]["instance_type"] == "g6.xlarge", name
            assert figures["instance_hours"] > 0, name


def test_the_gpu_fleet_needs_a_gpu_form_profile(synthetic_gpu_profile: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--backend", "gpu", "--profile", str(synthetic_gpu_profile),
                 *SLICE]) == 2
    assert "gpu-launch-max" in capsys.readouterr().err
