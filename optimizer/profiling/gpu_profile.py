"""`mbs profile --device cuda`: the GPU grid per dtype, grown until compute-bound, and its fit.

On a GPU a small batch costs what a large one does (the launch-bound plateau), so a grid that
stops early never sees the compute term that length buckets save. The grid therefore grows:
after the given batches, the batch doubles until, at the shortest length, doubling the batch
nearly doubles the time (compute-bound), the GPU runs out of memory, or `max_batch` is passed.

Each dtype (default float32 and float16) gets its own grid and fit; the profile's top-level
`latency_model` is the dtype the infer function runs (`function_dtype`: MBS_TORCH_DTYPE, else
float32, as functions/shared/model.py loads it), the others sit under `dtypes`. The fit is
optimizer/profiling/gpu_fit.py; timing is the profiler's (optimizer/profiling/profiler.py).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from functions.shared.model import DEFAULT_DTYPE
from optimizer.platform.latency_model import GpuLatencyModel, GridPoint, fit_quality
from optimizer.profiling import profiler
from optimizer.profiling.gpu_fit import fit_gpu_model

DEFAULT_GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DEFAULT_GPU_LENGTHS = (16, 32, 64, 128, 256)
DEFAULT_DTYPES = ("float32", "float16")
DEFAULT_MAX_BATCH = 4096
# Doubling the batch is compute-bound when the time grows by at least 2^0.8 = 1.74x: the
# plateau gives 1x, pure arithmetic 2x.
COMPUTE_BOUND_ELASTICITY = 0.8
MeasureRow = Callable[[int], list[GridPoint]]


class OutOfDeviceMemory(RuntimeError):
    """A batch did not fit on the GPU: the grid stops growing there."""


def is_compute_bound(points: Sequence[GridPoint], length: int) -> bool:
    """At `length`, the two largest batches measured: the time grew nearly as fast as B."""
    row = sorted((p.batch, p.median_ms) for p in points if p.length == length)
    if len(row) < 2:
        return False
    (b0, t0), (b1, t1) = row[-2], row[-1]
    return math.log(t1 / t0) >= COMPUTE_BOUND_ELASTICITY * math.log(b1 / b0)


def grow_until_compute_bound(measure_row: MeasureRow, batches: Sequence[int],
                             lengths: Sequence[int],
                             max_batch: int = DEFAULT_MAX_BATCH,
                             ) -> tuple[list[GridPoint], dict[str, Any]]:
    """Measure `batches`, then double the batch until the shortest length is compute-bound."""
    if not batches or not lengths:
        raise ValueError(f"batches and lengths must be non-empty, got {batches} x {lengths}")
    points = [p for b in sorted(batches) for p in measure_row(b)]
    batch, shortest = max(batches), min(lengths)
    stop = "compute-bound"
    while not is_compute_bound(points, shortest):
        batch *= 2
        if batch > max_batch:
            stop = f"not compute-bound at length {shortest} by max batch {max_batch}"
            break
        try:
            points += measure_row(batch)
        except OutOfDeviceMemory as err:
            stop = f"out of GPU memory at batch {batch} ({err})"
            break
    largest = max(p.batch for p in points)
    return points, {"stop": stop, "largest_batch": largest,
                    "added_batches": sorted({p.batch for p in points} - set(batches))}


def knee_batches(model: GpuLatencyModel, lengths: Sequence[int],
                 max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, int | None]:
    """Per length, the smallest batch the fitted model puts past the knee (None: none yet)."""
    return {str(n): next((b for b in range(1, max_batch + 1) if model.compute_bound(b, n)), None)
            for n in lengths}


def _row_measurer(forward: Any, lengths: Sequence[int], device: str, label: str,
                  on_point: profiler.OnPoint | None, **timing: Any) -> MeasureRow:
    import torch

    def measure_row(batch: int) -> list[GridPoint]:
        try:
            return profiler.measure_grid(
                [batch], lengths, device=device, forward=forward,
                on_point=(lambda _, p: on_point(label, p)) if on_point else None, **timing)
        except torch.cuda.OutOfMemoryError as err:
            torch.cuda.empty_cache()
            raise OutOfDeviceMemory(str(err).splitlines()[0]) from None

    return measure_row


def _dtype_profile(forward: Any, batches: Sequence[int], lengths: Sequence[int], device: str,
                   gpu_name: str, dtype: str, max_batch: int, on_point: profiler.OnPoint | None,
                   **timing: Any) -> dict[str, Any]:
    measure_row = _row_measurer(forward, lengths, device, dtype, on_point, **timing)
    points, growth = grow_until_compute_bound(measure_row, batches, lengths, max_batch)
    model = fit_gpu_model(points, device=device, gpu_name=gpu_name, dtype=dtype)
    return {"grid": [asdict(p) for p in points], "latency_model": model.to_dict(),
            "fit": fit_quality(model, points), "growth": growth,
            "knee_batch_by_length": knee_batches(model, lengths, max_batch)}


def run_gpu_profile(batches: Sequence[int] = DEFAULT_GPU_BATCHES,
                    lengths: Sequence[int] = DEFAULT_GPU_LENGTHS, *, device: str = "cuda",
                    dtypes: Sequence[str] = DEFAULT_DTYPES, model_dir: str | Path | None = None,
                    warmup: int = 3, repeats: int = 20, budget_s: float = 2.0,
                    patience_s: float = 60.0, max_batch: int = DEFAULT_MAX_BATCH,
                    cold_start_runs: int = 3, on_point: profiler.OnPoint | None = None,
                    forward_factory: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Profile the encoder on a CUDA device, each dtype on a grid grown until compute-bound.

    Raises ValueError before any work when `device` is not a CUDA device torch can see.
    """
    import torch

    if not device.startswith("cuda"):
        raise ValueError(f"run_gpu_profile needs a cuda device, got {device!r}")
    profiler.check_device(device)
    function_dtype = os.environ.get("MBS_TORCH_DTYPE") or DEFAULT_DTYPE
    dtypes = list(dict.fromkeys([function_dtype, *dtypes]))  # the function's dtype first
    started, gpu_name = time.perf_counter(), profiler.device_name(device)
    timing = {"warmup": warmup, "repeats": repeats, "budget_s": budget_s,
              "patience_s": patience_s}
    by_dtype, label = {}, ""
    for dtype in dtypes:
        forward = (forward_factory or profiler.Forward)(device, model_dir, dtype)
        if dtype == function_dtype:
            label = profiler.model_label(forward.embedder)
        by_dtype[dtype] = _dtype_profile(forward, batches, lengths, device, gpu_name, dtype,
                                         max_batch, on_point, **timing)
    cold = (profiler.measure_cold_start(device, cold_start_runs, patience_s, model_dir)
            if cold_start_runs > 0 else None)
    main = by_dtype[function_dtype]
    return {
        "schema": 2, "model": label, "device": device, "device_name": gpu_name,
        "torch": torch.__version__, "cuda": torch.version.cuda, "threads": 1,
        "function_dtype": function_dtype, "estimate": "",  # measured here, by `mbs profile`
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {**timing, "device": device, "dtypes": dtypes, "batches": list(batches),
                     "lengths": list(lengths), "max_batch": max_batch},
        "grid": main["grid"], "latency_model": main["latency_model"], "fit": main["fit"],
        "dtypes": by_dtype,
        "amdahl": {"parallel_fraction": 0.0, "note": "not measured (GPU)"},
        "cold_start_ms": cold["cold_start_ms"] if cold else None, "cold_start": cold,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
