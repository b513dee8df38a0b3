"""The GPU latency form: its fit on a synthetic launch-bound grid, the grid that grows until
compute-bound, the CUDA profiler's path (driven on the CPU by a synthetic pass), the guard that
names a missing GPU, and the shipped H100 refit's error against its grid."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from infra.cli.main import main
from optimizer.platform.latency_model import (
    DEFAULT_GPU_PROFILE,
    GpuLatencyModel,
    GridPoint,
    LatencyModel,
    fit_quality,
    load_profile,
    model_from_dict,
)
from optimizer.profiling import gpu_profile, profiler
from optimizer.profiling.gpu_fit import fit_gpu_model
from optimizer.profiling.gpu_profile import (
    OutOfDeviceMemory,
    grow_until_compute_bound,
    is_compute_bound,
    knee_batches,
    run_gpu_profile,
)

# SYNTHETIC, not a measurement: known parameters the fit must recover.
TRUE = GpuLatencyModel(device="cuda", gpu_name="Synthetic GPU", dtype="float16", launch_ms=3.0,
                       per_token_ms=2e-4, per_token_sq_ms=1e-6, transfer_per_item_ms=2e-3,
                       transfer_per_token_ms=1e-5)
BATCHES, LENGTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512), (16, 32, 64, 128, 256)
NAMES = ("launch_ms", "per_token_ms", "per_token_sq_ms", "transfer_per_item_ms",
         "transfer_per_token_ms")


def grid(model: GpuLatencyModel, noise: float = 0.0, seed: int = 0) -> list[GridPoint]:
    rng = np.random.default_rng(seed)
    points = []
    for b in BATCHES:
        for n in LENGTHS:
            t = model.predict_ms(b, n) * (1.0 + noise * rng.standard_normal())
            points.append(GridPoint(b, n, t, t, t))
    return points


def test_the_fit_recovers_a_synthetic_launch_bound_grid() -> None:
    points = grid(TRUE)
    assert sum(not TRUE.compute_bound(p.batch, p.length) for p in points) >= 15  # a plateau
    fitted = fit_gpu_model(points, device="cuda", gpu_name="Synthetic GPU", dtype="float16")
    for name in NAMES:
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=1e-4), name
    assert fit_quality(fitted, points)["max_rel_err"] < 1e-6
    assert fitted.gpu_name == "Synthetic GPU" and fitted.estimate == ""


def test_the_fit_recovers_the_plateau_and_compute_through_noise() -> None:
    # GIVEN 3% multiplicative noise on every point (seeded)
    fitted = fit_gpu_model(grid(TRUE, noise=0.03), device="cuda", gpu_name="g", dtype="float16")
    assert fitted.launch_ms == pytest.approx(TRUE.launch_ms, rel=0.05)
    for b, n in ((512, 256), (256, 128), (64, 256)):  # past the knee: the compute terms
        assert fitted.predict_ms(b, n) == pytest.approx(TRUE.predict_ms(b, n), rel=0.05)


def test_the_form_is_a_plateau_then_compute_plus_transfer() -> None:
    assert TRUE.predict_ms(1, 16) == pytest.approx(3.0 + 2e-3 + 16e-5)
    assert not TRUE.compute_bound(8, 64) and TRUE.compute_bound(512, 256)
    compute = 2e-4 * 512 * 256 + 1e-6 * 512 * 256 * 256
    assert TRUE.predict_ms(512, 256) == pytest.approx(compute + 512 * 2e-3 + 512 * 256 * 1e-5)
    assert TRUE(8, 64, 1024) == TRUE(8, 64, 10240) == TRUE.predict_ms(8, 64)  # memory: no matter
    assert model_from_dict(json.loads(json.dumps(TRUE.to_dict()))) == TRUE


def test_bad_gpu_models_are_rejected_with_their_values() -> None:
    with pytest.raises(ValueError, match="'cpu'"):
        GpuLatencyModel("cpu", "x", "float32", 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="launch_ms must be >= 0, got -1.0"):
        GpuLatencyModel("cuda", "x", "float32", -1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="'cubic'"):
        model_from_dict({"form": "cubic"})
    assert isinstance(model_from_dict(LatencyModel("cpu", 2, 1.0, 0, 0, 0).to_dict()),
                      LatencyModel)  # profiles without a form are the additive CPU form


def _rows(model: GpuLatencyModel, oom_from: int | None = None):
    seen: list[int] = []

    def measure_row(batch: int) -> list[GridPoint]:
        seen.append(batch)
        if oom_from is not None and batch >= oom_from:
            raise OutOfDeviceMemory("CUDA out of memory")
        return [GridPoint(batch, n, model.predict_ms(batch, n), 0.0, 0.0) for n in LENGTHS]

    return measure_row, seen


def test_the_grid_doubles_the_batch_until_compute_bound() -> None:
    measure_row, seen = _rows(TRUE)
    points, growth = grow_until_compute_bound(measure_row, (1, 4, 16), LENGTHS)
    assert seen[:3] == [1, 4, 16] and seen[3:] == [32 * 2**i for i in range(len(seen) - 3)]
    assert growth["stop"] == "compute-bound" and is_compute_bound(points, 16)
    assert not is_compute_bound([p for p in points if p.batch < growth["largest_batch"]], 16)
    assert growth["added_batches"] == seen[3:]


def test_the_grid_stops_at_the_batch_limit_or_out_of_memory() -> None:
    measure_row, _ = _rows(TRUE)
    points, growth = grow_until_compute_bound(measure_row, (1, 2), LENGTHS, max_batch=64)
    assert growth["largest_batch"] == 64 and "max batch 64" in growth["stop"]
    measure_row, _ = _rows(TRUE, oom_from=256)
    points, growth = grow_until_compute_bound(measure_row, (1, 2), LENGTHS)
    assert growth["largest_batch"] == 128 and "out of GPU memory at batch 256" in growth["stop"]
    assert {p.batch for p in points} == {1, 2, 4, 8, 16, 32, 64, 128}


def test_knee_batches_are_where_compute_passes_the_launch() -> None:
    knees = knee_batches(TRUE, (16, 256), max_batch=4096)
    for length, batch in ((16, knees["16"]), (256, knees["256"])):
        assert TRUE.compute_bound(batch, length) and not TRUE.compute_bound(batch - 1, length)
    assert knee_batches(TRUE, (16,), max_batch=8) == {"16": None}


class _SyntheticPass:
    """Stands in for the CUDA pass on this CPU machine: the time a known model predicts."""

    def __init__(self, device: str, model_dir: object, dtype: str) -> None:
        self.model = TRUE if dtype == "float16" else GpuLatencyModel(
            "cuda", "Synthetic GPU", "float32", 4.0, 6e-4, 3e-7)
        spec = SimpleNamespace(directory=Path("x"), pooling="mean_tokens", normalize=True)
        self.embedder = SimpleNamespace(name="all-MiniLM-L6-v2", dtype=dtype, spec=spec)

    def __call__(self, batch: int, length: int) -> float:
        return self.model.predict_ms(batch, length)


def test_the_cuda_path_runs_each_dtype_grows_the_grid_and_fits(monkeypatch) -> None:
    # GIVEN the device checks and the device name pass as if a GPU were present
    monkeypatch.setattr(profiler, "check_device", lambda device: None)
    monkeypatch.setattr(profiler, "device_name", lambda device: "Synthetic GPU")
    monkeypatch.delenv("MBS_TORCH_DTYPE", raising=False)
    profile = run_gpu_profile((1, 8, 64), (16, 128), dtypes=("float16",), warmup=0, repeats=3,
                              patience_s=0, cold_start_runs=0, forward_factory=_SyntheticPass)
    assert profile["function_dtype"] == "float32" and list(profile["dtypes"]) == \
        ["float32", "float16"]  # the function's dtype is always measured, and first
    assert profile["device_name"] == "Synthetic GPU" and profile["estimate"] == ""
    for dtype, part in profile["dtypes"].items():
        assert part["growth"]["stop"] == "compute-bound" and part["fit"]["max_rel_err"] < 1e-3
        assert model_from_dict(part["latency_model"]).dtype == dtype
    assert profile["latency_model"] == profile["dtypes"]["float32"]["latency_model"]
    half = model_from_dict(profile["dtypes"]["float16"]["latency_model"])
    assert half.launch_ms == pytest.approx(3.0, rel=1e-3)


def test_cuda_without_a_gpu_is_a_clear_error(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(ValueError, match="no CUDA device is visible to torch"):
        run_gpu_profile(cold_start_runs=0)
    assert main(["profile", "--device", "cuda", "--cold-start-runs", "0"]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err
    assert main(["profile", "--device", "cuda", "--dtypes", "float8"]) == 2
    assert "'float8'" in capsys.readouterr().err


def test_the_shipped_gpu_profile_is_the_h100_refit_within_target() -> None:
    profile, model = load_profile(DEFAULT_GPU_PROFILE)
    assert isinstance(model, GpuLatencyModel) and model.gpu_name == "NVIDIA H100 80GB HBM3"
    assert profile["device_name"] == model.gpu_name and profile["function_dtype"] == "float32"
    # The target for the fitted form: within 10% median and 25% max of the grid.
    assert profile["fit"]["median_rel_err"] <= 0.10 and profile["fit"]["max_rel_err"] <= 0.25
    assert "reference run" in profile["estimate"] and "not by `mbs profile`" in model.estimate
    assert model.compute_bound(256, 256) and not model.compute_bound(4, 64)


def test_the_gpu_path_module_names_its_defaults() -> None:
    assert gpu_profile.DEFAULT_DTYPES == ("float32", "float16")
    assert min(gpu_profile.DEFAULT_GPU_BATCHES) == 1
