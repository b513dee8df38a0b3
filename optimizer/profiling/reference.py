"""A GPU latency profile built from a reference timing file, where no GPU was lent to measure one.

The reference (optimizer/profiles/reference/minilm_h100_ms.json) holds one mean forward-pass
time per "dtype:BxL" key, measured by the project's reference run on an NVIDIA H100 with an
encoder shaped like all-MiniLM-L6-v2 (random weights: the same timing). This module turns the
entries of one dtype into the profile schema `load_profile` reads, fits the GPU form
max(launch, compute) + transfer to them (optimizer/profiling/gpu_fit.py), and records where
they came from: the figures are measured, but by the reference run, not by `mbs profile`, and a
single mean per point (no p10/p90) is all the reference gives. So the profile, and the model in
it, carry an `estimate` label that says so.

Pure: dict in, dict out; `mbs profile --from-reference FILE` does the reading and writing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from optimizer.platform.latency_model import GPU_COEFFICIENTS, GridPoint, fit_quality
from optimizer.profiling.gpu_fit import fit_gpu_model


class ReferenceProfileError(ValueError):
    """The reference file lacks what a profile needs; the message names what."""


def _points(grid: dict[str, Any], dtype: str) -> list[GridPoint]:
    points = []
    for key, ms in grid.items():
        kind, _, shape = key.partition(":")
        if kind != dtype:
            continue
        batch, _, length = shape.partition("x")
        try:
            b, n, t = int(batch), int(length), float(ms)
        except ValueError:
            raise ReferenceProfileError(f"grid key {key!r} is not 'dtype:BxL' with a number of "
                                        f"ms, got {ms!r}") from None
        points.append(GridPoint(batch=b, length=n, median_ms=t, p10_ms=t, p90_ms=t))
    return sorted(points, key=lambda p: (p.batch, p.length))


def profile_from_reference(reference: dict[str, Any], *, source: str,
                           dtype: str = "float32") -> dict[str, Any]:
    """The GPU profile of `reference`'s `dtype` entries, with the fit and its provenance."""
    if not isinstance(reference.get("grid"), dict):
        raise ReferenceProfileError(f"{source}: no 'grid' object of 'dtype:BxL' -> ms")
    points = _points(reference["grid"], dtype)
    if len(points) < len(GPU_COEFFICIENTS):
        found = sorted({k.partition(":")[0] for k in reference["grid"]})
        raise ReferenceProfileError(f"{source}: {len(points)} grid points of dtype {dtype!r}; "
                                    f"need >= {len(GPU_COEFFICIENTS)} (dtypes present: {found})")
    gpu_name = str(reference.get("device", "unknown GPU"))
    estimate = (f"timings measured by the reference run on {gpu_name} ({source}), "
                "not by `mbs profile`; one mean per point")
    model = fit_gpu_model(points, device="cuda", gpu_name=gpu_name, dtype=dtype,
                          estimate=estimate)
    return {
        "schema": 2,
        "model": f"{reference.get('model', 'all-MiniLM-L6-v2')}, {dtype}",
        "device": "cuda", "device_name": gpu_name,
        "torch": str(reference.get("torch", "unknown")), "threads": 1,
        "function_dtype": dtype, "estimate": estimate,
        "source": {"file": source, "unit": reference.get("unit"),
                   "note": "measured by the reference run, not by `mbs profile`: one mean per "
                           "point, so p10 and p90 repeat it"},
        "settings": {"dtype": dtype, "batches": sorted({p.batch for p in points}),
                     "lengths": sorted({p.length for p in points})},
        "grid": [asdict(p) for p in points],
        "latency_model": model.to_dict(), "fit": fit_quality(model, points),
        "amdahl": {"parallel_fraction": 0.0, "note": "not measured (GPU)"},
        "cold_start_ms": None, "cold_start": None,
    }
