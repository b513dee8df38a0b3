"""GPU instance types for Lambda Managed Instances, their GPUs' peaks, and the scaling rule.

LMI runs GPU-backed functions on EC2 instance types a capacity provider allows (AWS CDK
reference, aws_lambda.AcceleratorConfig: a capacity provider with g6.xlarge and a 24 GiB
AcceleratorMemorySize). This module holds the single-GPU types of the T4, A10G, L4 and L40S
classes, and the H100 the reference timings were taken on.

Scaling rule (a profile measured on GPU S, used for GPU T; the result is labelled an estimate):
- `launch_ms` is kept: the plateau is the host launching the eager pass's kernels, which the
  GPU's peak does not change.
- `per_token_ms` (the dense layers' matrix products, compute-bound past the knee) is multiplied
  by peak(S) / peak(T), the peak of the profile's dtype: FP16 tensor-core throughput for
  float16/bfloat16, FP32 (non-tensor) for float32, which torch runs without TF32 by default.
- `per_token_sq_ms` (eager self-attention: B x heads x L x L scores written, soft-maxed and
  read back, so memory traffic) is multiplied by bandwidth(S) / bandwidth(T).
- the transfer terms are kept: they cross the host link, not the GPU (at most a few MB a batch).
Peaks are dense (no structured sparsity). Each figure says where it was checked; "not checked
here" marks one this project could not confirm with its search tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from optimizer.platform.latency_model import GpuLatencyModel, model_from_dict

NOT_CHECKED = "not checked here"


@dataclass(frozen=True)
class GpuSpec:
    """One GPU's peaks, as its vendor lists them."""

    name: str
    fp16_tensor_tflops: float  # dense (without structured sparsity)
    fp32_tflops: float  # non-tensor
    memory_bandwidth_gbs: float
    memory_gib: int
    bf16: bool  # Turing (T4) has no bfloat16
    source: str

    def peak_tflops(self, dtype: str) -> float:
        """The peak that bounds a pass in `dtype` (see the module doc)."""
        if dtype == "float32":
            return self.fp32_tflops
        if dtype == "float16" or (dtype == "bfloat16" and self.bf16):
            return self.fp16_tensor_tflops
        raise ValueError(f"{self.name} has no {dtype!r} peak (float32, float16"
                         f"{', bfloat16' if self.bf16 else ''})")


@dataclass(frozen=True)
class GpuInstance:
    """An EC2 instance type with one GPU, and its on-demand price (Linux, us-east-1)."""

    instance_type: str
    gpu: GpuSpec
    on_demand_usd_per_hour: float
    price_source: str


GPUS = {
    # NVIDIA H100 SXM5 80GB (HBM3): 989.4 dense FP16 tensor, 66.9 FP32 TFLOPS
    # (glennklockwood.com/garden/processors/h100); 3,350 GB/s (NVIDIA's table as quoted at
    # archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html). The reference run's GPU.
    "H100 80GB HBM3": GpuSpec("NVIDIA H100 80GB HBM3", 989.4, 66.9, 3350.0, 80, True,
                              "glennklockwood.com H100 page; hpctech.co.jp H100 table"),
    # Tesla T4: 65 FP16 tensor, 8.1 FP32 TFLOPS, 320 GB/s, 16 GB (NVIDIA's launch figures as
    # quoted at sysrqmts.com/en/gpus/nvidia/tesla/t4 and geektopia.es).
    "T4": GpuSpec("Tesla T4", 65.0, 8.1, 320.0, 16, False,
                  "sysrqmts.com T4 page; geektopia.es T4 launch news"),
    # A10G (AWS's variant of the A10): 600 GB/s and 24 GB like the A10 (baseten.co, "NVIDIA A10
    # vs A10G for ML model inference"); its 70 FP16 tensor and 35 FP32 TFLOPS are that
    # article's table, which the search tool's excerpt did not show: not checked here.
    "A10G": GpuSpec("NVIDIA A10G", 70.0, 35.0, 600.0, 24, True,
                    f"baseten.co A10 vs A10G (bandwidth); TFLOPS {NOT_CHECKED}"),
    # L4: 242 FP16 tensor TFLOPS with sparsity, so 121 dense; 300 GB/s, 24 GB (NVIDIA's
    # figures as quoted at grokipedia.com/page/NVIDIA_L4_vs_L40S); 30.3 FP32 (fpsbench.com).
    "L4": GpuSpec("NVIDIA L4", 121.0, 30.3, 300.0, 24, True,
                  "grokipedia.com L4 vs L40S; fpsbench.com L4"),
    # L40S: 362.05 FP16 tensor (733 with sparsity), 91.6 FP32 TFLOPS, 864 GB/s, 48 GB
    # (NVIDIA's datasheet table as quoted at mullet.se, product 355414).
    "L40S": GpuSpec("NVIDIA L40S", 362.05, 91.6, 864.0, 48, True, "mullet.se L40/L40S table"),
}

INSTANCES = {
    # EC2 on-demand, Linux, us-east-1. g5.xlarge: $1.006/h (factualminds.com, "Amazon EC2
    # On-Demand Pricing ... (2026)", as Pricing.gpu_hour_usd). The others: not checked here
    # (the search tool found no page that quotes them); check aws.amazon.com/ec2/pricing.
    "g4dn.xlarge": GpuInstance("g4dn.xlarge", GPUS["T4"], 0.526, NOT_CHECKED),
    "g5.xlarge": GpuInstance("g5.xlarge", GPUS["A10G"], 1.006, "factualminds.com EC2 pricing"),
    "g6.xlarge": GpuInstance("g6.xlarge", GPUS["L4"], 0.8048, NOT_CHECKED),
    "g6e.xlarge": GpuInstance("g6e.xlarge", GPUS["L40S"], 1.861, NOT_CHECKED),
}


def _key(name: str) -> str:
    return re.sub(r"^(nvidia|tesla)\s+", "", name.strip().lower()).replace("tesla ", "")


def gpu_for_device_name(device_name: str) -> GpuSpec:
    """The GpuSpec a torch device name (e.g. 'NVIDIA H100 80GB HBM3', 'Tesla T4') means."""
    wanted = _key(device_name)
    for key, spec in GPUS.items():
        if wanted in (_key(key), _key(spec.name)):
            return spec
    raise ValueError(f"no peak figures for GPU {device_name!r}; known: "
                     f"{sorted(spec.name for spec in GPUS.values())}")


def instance(instance_type: str) -> GpuInstance:
    """The GpuInstance of an EC2 instance type; fails fast on anything unknown."""
    if instance_type not in INSTANCES:
        raise ValueError(f"Unknown GPU instance type: {instance_type!r}; known: "
                         f"{sorted(INSTANCES)}")
    return INSTANCES[instance_type]


def scale_model(model: GpuLatencyModel, target: GpuSpec) -> GpuLatencyModel:
    """`model` moved to `target` by the module's rule, labelled an estimate."""
    source = gpu_for_device_name(model.gpu_name)
    compute = source.peak_tflops(model.dtype) / target.peak_tflops(model.dtype)
    memory = source.memory_bandwidth_gbs / target.memory_bandwidth_gbs
    why = (f"scaled from {source.name} to {target.name} by peak {model.dtype} throughput "
           f"(x{compute:.2f}) and memory bandwidth (x{memory:.2f}), launch floor kept")
    if model.estimate:
        why += f"; the source was itself an estimate: {model.estimate}"
    return replace(model, gpu_name=target.name, per_token_ms=model.per_token_ms * compute,
                   per_token_sq_ms=model.per_token_sq_ms * memory, estimate=why)


def scale_profile(profile: dict[str, Any], instance_type: str) -> dict[str, Any]:
    """A GPU profile for `instance_type`, scaled from `profile`; its grid stays the source's."""
    target = instance(instance_type)
    source = model_from_dict(profile["latency_model"])
    if not isinstance(source, GpuLatencyModel):
        raise ValueError(f"only a GPU-form profile scales to another GPU, got a "
                         f"{profile['latency_model'].get('form', 'additive')!r} one "
                         f"measured on {profile.get('device_name')!r}")
    scaled = scale_model(source, target.gpu)
    kept = {k: v for k, v in profile.items() if k not in ("grid", "fit", "dtypes")}
    return {**kept, "device_name": target.gpu.name, "estimate": scaled.estimate,
            "instance": {"type": target.instance_type,
                         "on_demand_usd_per_hour": target.on_demand_usd_per_hour,
                         "price_source": target.price_source, "gpu_source": target.gpu.source},
            "scaled_from": {"device_name": profile.get("device_name"),
                            "latency_model": profile["latency_model"],
                            "fit": profile.get("fit"), "grid": profile.get("grid", [])},
            "grid": [], "fit": None, "latency_model": scaled.to_dict()}
