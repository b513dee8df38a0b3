"""The latency model: NNLS fit, monotone predictions, Lambda (Amdahl) scaling, shipped profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimizer.platform.latency_model import (
    DEFAULT_CPU_PROFILE,
    MB_PER_VCPU,
    GridPoint,
    LatencyModel,
    amdahl_factor,
    estimate_parallel_fraction,
    fit_latency_model,
    fit_quality,
    lambda_vcpus,
    load_profile,
    parallel_fraction,
)

REFERENCE_CPU = Path(__file__).resolve().parents[2] / "shared" / "reference" / "minilm_cpu2_ms.json"
TRUE = LatencyModel(device="cpu", threads=2, fixed_ms=6.0, per_item_ms=0.5, per_token_ms=0.15,
                    per_token_sq_ms=0.0002, parallel_fraction=0.8)
BATCHES, LENGTHS = (1, 2, 4, 8, 16, 32, 64), (16, 32, 64, 128, 256)


def synthetic_grid(model: LatencyModel) -> list[GridPoint]:
    return [GridPoint(b, n, model.predict_ms(b, n), model.predict_ms(b, n),
                      model.predict_ms(b, n)) for b in BATCHES for n in LENGTHS]


def test_fit_recovers_known_coefficients() -> None:
    fitted = fit_latency_model(synthetic_grid(TRUE), device="cpu", threads=2,
                               parallel_fraction=0.8)
    for name in ("fixed_ms", "per_item_ms", "per_token_ms", "per_token_sq_ms"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=1e-6)
    assert fit_quality(fitted, synthetic_grid(TRUE))["max_rel_err"] < 1e-9


def test_fit_keeps_coefficients_non_negative() -> None:
    # GIVEN times that fall with batch size (a negative per-item slope would fit them best)
    points = [GridPoint(b, n, 100.0 - b + 0.01 * b * n, 1.0, 200.0)
              for b in BATCHES for n in LENGTHS]
    fitted = fit_latency_model(points, device="cpu", threads=1)
    assert min(fitted.fixed_ms, fitted.per_item_ms, fitted.per_token_ms,
               fitted.per_token_sq_ms) >= 0.0


def test_predictions_are_monotone_in_batch_and_length() -> None:
    _, model = load_profile()
    for m in (TRUE, model):
        for n in LENGTHS:
            times = [m.predict_ms(b, n) for b in range(1, 65)]
            assert times == sorted(times)
        for b in BATCHES:
            times = [m.predict_ms(b, n) for n in range(1, 513)]
            assert times == sorted(times)


def test_one_vcpu_at_1769_mb_is_the_single_thread_time() -> None:
    assert lambda_vcpus(1769) == pytest.approx(1.0)
    assert TRUE.lambda_ms(8, 64, 1769) == pytest.approx(TRUE.single_thread_ms(8, 64))
    # measured with 2 threads: the 1-thread time is longer by 1 / ((1 - p) + p / 2)
    assert TRUE.single_thread_ms(8, 64) == pytest.approx(TRUE.predict_ms(8, 64) / 0.6)


def test_two_vcpus_are_faster_by_the_amdahl_factor() -> None:
    one, two = TRUE.lambda_ms(8, 64, 1769), TRUE.lambda_ms(8, 64, 2 * 1769)
    assert two == pytest.approx(one * ((1 - 0.8) + 0.8 / 2))
    assert two == pytest.approx(TRUE.predict_ms(8, 64))  # 2 vCPU = the 2 measured threads


def test_vcpus_proportional_and_capped_at_the_maximum_memory() -> None:
    # AWS credits are linear in memory: 10,240 MB is 5.79 vCPU (the 6 are cores seen)
    assert lambda_vcpus(10240) == pytest.approx(10240 / MB_PER_VCPU)
    assert lambda_vcpus(10240) <= 6.0
    assert TRUE.lambda_ms(8, 64, 10240) == pytest.approx(
        TRUE.single_thread_ms(8, 64) * amdahl_factor(10240 / MB_PER_VCPU, 0.8))
    assert TRUE.lambda_ms(8, 64, 10240) < TRUE.lambda_ms(8, 64, 8845)


def test_fractional_vcpu_is_a_time_slice() -> None:
    one = TRUE.lambda_ms(8, 64, 1769)
    assert TRUE.lambda_ms(8, 64, 1769 / 2) == pytest.approx(one * 2)
    assert TRUE.lambda_ms(8, 64, 128) == pytest.approx(one * 1769 / 128)


@pytest.mark.parametrize("memory_mb", [0, 127, 20000, -1])
def test_bad_memory_is_rejected_with_its_value(memory_mb: int) -> None:
    with pytest.raises(ValueError, match=str(memory_mb)):
        TRUE.lambda_ms(1, 16, memory_mb)


def test_bad_shapes_and_coefficients_are_rejected() -> None:
    with pytest.raises(ValueError, match="0x16"):
        TRUE.predict_ms(0, 16)
    with pytest.raises(ValueError, match="-1.0"):
        LatencyModel("cpu", 2, -1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="1.5"):
        LatencyModel("cpu", 2, 1.0, 0.0, 0.0, 0.0, parallel_fraction=1.5)


def test_callable_as_service_time_and_gpu_ignores_memory() -> None:
    assert TRUE(8, 64, 3008) == TRUE.lambda_ms(8, 64, 3008)
    gpu = LatencyModel("cuda", 1, 4.0, 0.0, 0.001, 0.0)
    assert gpu(8, 64, 1024) == gpu(8, 64, 10240) == pytest.approx(gpu.predict_ms(8, 64))


def test_round_trip_through_dict_and_json() -> None:
    assert LatencyModel.from_dict(json.loads(json.dumps(TRUE.to_dict()))) == TRUE


def test_parallel_fraction_from_two_thread_speedup() -> None:
    # speedup S2 = 1.6 => p = 2 * (1 - 1 / 1.6) = 0.75
    assert parallel_fraction(160.0, 100.0, 2) == pytest.approx(0.75)
    one = [GridPoint(1, 16, 16.0, 1.0, 1.0), GridPoint(4, 16, 40.0, 1.0, 1.0)]
    two = [GridPoint(1, 16, 10.0, 1.0, 1.0), GridPoint(4, 16, 10.0, 1.0, 1.0)]
    assert estimate_parallel_fraction(one, two, 2) == 1.0  # clipped: super-linear is noise
    with pytest.raises(ValueError, match="got 1"):
        parallel_fraction(1.0, 1.0, 1)


def test_shipped_cpu_profile_loads_and_matches_the_reference() -> None:
    profile, model = load_profile()
    assert profile["device"] == "cpu" and model.device == "cpu"
    assert 0.0 < model.parallel_fraction <= 1.0 and profile["cold_start_ms"] > 0
    if not REFERENCE_CPU.exists():
        pytest.skip(f"no reference timings at {REFERENCE_CPU}")
    reference = json.loads(REFERENCE_CPU.read_text(encoding="utf-8"))["grid"]
    for batch, length in ((16, 64), (4, 128)):
        expected = reference[f"{batch}x{length}"]["median"]
        assert model.predict_ms(batch, length) == pytest.approx(expected, rel=0.35)


def test_missing_gpu_profile_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gpu.json"):
        load_profile(tmp_path / "gpu.json")
    assert load_profile(backend="gpu")[1].is_gpu  # shipped: fitted to the H100 reference
    with pytest.raises(ValueError, match="'tpu'"):
        load_profile(backend="tpu")
    assert DEFAULT_CPU_PROFILE.name == "cpu.json"
