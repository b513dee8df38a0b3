"""Latency of one forward pass, t(B, L), fitted to a profile, and scaled to a Lambda CPU share.

Pure math (numpy only): no torch, no clock. The profiler (optimizer/profiling/profiler.py) measures.

Form: t(B, L) = fixed + per_item*B + per_token*B*L + per_token_sq*B*L^2 (ms). Per token, a
transformer layer does O(L) work for the dense layers and O(L^2) for self-attention; the fixed
and per-item terms absorb call overhead and pooling. Coefficients are fitted by non-negative
least squares on the median, weighted by 1/median, so small batches are fitted as well as big
ones (relative, not absolute, error is what the latency SLO cares about).

Scaling to a Lambda function (Amdahl's law, Amdahl AFIPS 1967):
- CPU share: v = memory_mb / 1769 vCPU, proportional to memory, at most 6 (AWS Lambda docs,
  "Memory and computing power"). The credits are linear, so 10,240 MB gives 5.79 vCPU, not 6;
  the "6 vCPUs" are the cores the function sees (measured: github.com/rwnx/lambda-cpuinfo).
- Parallel fraction p: the same grid is profiled with 1 and with n torch threads
  (torch.set_num_threads); per point S = t1/tn and p = (1 - 1/S) / (1 - 1/n), which is
  p = 2*(1 - 1/S) for n = 2; the profile keeps the median over the grid, clipped to [0, 1].
- t(v) = t1 * ((1 - p) + p/v) for v >= 1, and t1 / v for v < 1 (a fractional vCPU is a time
  slice of one core); t1 = t_measured / ((1 - p) + p/n).
- How it was checked: the profile stores, per grid point, the measured 1-thread time against
  the 1-thread time this rule predicts from the n-thread fit (`amdahl.check` in the profile:
  max and median relative error). Shipped cpu.json (2 cores): p = 0.79 (median S2 = 1.65);
  the rule predicts the 1-thread pass within 8% (median), 32% (max, on points other processes
  crowded). Beyond the n measured threads (here 2) the rule extrapolates.
On a GPU ("cuda" devices) the forward pass runs on the GPU, so Lambda memory does not scale it.

GPU form (GpuLatencyModel): t(B, L) = max(launch, compute(B, L)) + transfer(B, L) ms, with
compute = per_token*B*L + per_token_sq*B*L^2 and transfer = transfer_per_item*B +
transfer_per_token*B*L. An eager forward pass launches a fixed train of kernels; while the GPU
finishes each kernel faster than the host launches the next, the pass takes the launch time
whatever the shape (the plateau: about 4 ms on the H100 reference up to 16x256), and past the
knee it takes the arithmetic. The host-device copies (token ids in, embeddings out) add to
both. optimizer/profiling/gpu_fit.py fits it; optimizer/platform/gpu_instances.py scales it to
other GPUs. A model that MBS did not measure itself says why in `estimate`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_CPU_PROFILE = PROFILES_DIR / "cpu.json"
DEFAULT_GPU_PROFILE = PROFILES_DIR / "gpu.json"
PROFILE_BY_BACKEND = {"cpu": DEFAULT_CPU_PROFILE, "gpu": DEFAULT_GPU_PROFILE,
                      "cuda": DEFAULT_GPU_PROFILE}
# AWS Lambda docs, "Memory and computing power": 128..10,240 MB; 1,769 MB = one vCPU.
MB_PER_VCPU = 1769
MAX_VCPUS = 6.0
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10240
COEFFICIENTS = ("fixed_ms", "per_item_ms", "per_token_ms", "per_token_sq_ms")


@dataclass(frozen=True)
class GridPoint:
    """One measured grid point: forward-pass latency at batch x padded length."""

    batch: int
    length: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.batch < 1 or self.length < 1:
            raise ValueError(f"batch and length must be >= 1, got {self.batch}x{self.length}")
        if not self.median_ms > 0:
            raise ValueError(f"median_ms must be > 0, got {self.median_ms}")


def lambda_vcpus(memory_mb: float) -> float:
    """The vCPU share of a Lambda function with this much memory (1,769 MB = 1 vCPU)."""
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(
            f"memory_mb must be in [{MIN_MEMORY_MB}, {MAX_MEMORY_MB}], got {memory_mb}")
    return min(memory_mb / MB_PER_VCPU, MAX_VCPUS)


def amdahl_factor(vcpus: float, parallel_fraction: float) -> float:
    """t(v) / t(1 vCPU): Amdahl for v >= 1, a time slice (1/v) for v < 1."""
    if vcpus <= 0:
        raise ValueError(f"vcpus must be > 0, got {vcpus}")
    if vcpus < 1:
        return 1.0 / vcpus
    return (1.0 - parallel_fraction) + parallel_fraction / vcpus


def parallel_fraction(t1_ms: float, tn_ms: float, threads: int) -> float:
    """Amdahl's p from one point timed with 1 and with `threads` threads (unclipped)."""
    if threads < 2:
        raise ValueError(f"threads must be >= 2 to estimate p, got {threads}")
    if t1_ms <= 0 or tn_ms <= 0:
        raise ValueError(f"times must be > 0, got t1={t1_ms} tn={tn_ms}")
    return (1.0 - tn_ms / t1_ms) / (1.0 - 1.0 / threads)


def estimate_parallel_fraction(one_thread: list[GridPoint], n_thread: list[GridPoint],
                               threads: int) -> float:
    """Median p over the grid points both passes measured, clipped to [0, 1]."""
    slow = {(g.batch, g.length): g.median_ms for g in one_thread}
    ps = [parallel_fraction(slow[(g.batch, g.length)], g.median_ms, threads)
          for g in n_thread if (g.batch, g.length) in slow]
    if not ps:
        raise ValueError("the 1-thread and n-thread passes share no grid point")
    return float(np.clip(np.median(ps), 0.0, 1.0))


@dataclass(frozen=True)
class LatencyModel:
    """t(B, L) ms on `device` with `threads` threads, and its Lambda scaling (see module doc)."""

    device: str
    threads: int
    fixed_ms: float
    per_item_ms: float
    per_token_ms: float  # ms per B*L
    per_token_sq_ms: float  # ms per B*L^2: self-attention's quadratic cost
    parallel_fraction: float = 0.0  # Amdahl p; 0 where not measured (e.g. GPU)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0.0 <= self.parallel_fraction <= 1.0:
            raise ValueError(f"parallel_fraction must be in [0, 1], got {self.parallel_fraction}")
        for name in COEFFICIENTS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def predict_ms(self, batch: int, length: int) -> float:
        """Forward-pass latency on the measured device, with the measured thread count."""
        if batch < 1 or length < 1:
            raise ValueError(f"batch and length must be >= 1, got {batch}x{length}")
        tokens = batch * length
        return (self.fixed_ms + self.per_item_ms * batch + self.per_token_ms * tokens
                + self.per_token_sq_ms * tokens * length)

    def single_thread_ms(self, batch: int, length: int) -> float:
        """The same pass on one core, by Amdahl from the measured thread count."""
        return self.predict_ms(batch, length) / amdahl_factor(self.threads, self.parallel_fraction)

    def lambda_ms(self, batch: int, length: int, memory_mb: float) -> float:
        """Latency in a Lambda function with `memory_mb`; GPU time ignores memory."""
        if self.is_gpu:
            if memory_mb <= 0:
                raise ValueError(f"memory_mb must be > 0, got {memory_mb}")
            return self.predict_ms(batch, length)
        factor = amdahl_factor(lambda_vcpus(memory_mb), self.parallel_fraction)
        return self.single_thread_ms(batch, length) * factor

    def __call__(self, batch: int, length: int, memory_mb: float) -> float:
        """Service time (ms) of one batch: the estimator's and simulator's hook."""
        return self.lambda_ms(batch, length, memory_mb)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyModel:
        return cls(device=str(data["device"]), threads=int(data["threads"]),
                   parallel_fraction=float(data.get("parallel_fraction", 0.0)),
                   **{name: float(data[name]) for name in COEFFICIENTS})


def nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a few columns: best feasible LS over all supports.

    The NNLS optimum is the plain LS solution on its own support (KKT), so it is among them.
    """
    n = a.shape[1]
    best, best_rss = np.zeros(n), float(y @ y)
    for size in range(1, n + 1):
        for cols in itertools.combinations(range(n), size):
            x_sub = np.linalg.lstsq(a[:, cols], y, rcond=None)[0]
            if np.any(x_sub < 0):
                continue
            x = np.zeros(n)
            x[list(cols)] = x_sub
            rss = float(np.sum((a @ x - y) ** 2))
            if rss < best_rss - 1e-12 * max(best_rss, 1.0):
                best, best_rss = x, rss
    return best


def fit_latency_model(points: list[GridPoint], *, device: str, threads: int,
                      parallel_fraction: float = 0.0) -> LatencyModel:
    """Fit the four coefficients to the medians by NNLS on relative error."""
    if len(points) < len(COEFFICIENTS):
        raise ValueError(f"need >= {len(COEFFICIENTS)} grid points to fit, got {len(points)}")
    b = np.array([p.batch for p in points], dtype=float)
    length = np.array([p.length for p in points], dtype=float)
    y = np.array([p.median_ms for p in points], dtype=float)
    design = np.column_stack([np.ones_like(b), b, b * length, b * length**2])
    coef = nnls(design / y[:, None], np.ones_like(y))  # rows / y: minimise relative error
    return LatencyModel(device=device, threads=threads, parallel_fraction=parallel_fraction,
                        **{name: float(c) for name, c in zip(COEFFICIENTS, coef, strict=True)})


GPU_FORM = "gpu-launch-max"
GPU_COEFFICIENTS = ("launch_ms", "per_token_ms", "per_token_sq_ms", "transfer_per_item_ms",
                    "transfer_per_token_ms")


@dataclass(frozen=True)
class GpuLatencyModel:
    """t(B, L) ms on one GPU: a launch-bound plateau, then compute, plus transfers (module doc)."""

    device: str
    gpu_name: str
    dtype: str  # the weights' and activations' dtype the pass ran in
    launch_ms: float
    per_token_ms: float  # ms per B*L past the knee: the dense layers
    per_token_sq_ms: float  # ms per B*L^2 past the knee: eager self-attention
    transfer_per_item_ms: float = 0.0  # ms per row: the embedding copied back to the host
    transfer_per_token_ms: float = 0.0  # ms per B*L: ids and mask copied to the GPU
    estimate: str = ""  # why this is not MBS's own measurement on this GPU; "" when it is

    def __post_init__(self) -> None:
        if not self.device.startswith("cuda"):
            raise ValueError(f"a GPU latency model needs a cuda device, got {self.device!r}")
        for name in GPU_COEFFICIENTS:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    threads = 1  # the host thread that launches kernels; the Amdahl rule does not apply
    parallel_fraction = 0.0
    is_gpu = True

    def compute_ms(self, batch: int, length: int) -> float:
        """The arithmetic of the pass alone: what it takes past the knee."""
        tokens = batch * length
        return self.per_token_ms * tokens + self.per_token_sq_ms * tokens * length

    def transfer_ms(self, batch: int, length: int) -> float:
        """Host-device copies: ids and mask in, one embedding per row out."""
        return self.transfer_per_item_ms * batch + self.transfer_per_token_ms * batch * length

    def compute_bound(self, batch: int, length: int) -> bool:
        """Past the knee: the arithmetic, not the kernel launches, sets the time."""
        return self.compute_ms(batch, length) > self.launch_ms

    def predict_ms(self, batch: int, length: int) -> float:
        """Forward-pass latency on this GPU, transfers included."""
        if batch < 1 or length < 1:
            raise ValueError(f"batch and length must be >= 1, got {batch}x{length}")
        return (max(self.launch_ms, self.compute_ms(batch, length))
                + self.transfer_ms(batch, length))

    def single_thread_ms(self, batch: int, length: int) -> float:
        """The same pass: one host thread launches it already."""
        return self.predict_ms(batch, length)

    def lambda_ms(self, batch: int, length: int, memory_mb: float) -> float:
        """Latency in a GPU-backed function; its memory does not change the GPU's time."""
        if memory_mb <= 0:
            raise ValueError(f"memory_mb must be > 0, got {memory_mb}")
        return self.predict_ms(batch, length)

    def __call__(self, batch: int, length: int, memory_mb: float) -> float:
        """Service time (ms) of one batch: the estimator's and simulator's hook."""
        return self.lambda_ms(batch, length, memory_mb)

    def describe(self) -> str:
        """The GPU, dtype and provenance in one line, for reports."""
        label = f"{self.gpu_name}, {self.dtype}"
        return f"{label} (estimate: {self.estimate})" if self.estimate else label

    def to_dict(self) -> dict[str, Any]:
        return {"form": GPU_FORM, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuLatencyModel:
        return cls(device=str(data["device"]), gpu_name=str(data["gpu_name"]),
                   dtype=str(data["dtype"]), estimate=str(data.get("estimate", "")),
                   **{name: float(data.get(name, 0.0)) for name in GPU_COEFFICIENTS})


ServiceModel = LatencyModel | GpuLatencyModel


def model_from_dict(data: dict[str, Any]) -> ServiceModel:
    """The latency model a profile's `latency_model` object holds, by its `form`."""
    form = data.get("form", "additive")
    if form == GPU_FORM:
        return GpuLatencyModel.from_dict(data)
    if form == "additive":
        return LatencyModel.from_dict(data)
    raise ValueError(f"Unknown latency model form: {form!r}; known: ['additive', {GPU_FORM!r}]")


def fit_quality(model: ServiceModel, points: list[GridPoint]) -> dict[str, float]:
    """Max and median relative error of the model against the measured medians."""
    errs = [abs(model.predict_ms(p.batch, p.length) - p.median_ms) / p.median_ms
            for p in points]
    return {"max_rel_err": float(np.max(errs)), "median_rel_err": float(np.median(errs))}


def load_profile(path: str | Path | None = None, *,
                 backend: str = "cpu") -> tuple[dict[str, Any], ServiceModel]:
    """A profile JSON and its latency model (default: the shipped profile of `backend`)."""
    if path is None:
        if backend not in PROFILE_BY_BACKEND:
            raise ValueError(f"backend must be one of {sorted(PROFILE_BY_BACKEND)}, got "
                             f"{backend!r}")
        path = PROFILE_BY_BACKEND[backend]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no latency profile at {path}: measure one with `mbs profile --device "
            f"{'cuda' if path.name == 'gpu.json' else 'cpu'} --out {path}` "
            "(see optimizer/profiles/README.md)")
    profile = json.loads(path.read_text(encoding="utf-8"))
    return profile, model_from_dict(profile["latency_model"])
