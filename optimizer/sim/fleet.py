"""Starts batches on a gpu plan's fleet (Lambda Managed Instances) and records them.

The Launcher's interface (optimizer/sim/launcher.py), so every policy and the engine run a gpu
plan unchanged, with the fleet in place of per-buffer Lambda environments:
- one fleet serves every buffer, as the template's one GPU function does
  (infra/aws/template/gpu.py); each buffer also keeps the dispatcher's max_concurrency cap;
- one process per instance owns its GPU (PerExecutionEnvironmentMaxConcurrency 1, the
  template's default), so an instance runs one batch at a time. Why not K processes sharing
  the GPU: without MPS, CUDA time-slices kernels of separate processes, so once a batch is
  compute-bound K concurrent batches each take about K times as long, and in the launch-bound
  plateau a larger batch buys the same throughput as a second process without a second copy of
  the model and CUDA context in GPU memory. The slowdown of sharing was not measured (no GPU
  was lent to this work), so it is not modelled;
- no cold starts: an instance serves once launched and initialised, launch_s after its
  scale-out decision (optimizer/platform/lmi_scaling.py);
- scaling decisions every tick from the GPU-busy time booked in the past windows. A batch that
  finds every serving instance busy waits for the first to free or for a launched one to come
  up (AWS would throttle the invoke; the dispatcher retries it), so a burst meets the fleet
  that was there.
A size_timeout run is replayed batch by batch (optimizer/sim/bulk.py, launch_columns: the same
bookings in the same order, tests/test_sim_bulk.py), so an 8.8M-request hour takes seconds.
Bookings are a reservation calendar like lambda_rules.InstancePool: launches come in
non-decreasing `now_s`, an instance's busy-until is known when it is booked, and a decision at
a tick sees exactly the busy time booked before it (work not yet started is in later bins).
A batch held back by its buffer's cap moves the fleet's clock to when it may start, so a
decision in between may miss another buffer's batch booked after it; the cap rarely binds, as
the gpu search sets it at the fleet's ceiling (optimizer/search/gpu.py).
Each instance's lifetime (launch decision to retirement or run end) is recorded; their sum is
the instance-seconds billed (optimizer/platform/gpu_cost.py).
With gears (buffers/gears.py), the fleet starts at the initial gear's bounds and takes each
switch's bounds at its time (`bound_switches`, in time order with the decisions), as the
dispatcher's PutFunctionScalingConfig does: a raised floor launches the missing instances at
once (serving launch_s later, billed from the switch); a lowered floor or ceiling leaves the
next decisions to retire the surplus, idle instances first, as scale-in does.
Only online (dispatcher-mode) buffers run on the fleet: a gpu plan's bulk path stays on CPU
Lambda (ARCHITECTURE.md, "The gpu backend on AWS"), with another service time, so simulate those
buffers as a lambda plan of their own.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from buffers.gears import GearSelector, GearSet
from buffers.plan import DispatchMode, Plan
from buffers.types import ServiceTime
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.lmi_scaling import FleetBounds, ScalingRules, scale_decision
from optimizer.sim.launcher import cached_service_ms


class FleetLauncher:
    """Starts batches on a shared GPU fleet and records them and the fleet's lifetimes."""

    def __init__(self, plan: Plan, service_ms: ServiceTime, rules: LambdaRules,
                 scaling: ScalingRules | None = None, initial: FleetBounds | None = None,
                 switches: Sequence[tuple[float, FleetBounds]] = ()) -> None:
        self.bounds = initial or FleetBounds.of(plan)
        self._switches = sorted(switches, key=lambda s: s[0])  # (time_s, bounds) still to take
        self._next_switch = 0
        managed = [s.name for s in plan.buffers if s.dispatch_mode is DispatchMode.MANAGED]
        if managed:
            raise ValueError(f"buffers {managed} are managed (bulk path, CPU Lambda); the GPU "
                             f"fleet runs a gpu plan's online (dispatcher-mode) buffers only")
        self.scaling = scaling or ScalingRules()
        self.memory_mb = [spec.memory_mb for spec in plan.buffers]
        self.rules = rules
        self._caps = [spec.max_concurrency for spec in plan.buffers]
        self._buffer_busy: list[list[float]] = [[] for _ in plan.buffers]
        self._service_ms = service_ms
        self._service_cache: dict[tuple[int, int, int], float] = {}
        self.last_service_ms = 0.0
        self.order: list[int] = []
        self.exposed: list[int] = []  # managed mode only; a gpu plan's buffers are online
        self.rows: list[tuple[int, int, int, float, float, float, bool, int]] = []
        self.instance_of: list[int] = []  # per row, the instance that ran it
        self.lifetimes: list[list[float]] = []  # per instance [launched_s, retired_s or inf]
        self._free: list[tuple[float, int]] = []  # serving instances: (busy-until, id)
        self._pending: list[tuple[float, int]] = []  # launched, not yet serving: (ready_s, id)
        self._busy_bins: dict[int, float] = {}  # tick index -> GPU-busy seconds booked in it
        self._next_tick = 1
        for _ in range(self.bounds.min_instances):
            self._free.append((0.0, self._new_instance(0.0)))
        heapq.heapify(self._free)
        self.finished_s: float | None = None

    def _new_instance(self, launched_s: float) -> int:
        self.lifetimes.append([launched_s, math.inf])
        return len(self.lifetimes) - 1

    def _service(self, buffer: int, size: int, padded_length: int) -> float:
        return cached_service_ms(self._service_ms, self._service_cache,
                                 (size, padded_length, self.memory_mb[buffer]))

    def launch(self, buffer: int, members: Sequence[int], padded_length: int | float,
               now_s: float, service_length: int | None = None) -> float:
        """Run `members` as one invocation ready at now_s on the fleet; returns its end
        (service_length as in Launcher.launch: a ragged batch's modelled length)."""
        if self.finished_s is not None:
            raise RuntimeError("launch after finish")
        service_ms = self._service(buffer, len(members),
                                   padded_length if service_length is None else service_length)
        self.last_service_ms = service_ms
        self.order.extend(members)
        return self._run(buffer, len(members), padded_length, now_s, service_ms)

    def launch_columns(self, buffer: np.ndarray, members: np.ndarray, size: np.ndarray,
                       padded_length: np.ndarray, ready_s: np.ndarray) -> None:
        """launch() for many batches at once, given as columns in the event loop's launch
        order (optimizer/sim/bulk.py): the same bookings, in the same order, so the same
        fleet, rows and lifetimes, with each distinct (size, length) looked up once."""
        if self.finished_s is not None:
            raise RuntimeError("launch after finish")
        memory = np.asarray(self.memory_mb, dtype=np.int64)[buffer]
        keys = np.stack((size, padded_length, memory), axis=1)
        codes, inverse = np.unique(keys, axis=0, return_inverse=True)
        table = [cached_service_ms(self._service_ms, self._service_cache, (b, n, m))
                 for b, n, m in codes.tolist()]
        service = np.asarray(table, dtype=np.float64)[inverse.reshape(-1)].tolist()
        for index, count, length, now_s, service_ms in zip(
                buffer.tolist(), size.tolist(), padded_length.tolist(), ready_s.tolist(),
                service, strict=True):
            self._run(index, count, length, now_s, service_ms)
        if service:
            self.last_service_ms = service[-1]
        # an array, as Launcher.launch_columns leaves it (the engine reads it with np.asarray)
        self.order = np.concatenate((np.asarray(self.order, dtype=np.int64), members))

    def _run(self, buffer: int, size: int, padded_length: int | float, now_s: float,
             service_ms: float) -> float:
        """Book one batch ready at now_s: its buffer's cap, then the first free instance."""
        start_s, instance_id = self._instance_slot(self._buffer_slot(buffer, now_s))
        end_s = start_s + service_ms / 1000.0
        heapq.heappush(self._free, (end_s, instance_id))
        heapq.heappush(self._buffer_busy[buffer], end_s)
        self._book(start_s, end_s)
        # LMI bills no duration (optimizer/platform/gpu_cost.py): billed_ms is 0 per invocation.
        self.rows.append((buffer, size, padded_length, start_s, service_ms, service_ms, False,
                          0))
        self.instance_of.append(instance_id)
        return end_s

    def _buffer_slot(self, buffer: int, now_s: float) -> float:
        """When the dispatcher may invoke for `buffer`: under its max_concurrency in flight."""
        busy = self._buffer_busy[buffer]
        while busy and busy[0] <= now_s:
            heapq.heappop(busy)
        if len(busy) < self._caps[buffer]:
            return now_s
        return heapq.heappop(busy)

    def _instance_slot(self, ready_s: float) -> tuple[float, int]:
        """The first serving instance free at or after ready_s, scaling as time passes."""
        t = ready_s
        self._advance(t)
        while self._free[0][0] > t:
            # Every serving instance is busy past t: step to the next moment that can change
            # that (a decision, an instance coming up, or the first to free).
            nxt = min(self._free[0][0], self._next_tick * self.scaling.tick_s,
                      self._pending[0][0] if self._pending else math.inf)
            t = max(t, nxt)
            self._advance(t)
        _, instance_id = heapq.heappop(self._free)
        return t, instance_id

    def _book(self, start_s: float, end_s: float) -> None:
        tick = self.scaling.tick_s
        k = int(start_s // tick)
        while start_s < end_s:
            edge = min(end_s, (k + 1) * tick)
            self._busy_bins[k] = self._busy_bins.get(k, 0.0) + (edge - start_s)
            start_s, k = edge, k + 1

    def _advance(self, t: float) -> None:
        """Bring instances up, take gear bounds and every scaling decision due by t, in time
        order (at one time: instances up, then bounds, then the decision)."""
        tick = self.scaling.tick_s
        while True:
            decision_s = self._next_tick * tick
            ready_s = self._pending[0][0] if self._pending else math.inf
            switch_s = self._switches[self._next_switch][0] \
                if self._next_switch < len(self._switches) else math.inf
            if min(decision_s, ready_s, switch_s) > t:
                return
            if ready_s <= min(decision_s, switch_s):
                heapq.heappush(self._free, heapq.heappop(self._pending))
            elif switch_s <= decision_s:
                self._switch(*self._switches[self._next_switch])
                self._next_switch += 1
            else:
                self._decide(self._next_tick)
                self._next_tick += 1

    def _switch(self, now_s: float, bounds: FleetBounds) -> None:
        """A gear's bounds from now_s: launch up to a raised floor; retire nothing here."""
        self.bounds = bounds
        missing = bounds.min_instances - len(self._free) - len(self._pending)
        for _ in range(missing):
            heapq.heappush(self._pending, (now_s + self.scaling.launch_s,
                                           self._new_instance(now_s)))

    def _window_busy(self, k: int, window_s: float) -> tuple[float, float]:
        ticks = min(self.scaling.window_ticks(window_s), k)
        busy = sum(self._busy_bins.get(j, 0.0) for j in range(k - ticks, k))
        return busy, ticks * self.scaling.tick_s

    def _decide(self, k: int) -> None:
        now_s = k * self.scaling.tick_s
        out_busy, out_window = self._window_busy(k, self.scaling.scale_out_window_s)
        in_busy, in_window = self._window_busy(k, self.scaling.scale_in_window_s)
        change = scale_decision(out_busy, out_window, in_busy, in_window, len(self._free),
                                len(self._pending), self.scaling, self.bounds)
        for _ in range(change):
            ready = now_s + self.scaling.launch_s
            heapq.heappush(self._pending, (ready, self._new_instance(now_s)))
        while change < 0 and self._free[0][0] <= now_s:
            _, instance_id = heapq.heappop(self._free)  # idle longest: retire it
            self.lifetimes[instance_id][1] = now_s
            change += 1

    def finish(self, end_s: float) -> None:
        """End the run at end_s (>= every batch's end): decisions up to it, then retire all."""
        last = max((row[3] + row[4] / 1000.0 for row in self.rows), default=0.0)
        if end_s < last:
            raise ValueError(f"end_s {end_s} is before the last batch ends ({last})")
        self._advance(end_s)
        for life in self.lifetimes:
            life[1] = min(life[1], end_s)
        self.finished_s = end_s

    def instance_seconds(self) -> float:
        """The fleet's billed instance-seconds: the sum of its lifetimes (after finish)."""
        if self.finished_s is None:
            raise RuntimeError("instance_seconds before finish")
        return float(sum(retired - launched for launched, retired in self.lifetimes))


def bound_switches(arrivals_s: np.ndarray, gears: GearSet
                   ) -> tuple[FleetBounds, list[tuple[float, FleetBounds]]]:
    """A gpu gear set's fleet bounds over a trace: the initial gear's, then (time, bounds) at
    each switch that changes them, replaying the GearSelector the batcher runs over the same
    arrivals (buffers/geared.py), so the fleet and the batching switch at the same arrival."""
    bounds = [FleetBounds.of(plan) for plan in gears.plans]
    selector = GearSelector(gears.config)
    current = bounds[selector.gear]
    initial, switches = current, []
    if len(set(bounds)) == 1:
        return initial, switches  # batching gears over one fleet: no pass over the trace
    for t in np.asarray(arrivals_s, dtype=np.float64).tolist():
        new = bounds[selector.observe(t)]
        if new != current:
            switches.append((t, new))
            current = new
    return initial, switches
