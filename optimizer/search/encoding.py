"""How a point of the search space becomes a valid Plan, and a Plan a point.

Every dimension is an integer index into a sorted tuple of choices (ordinal, so a Gaussian
process can model it smoothly), and a choice tuple with one value is a constant, not a dimension.

Encoding (`Encoding.decode`):
- `buffers` (1..max_buffers) and `cut1..cut{K-1}`: indices into the workload's boundary
  candidates (`boundary_candidates`). The first buffers-1 cuts are sorted and de-duplicated and
  become the buffers' upper bounds, so any point yields a contiguous cover of 1..256; two equal
  cuts merge two buffers (a plan with fewer buffers, never an invalid one).
- per buffer slot j (slot j serves the j-th length range after sorting): `batch{j}`,
  `timeout{j}`, `memory{j}`, and, where the space offers more than one, `tokens{j}`
  (max_batch_tokens) and `concurrency{j}`.
- managed mode: BatchSize <= 10 when the window is 0 (AWS Lambda developer guide, SQS event
  source mapping). `Encoding.valid` is the skopt Space constraint, so the GP never proposes
  such a point, and `decode` refuses one instead of repairing it: no invalid plan is ever
  evaluated.
- `layout` (gears): boundaries, names, memory and concurrency are fixed to the given buffers,
  and only batch size, timeout and token budget are searched.
- a gpu space (`instance_type` set): every plan has backend gpu on that type, and the plan-level
  dimensions `min_instances` and `max_instances` (where the space offers more than one) are the
  fleet's bounds; a ceiling under the floor is raised to it (a valid plan, as merged cuts are).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from buffers.plan import (
    MAX_BATCH_WITHOUT_WINDOW,
    MODEL_MAX_LENGTH,
    BackendType,
    BufferSpec,
    DispatchMode,
    Plan,
)
from optimizer.search.space import SearchSpace

BOUNDARY_QUANTILES = 32  # cut candidates: the workload's length quantiles at k/32 ...
BOUNDARY_STEP = 16  # ... and every 16 tokens, so sparse long ranges are cut finely too
# Searched per-buffer fields: dimension prefix -> (BufferSpec field, SearchSpace choices).
SLOT_FIELDS = {"batch": ("max_batch_size", "batch_sizes"),
               "timeout": ("timeout_ms", "timeouts_ms"),
               "tokens": ("max_batch_tokens", "batch_tokens"),
               "memory": ("memory_mb", "memories_mb"),
               "concurrency": ("max_concurrency", "concurrencies")}
_LAYOUT_FIXED = ("memory", "concurrency")  # a gear keeps its layout's memory and concurrency
FLEET_FIELDS = ("min_instances", "max_instances")  # a gpu plan's fleet bounds (plan fields)


def boundary_candidates(lengths: np.ndarray, max_length: int = MODEL_MAX_LENGTH) -> tuple[int, ...]:
    """Upper bounds a buffer may end at: length quantiles at k/32 and every 16 tokens, < max."""
    lens = np.asarray(lengths, dtype=np.int64)
    quantiles = np.quantile(lens, np.arange(1, BOUNDARY_QUANTILES) / BOUNDARY_QUANTILES,
                            method="inverted_cdf") if lens.size else np.zeros(0)
    grid = set(range(BOUNDARY_STEP, max_length, BOUNDARY_STEP)) | {int(q) for q in quantiles}
    return tuple(sorted(c for c in grid if 1 <= c < max_length))


@dataclass(frozen=True)
class Dimension:
    """One searched choice: a name and its choices (the search sees indices 0..n-1)."""

    name: str
    choices: tuple


def named_plan(specs: list[BufferSpec], mode: DispatchMode) -> Plan:
    """A plan from contiguous specs, each named by its length range."""
    return Plan(buffers=tuple(replace(s, name=f"len{s.min_length}-{s.max_length}",
                                      dispatch_mode=mode) for s in specs), name="mbs")


@dataclass(frozen=True)
class Encoding:
    """A SearchSpace over a workload's boundary candidates, as integer dimensions."""

    space: SearchSpace
    cuts: tuple[int, ...]
    dimensions: tuple[Dimension, ...]

    @classmethod
    def build(cls, space: SearchSpace, lengths: np.ndarray) -> Encoding:
        """The dimensions for this space; boundary candidates come from the workload."""
        cuts = space.boundaries or boundary_candidates(lengths)
        dims: list[Dimension] = []
        if space.layout is None and space.max_buffers > 1:
            dims.append(Dimension("buffers", tuple(range(1, space.max_buffers + 1))))
            dims += [Dimension(f"cut{j}", cuts) for j in range(1, space.max_buffers)]
        for j in range(cls._slots(space)):
            dims += [Dimension(f"{key}{j}", choices) for key, choices in cls._searched(space)]
        if space.instance_type is not None:
            dims += [Dimension(name, getattr(space, name)) for name in FLEET_FIELDS
                     if len(getattr(space, name)) > 1]
        return cls(space, cuts, tuple(dims))

    @staticmethod
    def _slots(space: SearchSpace) -> int:
        return len(space.layout) if space.layout else space.max_buffers

    @staticmethod
    def _searched(space: SearchSpace) -> list[tuple[str, tuple]]:
        """(prefix, choices) of the per-buffer fields with more than one choice."""
        return [(key, getattr(space, attr)) for key, (_, attr) in SLOT_FIELDS.items()
                if len(getattr(space, attr)) > 1
                and not (space.layout and key in _LAYOUT_FIXED)]

    @property
    def searched(self) -> list[tuple[str, tuple]]:
        """(prefix, choices) of this space's per-buffer fields with more than one choice."""
        return self._searched(self.space)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def values(self, point: Sequence[int]) -> dict[str, object]:
        """Each dimension's chosen value (not its index)."""
        return {d.name: d.choices[int(i)] for d, i in zip(self.dimensions, point, strict=True)}

    def _slot(self, values: dict[str, object], key: str, j: int) -> object:
        return values.get(f"{key}{j}", getattr(self.space, SLOT_FIELDS[key][1])[0])

    def valid(self, point: Sequence[int]) -> bool:
        """Managed mode's rule in every slot: BatchSize <= 10 when the window is 0 s."""
        if self.space.mode is not DispatchMode.MANAGED:
            return True
        values = self.values(point)
        return all(self._slot(values, "timeout", j) != 0
                   or self._slot(values, "batch", j) <= MAX_BATCH_WITHOUT_WINDOW
                   for j in range(self._slots(self.space)))

    def decode(self, point: Sequence[int]) -> Plan:
        """The Plan this point describes; ValueError if it breaks the mode's rules."""
        if not self.valid(point):
            raise ValueError(f"point {list(point)} breaks managed mode's rule: BatchSize <= "
                             f"{MAX_BATCH_WITHOUT_WINDOW} when the window is 0 s")
        values = self.values(point)
        if self.space.layout is not None:
            bases = list(self.space.layout)
        else:
            count = int(values.get("buffers", 1))
            uppers = [*sorted({int(values[f"cut{j}"]) for j in range(1, count)}),
                      MODEL_MAX_LENGTH]
            lowers = [1, *(u + 1 for u in uppers[:-1])]
            bases = [BufferSpec("b", lo, hi, 1, 0, self.space.memories_mb[0])
                     for lo, hi in zip(lowers, uppers, strict=True)]
        specs = [replace(base, **{field: self._slot(values, key, j)
                                  for key, (field, _) in SLOT_FIELDS.items()
                                  if not (self.space.layout and key in _LAYOUT_FIXED)})
                 for j, base in enumerate(bases)]
        if self.space.layout is not None:
            plan = Plan(buffers=tuple(specs), name="mbs")
        else:
            plan = named_plan(specs, self.space.mode)
        return self._fleet(plan, values)

    def _fleet(self, plan: Plan, values: dict[str, object]) -> Plan:
        """A gpu space's plan on its instance type and bounds; a lambda space's unchanged."""
        if self.space.instance_type is None:
            return plan
        low, high = (int(values.get(name, getattr(self.space, name)[0])) for name in FLEET_FIELDS)
        return replace(plan, backend=BackendType.GPU, instance_type=self.space.instance_type,
                       min_instances=low, max_instances=max(high, low))

    def encode(self, plan: Plan) -> list[int] | None:
        """A point that decodes to `plan`, or None if the plan is outside this space."""
        if plan.instance_type != self.space.instance_type:
            return None  # another backend or instance type
        values: dict[str, object] = {name: getattr(plan, name) for name in FLEET_FIELDS}
        if self.space.layout is None and self.space.max_buffers > 1:
            if len(plan.buffers) > self.space.max_buffers:
                return None
            uppers = [s.max_length for s in plan.buffers[:-1]] or [self.cuts[0]]
            values["buffers"] = len(plan.buffers)
            values.update({f"cut{j}": uppers[min(j, len(uppers)) - 1]
                           for j in range(1, self.space.max_buffers)})
        for j, spec in enumerate(plan.buffers):
            values.update({f"{key}{j}": getattr(spec, field)
                           for key, (field, _) in SLOT_FIELDS.items()})
        point = []
        for dim in self.dimensions:
            value = values.get(dim.name, dim.choices[0])
            if value not in dim.choices:
                return None
            point.append(dim.choices.index(value))
        return point if self.valid(point) else None

    def fastest(self) -> list[int]:
        """One buffer (or the layout) at the smallest batch and timeout and the most memory and
        concurrency: the lowest-latency point, a feasible start whenever any plan is."""
        top = {"memory", "concurrency", *FLEET_FIELDS}
        return [len(d.choices) - 1 if d.name.rstrip("0123456789") in top else 0
                for d in self.dimensions]

    def grid(self) -> Iterator[list[int]]:
        """Every valid point (for exhaustive enumeration of small spaces)."""
        for point in itertools.product(*(range(len(d.choices)) for d in self.dimensions)):
            if self.valid(point):
                yield list(point)
