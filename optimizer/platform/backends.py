"""Where the infer function runs: a CPU Lambda function or a GPU-backed function.

What `--backend gpu` means on the command line: the LMI fleet (`mbs compare`:
optimizer/compare/across.py; `mbs optimize`: optimizer/search/gpu.py), billed by instance time
(optimizer/platform/gpu_cost.py). The per-invocation GPU model below (GpuPricing, pin()) is
what the library's single-backend comparison, floors and estimator tests still price a
GPU-backed invocation with; no command plans with it any more.

A backend is the pair the estimator and simulator take, a service time `t(B, L, memory_mb)` and a
price table, plus the memory sizes a plan may use:

- lambda: the measured CPU profile (optimizer/profiles/cpu.json) scaled to the function's
  memory (1,769 MB = 1 vCPU), billed per GB-second in 1 ms steps plus a per-request fee.
- gpu: a GPU profile (shipped: optimizer/profiles/gpu.json, fitted to the reference H100 timings
  in optimizer/profiles/reference/, since no GPU was lent to this project to run
  `mbs profile --device cuda` itself), billed per second of GPU time (Pricing.gpu_hour_usd,
  rounded up to Pricing.gpu_billing_granularity_ms), with no per-request fee and no memory
  axis: GPU time does not scale with a function's memory.

How the GPU price reaches the models without a second cost path: the estimator, the simulator
and the oracle floor all price an invocation as billed_ms(duration) x memory_mb / 1024 x
lambda_gb_s_usd + lambda_request_usd. `GpuPricing` is that same table with the GPU's numbers in
those fields (1 s billing steps, the GPU's price per second as the "GB-second" price, no request
fee), and every GPU plan pins memory_mb to GPU_MEMORY_MB = 1024, so that one "GB-second" is one
GPU-second. Its lambda_invocation_usd still prices the request path's small CPU functions
(ingest, results) with the Lambda table, so total cost stays right too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

from buffers.plan import Plan
from optimizer.platform.latency_model import DEFAULT_GPU_PROFILE, LatencyModel, load_profile
from optimizer.platform.pricing import MB_PER_GB, Pricing

GPU_MEMORY_MB = MB_PER_GB  # GPU plans pin memory to 1 GB: GB-seconds then read GPU-seconds
MS_PER_HOUR = 3_600_000.0
GPU_PROFILE_HELP = (
    "the gpu backend needs a GPU latency profile, and optimizer/profiles/gpu.json is missing. "
    "Rebuild it from the reference timings with `mbs profile --from-reference "
    "optimizer/profiles/reference/minilm_h100_ms.json --out optimizer/profiles/gpu.json`, or "
    "measure one on a machine with an NVIDIA GPU and a CUDA build of torch with "
    "`mbs profile --device cuda --out gpu.json` (see optimizer/profiles/README.md), then pass "
    "--profile gpu.json")


class BackendType(StrEnum):
    LAMBDA = "lambda"  # CPU Lambda function, GB-second billing
    GPU = "gpu"  # GPU-backed function, per-second billing


class BackendError(ValueError):
    """A backend that cannot be built from the given profile; the message says what to do."""


@dataclass(frozen=True)
class GpuPricing(Pricing):
    """The price table of a GPU-backed infer function, in the fields the cost models read.

    Build it with gpu_pricing(); its infer prices are only right for plans at GPU_MEMORY_MB.
    """

    lambda_pricing: Pricing = field(default_factory=Pricing)

    def lambda_invocation_usd(self, duration_ms: float, memory_mb: int,
                              arch: str = "x86") -> float:
        """The request path's CPU functions (ingest, results) stay on Lambda prices."""
        return self.lambda_pricing.lambda_invocation_usd(duration_ms, memory_mb, arch)


def gpu_pricing(base: Pricing) -> GpuPricing:
    """`base` with GPU-second billing in the infer function's fields (see the module doc)."""
    per_gpu_s_usd = base.gpu_hour_usd / 3600.0
    values = {f.name: getattr(base, f.name) for f in fields(Pricing)}
    values.update(lambda_gb_s_usd_x86=per_gpu_s_usd, lambda_gb_s_usd_arm64=per_gpu_s_usd,
                  lambda_request_usd=0.0,
                  billing_granularity_ms=base.gpu_billing_granularity_ms)
    return GpuPricing(**values, lambda_pricing=base)


@dataclass(frozen=True)
class Backend:
    """A service-time model, the price table it is billed by, and the memory plans may use."""

    kind: BackendType
    service_ms: LatencyModel
    pricing: Pricing
    profile: str  # where the latency model came from
    memory_choices_mb: tuple[int, ...] | None = None  # None: the search's own choices

    def __post_init__(self) -> None:
        if self.kind is BackendType.GPU:
            if not self.service_ms.is_gpu:
                raise BackendError(f"the gpu backend needs a profile measured on cuda, got "
                                   f"device {self.service_ms.device!r} ({self.profile})")
            if not isinstance(self.pricing, GpuPricing):
                raise BackendError("the gpu backend needs GpuPricing (see gpu_pricing())")
        elif self.service_ms.is_gpu:
            raise BackendError(f"the lambda backend runs on CPU; {self.profile} was measured on "
                               f"{self.service_ms.device!r}: use --backend gpu for it")

    @property
    def is_gpu(self) -> bool:
        return self.kind is BackendType.GPU

    def pin(self, plan: Plan) -> Plan:
        """The plan as this backend runs it: GPU plans at GPU_MEMORY_MB, others unchanged."""
        if not self.is_gpu:
            return plan
        buffers = tuple(replace(spec, memory_mb=GPU_MEMORY_MB) for spec in plan.buffers)
        return replace(plan, buffers=buffers)

    def describe(self) -> str:
        if self.is_gpu:
            return (f"gpu: GPU-backed function, ${self.pricing.gpu_hour_usd:g}/GPU-hour billed "
                    f"per {self.pricing.billing_granularity_ms} ms, profile {self.profile}")
        return (f"lambda: CPU function, ${self.pricing.lambda_gb_s_usd_x86:g}/GB-s billed per "
                f"{self.pricing.billing_granularity_ms} ms, profile {self.profile}")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.kind.value, "profile": self.profile,
                "device": self.service_ms.device, "pricing": self.pricing.to_dict(),
                "memory_choices_mb": (list(self.memory_choices_mb)
                                      if self.memory_choices_mb else None)}


def backend_type(kind: str) -> BackendType:
    """The backend a config string names; fails fast on anything unknown."""
    try:
        return BackendType(kind)
    except ValueError:
        raise ValueError(f"Unknown backend: {kind!r}; known: "
                         f"{[b.value for b in BackendType]}") from None


def backend_from_model(kind: str, model: LatencyModel, pricing: Pricing,
                       profile: str) -> Backend:
    """A backend from a latency model in hand (make_backend reads one from a file)."""
    if backend_type(kind) is BackendType.GPU:
        return Backend(BackendType.GPU, model, gpu_pricing(pricing), profile, (GPU_MEMORY_MB,))
    return Backend(BackendType.LAMBDA, model, pricing, profile)


def make_backend(kind: str, profile_path: str | Path | None, pricing: Pricing) -> Backend:
    """The backend `kind` with its profile (default: the shipped one for that backend).

    Raises BackendError saying how to measure one when the gpu backend has no profile.
    """
    if backend_type(kind) is BackendType.GPU:
        if profile_path is None and not DEFAULT_GPU_PROFILE.is_file():
            raise BackendError(GPU_PROFILE_HELP)
        _, model = load_profile(profile_path, backend="gpu")
    else:
        _, model = load_profile(profile_path, backend="cpu")
    source = str(profile_path) if profile_path is not None else (
        f"optimizer/profiles/{'gpu' if model.is_gpu else 'cpu'}.json")
    return backend_from_model(kind, model, pricing, source)
