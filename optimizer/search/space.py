"""What the plan search may choose: the choices per plan field, and grids spanning given ranges.

Every choice is a sorted tuple; a tuple with one value is a constant, not a dimension of the
search (optimizer/search/encoding.py turns a space into integer dimensions).
- managed mode: the window is whole seconds (the timeout choices are validated to be) and
  BatchSize <= 10 when the window is 0 (AWS Lambda developer guide, SQS event source mapping).
- `layout` (gears): boundaries, names, memory and concurrency are fixed to the given buffers,
  and only batch size, timeout and token budget are searched.
- `instance_type` (the gpu backend): plans run on a fleet of that type (optimizer/search/gpu.py
  searches each type of the catalogue), and the fleet's bounds `min_instances` and
  `max_instances` are searched with the buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from buffers.plan import (
    DEFAULT_MIN_INSTANCES,
    MAX_BATCH_WITHOUT_WINDOW,
    MAX_DISPATCHER_BATCH,
    MAX_FLEET_INSTANCES,
    MAX_MANAGED_BATCH,
    MAX_WINDOW_S,
    MIN_CONCURRENCY,
    MODEL_MAX_LENGTH,
    BufferSpec,
    DispatchMode,
    Plan,
)
from optimizer.platform.gpu_instances import instance

# Lambda memory in vCPU steps (1,769 MB = 1 vCPU; AWS Lambda docs, "Memory and computing
# power"), from 1,024 MB (a time slice of one core) to the 10,240 MB maximum.
LAMBDA_MEMORIES_MB = (1024, 1769, 2654, 3538, 5307, 7076, 8845, 10240)
# Batch sizes, about 1.25-1.5x apart; 10 is kept because it is managed mode's cap at window 0.
BATCH_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160,
                192, 256, 384, 512, 768, 1024)
DISPATCHER_TIMEOUTS = 24  # timeout choices: 0 ms and this many - 1 geometric steps to the top
TIMEOUT_STEP_MS = 5  # dispatcher timeouts are rounded to this
DEFAULT_CONCURRENCY = 4  # the shipped plans' MaximumConcurrency


@dataclass(frozen=True)
class SearchSpace:
    """The choices a plan search may make, as sorted tuples (one value: fixed)."""

    mode: DispatchMode = DispatchMode.DISPATCHER
    max_buffers: int = 4
    arch: str = "x86"
    memories_mb: tuple[int, ...] = LAMBDA_MEMORIES_MB
    batch_sizes: tuple[int, ...] = BATCH_LADDER[:16]
    timeouts_ms: tuple[int, ...] = (0, 50, 100, 200, 400)
    batch_tokens: tuple[int | None, ...] = (None,)  # None: no padded-token budget
    concurrencies: tuple[int, ...] = (DEFAULT_CONCURRENCY,)
    layout: tuple[BufferSpec, ...] | None = None  # fixed boundaries and memory (gears)
    boundaries: tuple[int, ...] | None = None  # cut candidates (None: from the workload)
    instance_type: str | None = None  # the gpu backend's instance type; None: lambda
    min_instances: tuple[int, ...] = (DEFAULT_MIN_INSTANCES,)  # gpu: the fleet's floor
    max_instances: tuple[int, ...] = (DEFAULT_MIN_INSTANCES,)  # gpu: the fleet's ceiling

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", DispatchMode(self.mode))
        if not 1 <= self.max_buffers <= MODEL_MAX_LENGTH:
            raise ValueError(f"max_buffers must be in 1..{MODEL_MAX_LENGTH}, "
                             f"got {self.max_buffers}")
        if self.arch not in ("x86", "arm64"):
            raise ValueError(f"arch must be 'x86' or 'arm64', got {self.arch!r}")
        for name in ("memories_mb", "batch_sizes", "timeouts_ms", "concurrencies"):
            _check_sorted(name, getattr(self, name))
        tokens = [t for t in self.batch_tokens if t is not None]
        if not self.batch_tokens or tokens != sorted(set(tokens)) or \
                self.batch_tokens.count(None) > 1 or (None in self.batch_tokens
                                                       and self.batch_tokens[0] is not None):
            raise ValueError(f"batch_tokens must be None then ascending ints, got "
                             f"{self.batch_tokens}")
        if tokens and tokens[0] < MODEL_MAX_LENGTH:
            raise ValueError(f"batch_tokens must be >= {MODEL_MAX_LENGTH} (a buffer may hold "
                             f"the longest request), got {tokens[0]}")
        if self.concurrencies[0] < MIN_CONCURRENCY:
            raise ValueError(f"concurrencies must be >= {MIN_CONCURRENCY}, got "
                             f"{self.concurrencies[0]}")
        self._check_mode()
        if self.boundaries is not None:
            _check_sorted("boundaries", self.boundaries)
            if not 1 <= self.boundaries[0] <= self.boundaries[-1] < MODEL_MAX_LENGTH:
                raise ValueError(f"boundaries must lie in 1..{MODEL_MAX_LENGTH - 1}, got "
                                 f"{self.boundaries}")
        if self.layout is not None:
            Plan(buffers=tuple(self.layout))  # the layout must itself be a valid cover
        self._check_fleet()

    def _check_fleet(self) -> None:
        for name in ("min_instances", "max_instances"):
            _check_sorted(name, getattr(self, name))
            if not 1 <= getattr(self, name)[0] <= getattr(self, name)[-1] <= MAX_FLEET_INSTANCES:
                raise ValueError(f"{name} must lie in 1..{MAX_FLEET_INSTANCES}, got "
                                 f"{getattr(self, name)}")
        if self.instance_type is None:
            return
        instance(self.instance_type)  # fails fast on a type outside the catalogue
        if self.mode is not DispatchMode.DISPATCHER:
            raise ValueError(f"a gpu space's buffers are dispatched online (dispatcher mode), "
                             f"got {self.mode.value!r}")
        if self.max_instances[-1] < self.min_instances[0]:
            raise ValueError(f"max_instances must reach min_instances {self.min_instances[0]}, "
                             f"got {self.max_instances}")

    def _check_mode(self) -> None:
        if self.mode is DispatchMode.DISPATCHER:
            if self.batch_sizes[-1] > MAX_DISPATCHER_BATCH:
                raise ValueError(f"batch_sizes must be <= {MAX_DISPATCHER_BATCH} in dispatcher "
                                 f"mode, got {self.batch_sizes[-1]}")
            return
        odd = [t for t in self.timeouts_ms if t % 1000 or t > MAX_WINDOW_S * 1000]
        if odd:
            raise ValueError(f"managed timeouts_ms must be whole seconds 0..{MAX_WINDOW_S} s, "
                             f"got {odd}")
        if self.batch_sizes[-1] > MAX_MANAGED_BATCH:
            raise ValueError(f"batch_sizes must be <= {MAX_MANAGED_BATCH} in managed mode, "
                             f"got {self.batch_sizes[-1]}")
        if self.timeouts_ms[0] == 0 and self.batch_sizes[0] > MAX_BATCH_WITHOUT_WINDOW:
            raise ValueError(f"managed mode with a 0 s window needs a batch size <= "
                             f"{MAX_BATCH_WITHOUT_WINDOW}, got smallest {self.batch_sizes[0]}")


def _check_sorted(name: str, values: tuple[int, ...]) -> None:
    if not values or list(values) != sorted(set(values)) or values[0] < 0:
        raise ValueError(f"{name} must be non-empty, ascending, distinct and >= 0, got {values}")


def make_space(mode: str = "dispatcher", max_buffers: int = 4, arch: str = "x86", *,
               slo_ms: float = 1000.0, batch_range: tuple[int, int] = (1, 64),
               timeout_range_ms: tuple[int, int] | None = None,
               memory_range_mb: tuple[int, int] = (1024, 10240),
               max_batch_tokens: Sequence[int] | None = None,
               concurrencies: Sequence[int] = (DEFAULT_CONCURRENCY,)) -> SearchSpace:
    """A SearchSpace on grids spanning the given ranges.

    Timeouts default to 0..slo_ms (dispatcher: 0 then geometric steps of 5 ms resolution;
    managed: whole seconds 0..ceil(slo/1 s), at most 300). max_batch_tokens: budgets to try
    besides none.
    """
    mode_enum = DispatchMode(mode)
    lo_b, hi_b = batch_range
    if not 1 <= lo_b <= hi_b:
        raise ValueError(f"batch_range must be 1 <= lo <= hi, got {batch_range}")
    batches = tuple(sorted({b for b in BATCH_LADDER if lo_b <= b <= hi_b} | {lo_b, hi_b}))
    lo_m, hi_m = memory_range_mb
    memories = tuple(sorted({m for m in LAMBDA_MEMORIES_MB if lo_m <= m <= hi_m} | {lo_m, hi_m}))
    if mode_enum is DispatchMode.MANAGED:
        top_s = min(MAX_WINDOW_S, max(1, math.ceil(slo_ms / 1000.0)))
        lo_t, hi_t = timeout_range_ms or (0, top_s * 1000)
        timeouts = tuple(range(math.ceil(lo_t / 1000) * 1000, hi_t + 1, 1000))
    else:
        lo_t, hi_t = timeout_range_ms or (0, int(slo_ms))
        steps = np.geomspace(max(lo_t, 10), max(hi_t, 10), DISPATCHER_TIMEOUTS - 1)
        rounded = {int(round(t / TIMEOUT_STEP_MS) * TIMEOUT_STEP_MS) for t in steps}
        timeouts = tuple(sorted({lo_t, hi_t} | {t for t in rounded if lo_t <= t <= hi_t}))
    tokens = (None, *sorted(set(max_batch_tokens))) if max_batch_tokens else (None,)
    return SearchSpace(mode=mode_enum, max_buffers=max_buffers, arch=arch, memories_mb=memories,
                       batch_sizes=batches, timeouts_ms=timeouts, batch_tokens=tokens,
                       concurrencies=tuple(sorted(set(concurrencies))))
