"""The gpu backend's fleet: the GPU instance types the template knows, and what a plan's fleet
bounds become on Lambda Managed Instances (one execution environment per GPU instance)."""

from __future__ import annotations

from dataclasses import dataclass

from buffers.plan import Plan
from infra.aws.template.common import RenderError, RenderOptions

# "Valid values: 3, 6, 12, 16, 24, or 48" (SAM developer guide, "AcceleratorConfig"; Lambda API
# reference, "AcceleratorConfig"): the minimum GiB of each accelerator's memory exposed to an
# execution environment.
ACCELERATOR_MEMORY_GIB = (3, 6, 12, 16, 24, 48)
# MaxVCpuCount is 2-15,000 (CloudFormation, "AWS::Lambda::CapacityProvider
# CapacityProviderScalingConfig").
MAX_VCPU_COUNT = 15_000


@dataclass(frozen=True)
class GpuInstance:
    """One single-GPU EC2 instance type: what the template sizes the fleet and function by."""

    vcpus: int
    memory_gib: int
    gpu: str
    gpu_memory_gib: int  # nominal, as AWS lists it (an L4 is "24 GB")


# Single-GPU sizes of the families the issue names (T4, A10G, L4, L40S), from the Amazon EC2
# accelerated computing instance specifications. Which of them LMI offers in a region is on the
# AWS Lambda pricing page ("Lambda Managed Instances"); the CDK's AcceleratorConfig example runs
# on g6.xlarge.
GPU_INSTANCES: dict[str, GpuInstance] = {
    "g4dn.xlarge": GpuInstance(4, 16, "T4", 16),
    "g4dn.2xlarge": GpuInstance(8, 32, "T4", 16),
    "g4dn.4xlarge": GpuInstance(16, 64, "T4", 16),
    "g5.xlarge": GpuInstance(4, 16, "A10G", 24),
    "g5.2xlarge": GpuInstance(8, 32, "A10G", 24),
    "g5.4xlarge": GpuInstance(16, 64, "A10G", 24),
    "g6.xlarge": GpuInstance(4, 16, "L4", 24),
    "g6.2xlarge": GpuInstance(8, 32, "L4", 24),
    "g6.4xlarge": GpuInstance(16, 64, "L4", 24),
    "g6e.xlarge": GpuInstance(4, 32, "L40S", 48),
    "g6e.2xlarge": GpuInstance(8, 64, "L40S", 48),
    "g6e.4xlarge": GpuInstance(16, 128, "L40S", 48),
}


def gpu_instance(instance_type: str) -> GpuInstance:
    """The catalogued instance type; RenderError names it and lists the known ones."""
    try:
        return GPU_INSTANCES[instance_type]
    except KeyError:
        raise RenderError(f"instance_type {instance_type!r} is not a GPU instance type the "
                          f"template knows; choose from {sorted(GPU_INSTANCES)}") from None


def accelerator_memory_gib(instance: GpuInstance) -> int:
    """The whole GPU for one execution environment: the largest valid size within its memory."""
    return max(g for g in ACCELERATOR_MEMORY_GIB if g <= instance.gpu_memory_gib)


@dataclass(frozen=True)
class Fleet:
    """What the plan's fleet bounds become: one execution environment per GPU instance."""

    instance_type: str
    instance: GpuInstance
    min_instances: int
    max_instances: int

    @property
    def max_vcpus(self) -> int:
        return self.max_instances * self.instance.vcpus


def fleet_of(plan: Plan, opts: RenderOptions) -> Fleet:
    """The plan's fleet, checked against the instance type and LMI's limits."""
    if plan.instance_type is None or plan.max_instances is None:
        raise RenderError(f"plan {plan.name!r} has backend {plan.backend.value!r}; only gpu "
                          f"plans (with instance_type and max_instances) have a fleet")
    instance = gpu_instance(plan.instance_type)
    fleet = Fleet(plan.instance_type, instance, plan.min_instances, plan.max_instances)
    if fleet.max_vcpus > MAX_VCPU_COUNT:
        raise RenderError(f"max_instances {plan.max_instances} x {instance.vcpus} vCPUs of "
                          f"{plan.instance_type} is {fleet.max_vcpus} vCPUs, over the capacity "
                          f"provider's MaxVCpuCount limit {MAX_VCPU_COUNT}")
    if opts.gpu_vcpus > instance.vcpus or opts.gpu_memory_mb / 1024 > instance.memory_gib:
        raise RenderError(f"the GPU function's {opts.gpu_memory_mb} MB at "
                          f"{opts.gpu_memory_gib_per_vcpu:g} GiB per vCPU does not fit one "
                          f"{plan.instance_type} ({instance.vcpus} vCPUs, "
                          f"{instance.memory_gib} GiB)")
    return fleet
