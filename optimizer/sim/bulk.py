"""Size-or-timeout batching replayed batch by batch, not request by request: the same launches
as the event loop, so that a superposed 1000x trace (8.8M requests) simulates in seconds.

Why it is exact. Under the size_timeout policy in dispatcher mode (no gears, no hold, no token
budget) a buffer's batches do not depend on its instances: a batch opens at an arrival, takes
every later arrival of its buffer up to max_batch_size, and closes at its B-th member's arrival
(full) or at opener + timeout (the event loop lets arrivals win ties, so an arrival at the due
time still joins). So each buffer's batches follow from its arrival times alone: the next
opener is min(i + B, first arrival after due_i). The instance pools then see each buffer's
batches in time order, as the loop hands them over (Launcher.launch_columns), and the rows are
put in the loop's order: by launch time, arrivals before timers at the same time, arrivals by
index, timers in the order they were pushed (by the arrival that armed them; a buffer re-arms
only when its next due differs, buffered.py's _arm). tests/test_sim_bulk.py checks every field
against the event loop.
"""

from __future__ import annotations

import numpy as np

from buffers.plan import DispatchMode
from buffers.policies import PolicyType
from optimizer.sim.policy import FollowUps, PolicyInputs

_ARRIVAL, _TIMER = 0, 1  # which event launches a batch, for the loop's order at equal times


def bulk_eligible(inputs: PolicyInputs) -> bool:
    """Whether a run's batches follow from its arrivals alone (module docstring)."""
    return (inputs.name == PolicyType.SIZE_TIMEOUT.value and inputs.gears is None
            and not inputs.options.hold_when_busy and _launches_in_columns(inputs.launcher)
            and all(spec.dispatch_mode is DispatchMode.DISPATCHER
                    and spec.max_batch_tokens is None for spec in inputs.plan.buffers))


def _launches_in_columns(launcher: object) -> bool:
    """Whether the launcher's launch_columns is its launch's twin: both defined by one class,
    so that a launcher which overrides launch() alone (another platform's) is stepped by the
    loop rather than launched by an inherited twin that does not know its rules."""
    def owner(name: str) -> type | None:
        return next((c for c in type(launcher).__mro__ if name in c.__dict__), None)

    return owner("launch_columns") is not None and owner("launch_columns") is owner("launch")


class BulkSizeTimeout:
    """The size_timeout policy over dispatcher-mode buffers, replayed at once (BulkPolicy)."""

    gear_of = None

    def __init__(self, inputs: PolicyInputs) -> None:
        self.inputs = inputs

    def on_arrival(self, index: int, now_s: float) -> FollowUps:
        raise RuntimeError("BulkSizeTimeout replays the whole trace; call replay()")

    def on_event(self, event: object, now_s: float) -> FollowUps:
        raise RuntimeError("BulkSizeTimeout replays the whole trace; call replay()")

    def replay(self) -> None:
        """Form every buffer's batches and launch them all, in the event loop's order."""
        arrivals = np.asarray(self.inputs.arrivals_s, dtype=np.float64)
        lengths = np.asarray(self.inputs.lengths, dtype=np.int64)
        routes = np.asarray(self.inputs.routes, dtype=np.int64)
        # each buffer's requests, in arrival order (a small dtype sorts by radix, 2x faster)
        by_buffer = np.argsort(routes.astype(np.min_scalar_type(len(self.inputs.plan.buffers))),
                               kind="stable")
        counts = np.bincount(routes, minlength=len(self.inputs.plan.buffers))
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        parts = [_buffer_batches(b, spec.max_batch_size, spec.timeout_s,
                                 arrivals[by_buffer[lo: lo + n]], lengths[by_buffer[lo: lo + n]],
                                 by_buffer[lo: lo + n], lo)
                 for b, (spec, lo, n) in enumerate(zip(self.inputs.plan.buffers, first.tolist(),
                                                       counts.tolist(), strict=True)) if n]
        if not parts:
            return  # no requests, no launches
        columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
        buffer, begin, size, padded, ready_s, phase, key = columns
        order = np.lexsort((key, phase, ready_s))
        size = size[order]
        ends = np.cumsum(size)
        flat = begin[order] - (ends - size)  # position in by_buffer of each batch's 1st member
        members = by_buffer[np.repeat(flat, size) + np.arange(int(ends[-1]) if ends.size else 0)]
        self.inputs.launcher.launch_columns(buffer[order], members, size, padded[order],
                                            ready_s[order])


def _buffer_batches(buffer: int, max_batch: int, timeout_s: float, arrivals: np.ndarray,
                    lengths: np.ndarray, index: np.ndarray,
                    offset: int) -> tuple[np.ndarray, ...]:
    """One buffer's batches as columns: buffer, first member (position in the by-buffer
    order), size, padded length, launch time, launching event, and its order key."""
    count = arrivals.size
    due = arrivals + timeout_s  # the float the loop's timer holds: arrival_s + timeout_s
    closing = np.searchsorted(arrivals, due, side="right")  # first arrival after the due time
    step = np.minimum(np.arange(count) + max_batch, closing).tolist()
    starts, i = [], 0
    while i < count:
        starts.append(i)
        i = step[i]
    start = np.asarray(starts, dtype=np.int64)
    size = np.diff(np.append(start, count))
    full = size == max_batch
    last = start + size - 1
    ready_s = np.where(full, arrivals[last], due[start])
    # a timer is pushed by the opener whose due differs from the last one armed (buffered.py)
    opened = due[start]
    pushed = np.ones(start.size, dtype=bool)
    pushed[1:] = opened[1:] != opened[:-1]
    pusher = np.maximum.accumulate(np.where(pushed, np.arange(start.size), 0))
    key = np.where(full, index[last], index[start[pusher]])
    phase = np.where(full, _ARRIVAL, _TIMER)
    padded = np.maximum.reduceat(lengths, start) if start.size else start
    return (np.full(start.size, buffer, dtype=np.int64), start + offset, size, padded,
            ready_s, phase, key)
