"""Gears (CascadeServe, Kakolyris et al. 2024): one plan per load level, picked at run time from
the measured arrival rate with hysteresis. Pure: the caller passes `now_s` and the arrivals.

A gear set lives in a plan file's meta["gears"], so the Plan schema stays as it is and a plan
with gears is still a valid static plan (its top-level buffers; `mbs optimize --gears` writes
the best static plan there). Gears share the static plan's layout (buffer names, length ranges,
memory, dispatch mode, concurrency) and differ only in how batches form (max_batch_size,
timeout_ms, max_batch_tokens): a switch is then a change of batching alone, which a dispatcher
makes in-process and an SQS event source mapping through UpdateEventSourceMapping, while a
memory change would start new (cold) environments and a new layout new queues.
A gpu plan's gears also carry the fleet's bounds (min_instances, max_instances: FLEET_FIELDS),
which the dispatcher sets with Lambda's PutFunctionScalingConfig on a switch; the backend and
the instance type stay the plan's (one capacity provider). A level without them keeps the
plan's bounds, and a lambda plan's levels may not hold them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from buffers.plan import BackendType, Plan, PlanError

GEAR_FIELDS = ("max_batch_size", "timeout_ms", "max_batch_tokens")  # what a gear may change
FLEET_FIELDS = ("min_instances", "max_instances")  # and, on a gpu plan, its fleet's bounds
LAYOUT_FIELDS = ("name", "min_length", "max_length", "memory_mb", "dispatch_mode",
                 "max_concurrency")
PLAN_LAYOUT_FIELDS = ("backend", "instance_type")  # one backend and capacity provider


@dataclass(frozen=True)
class GearConfig:
    """Switching rule: up from gear i when the rate > up_rps[i], down to gear i from i+1 when
    the rate < down_rps[i], and no switch within min_dwell_s of the last one."""

    up_rps: tuple[float, ...]
    down_rps: tuple[float, ...]
    tau_s: float = 60.0  # time constant of the rate's exponentially weighted moving average
    min_dwell_s: float = 60.0
    initial_gear: int = 0
    initial_rps: float = 0.0

    def __post_init__(self) -> None:
        if len(self.up_rps) != len(self.down_rps):
            raise ValueError(f"up_rps and down_rps must have one entry per gear boundary, got "
                             f"{len(self.up_rps)} and {len(self.down_rps)}")
        for i, (up, down) in enumerate(zip(self.up_rps, self.down_rps, strict=True)):
            if not 0 <= down < up:
                raise ValueError(f"gear boundary {i} needs 0 <= down_rps < up_rps (hysteresis), "
                                 f"got down {down}, up {up}")
        for name in ("up_rps", "down_rps"):
            values = getattr(self, name)
            if list(values) != sorted(values):
                raise ValueError(f"{name} must be ascending, got {values}")
        if not (math.isfinite(self.tau_s) and self.tau_s > 0):
            raise ValueError(f"tau_s must be > 0, got {self.tau_s}")
        if not self.min_dwell_s >= 0:
            raise ValueError(f"min_dwell_s must be >= 0, got {self.min_dwell_s}")
        if not 0 <= self.initial_gear < self.gears:
            raise ValueError(f"initial_gear must be in 0..{self.gears - 1}, "
                             f"got {self.initial_gear}")
        if not self.initial_rps >= 0:
            raise ValueError(f"initial_rps must be >= 0, got {self.initial_rps}")

    @property
    def gears(self) -> int:
        return len(self.up_rps) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"up_rps": list(self.up_rps), "down_rps": list(self.down_rps),
                "tau_s": self.tau_s, "min_dwell_s": self.min_dwell_s,
                "initial_gear": self.initial_gear, "initial_rps": self.initial_rps}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GearConfig:
        return cls(up_rps=tuple(float(x) for x in raw["up_rps"]),
                   down_rps=tuple(float(x) for x in raw["down_rps"]),
                   tau_s=float(raw.get("tau_s", 60.0)),
                   min_dwell_s=float(raw.get("min_dwell_s", 60.0)),
                   initial_gear=int(raw.get("initial_gear", 0)),
                   initial_rps=float(raw.get("initial_rps", 0.0)))


class RateMeter:
    """The measured arrival rate: r <- r * exp(-dt / tau) + n / tau, an exponentially weighted
    moving average that is an unbiased rate estimate for a Poisson stream and needs no window
    of timestamps."""

    def __init__(self, tau_s: float, initial_rps: float = 0.0) -> None:
        self.tau_s = tau_s
        self.rate_rps = initial_rps
        self.last_s: float | None = None  # when it last observed (never earlier than before)

    def observe(self, now_s: float, arrivals: int = 1) -> float:
        """Count `arrivals` at now_s and return the rate just after them. A clock that steps
        back (a wall clock under NTP) counts as no time passing."""
        if arrivals < 0:
            raise ValueError(f"arrivals must be >= 0, got {arrivals}")
        if self.last_s is not None:
            now_s = max(now_s, self.last_s)
            self.rate_rps *= math.exp(-(now_s - self.last_s) / self.tau_s)
        self.last_s = now_s
        self.rate_rps += arrivals / self.tau_s
        return self.rate_rps


class GearSelector:
    """The active gear from the measured arrival rate (RateMeter), with hysteresis and dwell."""

    def __init__(self, config: GearConfig) -> None:
        self.config = config
        self.gear = config.initial_gear
        self.switches = 0
        self._meter = RateMeter(config.tau_s, config.initial_rps)
        self._switched_s = -math.inf

    @property
    def rate_rps(self) -> float:
        return self._meter.rate_rps

    def observe(self, now_s: float, arrivals: int = 1) -> int:
        """Count `arrivals` at now_s and return the gear they go to."""
        self._meter.observe(now_s, arrivals)
        now_s = self._meter.last_s
        if now_s - self._switched_s >= self.config.min_dwell_s:
            target = self._target()
            if target != self.gear:
                self.gear, self._switched_s = target, now_s
                self.switches += 1
        return self.gear

    def _target(self) -> int:
        cfg, gear = self.config, self.gear
        while gear < cfg.gears - 1 and self.rate_rps > cfg.up_rps[gear]:
            gear += 1
        if gear != self.gear:
            return gear
        while gear > 0 and self.rate_rps < cfg.down_rps[gear - 1]:
            gear -= 1
        return gear


@dataclass(frozen=True)
class GearSet:
    """One plan per gear (lowest load first) over one layout, and the switching rule."""

    plans: tuple[Plan, ...]
    config: GearConfig

    def __post_init__(self) -> None:
        if len(self.plans) != self.config.gears:
            raise ValueError(f"a gear set needs {self.config.gears} plans (one per gear), "
                             f"got {len(self.plans)}")
        for g, plan in enumerate(self.plans[1:], start=1):
            check_layout(self.plans[0], plan, f"gear {g}")

    def to_meta(self, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """meta["gears"]: the rule, and per gear its batching per buffer, a gpu plan's fleet
        bounds (+ `extra` fields)."""
        levels = []
        for g, plan in enumerate(self.plans):
            level: dict[str, Any] = {"buffers": [
                {"name": s.name, **{f: getattr(s, f) for f in GEAR_FIELDS}}
                for s in plan.buffers]}
            if plan.backend is BackendType.GPU:
                level.update({f: getattr(plan, f) for f in FLEET_FIELDS})
            levels.append({**(extra[g] if extra else {}), **level})
        return {"selector": self.config.to_dict(), "levels": levels}


def check_layout(base: Plan, other: Plan, where: str) -> None:
    """ValueError naming the first plan or buffer field where `other` leaves `base`'s layout."""
    for name in PLAN_LAYOUT_FIELDS:
        if getattr(base, name) != getattr(other, name):
            raise ValueError(f"{where}.{name} must equal the layout's {getattr(base, name)!r}, "
                             f"got {getattr(other, name)!r}")
    if len(other.buffers) != len(base.buffers):
        raise ValueError(f"{where} has {len(other.buffers)} buffers, the layout has "
                         f"{len(base.buffers)}")
    for i, (a, b) in enumerate(zip(base.buffers, other.buffers, strict=True)):
        for name in LAYOUT_FIELDS:
            if getattr(a, name) != getattr(b, name):
                raise ValueError(f"{where} buffers[{i}].{name} must equal the layout's "
                                 f"{getattr(a, name)!r}, got {getattr(b, name)!r}")


def gears_from_plan(plan: Plan) -> GearSet | None:
    """The gear set in plan.meta["gears"] (None if absent); PlanError names a bad value."""
    raw = plan.meta.get("gears")
    if raw is None:
        return None
    try:
        config = GearConfig.from_dict(raw["selector"])
        plans = []
        for g, level in enumerate(raw["levels"]):
            by_name = {b["name"]: b for b in level["buffers"]}
            specs = tuple(replace(s, **{f: by_name[s.name][f] for f in GEAR_FIELDS})
                          for s in plan.buffers)
            plans.append(replace(plan, buffers=specs, name=f"{plan.name}-gear{g}", meta={},
                                 **_level_fleet(plan, level, g)))
        return GearSet(tuple(plans), config)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"meta.gears is not a valid gear set: {exc!r}") from None


def _level_fleet(plan: Plan, level: dict[str, Any], g: int) -> dict[str, int]:
    """A level's fleet bounds (the plan's where it gives none); PlanError names a bad one.
    The gear's Plan then checks them as any gpu plan's (1 <= min <= max <= the limit)."""
    given = {f: level[f] for f in FLEET_FIELDS if f in level}
    if given and plan.backend is not BackendType.GPU:
        raise PlanError(f"levels[{g}] has {sorted(given)}, which apply to backend 'gpu' only; "
                        f"backend is {plan.backend.value!r}")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlanError(f"levels[{g}].{name} must be an integer, got {value!r}")
    try:
        replace(plan, buffers=plan.buffers, meta={}, **given)
    except PlanError as exc:
        raise PlanError(f"levels[{g}]: {exc}") from None
    return given
