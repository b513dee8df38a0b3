"""Managed-mode buffers in simulation: the SQS event source mapping's pollers, as AWS runs them.

optimizer/platform/esm_rules.py states the rules (documented, and our named assumptions); this
module runs them on the simulator's clock. Each managed buffer has EsmRules.pollers pollers
(more while a backlog lasts, up to EsmRules.poller_cap), and each poller on its own:
- receives records only while no invocation of its own is running; records that arrive while
  every poller waits on its invocation stay in the queue, and the next poller whose invocation
  completes takes up to BatchSize of them;
- holds what it receives in a batching window that began when its previous invocation completed
  (buffers/esm_window.py), and invokes when the window closes or at BatchSize;
- with no open window (it lapsed empty, or the poller never invoked) invokes at once with the
  record it received, which is then exposed to the documented low-traffic wait (counted in
  Launcher.exposed; with EsmRules.low_traffic_wait_s > 0 the poller waits that long instead).
An invocation is the Launcher's: an instance from the buffer's pool, capped at
MaximumConcurrency, or a wait for one.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from buffers.esm_window import window_open
from buffers.plan import BufferSpec
from optimizer.platform.esm_rules import EsmRules
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import FollowUps


@dataclass(frozen=True)
class WindowEnd:
    """A poller's window closes (stale unless `token` is still the poller's)."""

    buffer: int
    poller: int
    token: int


@dataclass(frozen=True)
class Done:
    """A poller's invocation returned: its next window begins."""

    buffer: int
    poller: int


@dataclass
class _Poller:
    ident: int
    added: bool = False  # by scale-up: it retires when one of its windows closes empty
    opened_s: float | None = None  # when its current window began (None: never invoked)
    length_s: float = 0.0  # that window's length
    members: list[int] = field(default_factory=list)
    busy: bool = False  # its invocation is running, or waiting for an instance
    token: int = 0


class EventSourceMapping:
    """One managed buffer's event source mapping: pollers, the queue's backlog, invocations."""

    def __init__(self, buffer: int, spec: BufferSpec, rules: EsmRules, launcher: Launcher,
                 lengths: Sequence[int], rng: np.random.Generator) -> None:
        self.buffer = buffer
        self.window_s = spec.timeout_s
        self.batch = spec.max_batch_size
        self.rules = rules
        self.cap = rules.poller_cap(spec.max_concurrency)
        self.launcher = launcher
        self.lengths = lengths
        self.pollers = {i: _Poller(i) for i in range(rules.pollers)}  # ident order
        self.backlog: deque[int] = deque()
        self.peak_pollers = rules.pollers
        self._rng = rng
        self._idents = itertools.count(rules.pollers)
        self._cursor = 0
        self._added_s = -math.inf

    def on_arrival(self, index: int, now_s: float) -> FollowUps:
        """A record is sent to the buffer's queue at now_s."""
        receiving = [p for p in self.pollers.values() if not p.busy]
        follow_ups: FollowUps = []
        if not receiving:
            poller = self._scale_up(now_s)
            if poller is None:
                self.backlog.append(index)
                return []
            receiving = [poller]
            if self.window_s > 0:
                follow_ups.append((now_s + self.window_s, self._end(poller)))
        return follow_ups + self._receive(self._pick(receiving), index, now_s)

    def on_event(self, event: WindowEnd | Done, now_s: float) -> FollowUps:
        """A window's end or an invocation's return."""
        poller = self.pollers[event.poller]
        if isinstance(event, Done):
            return self._next_window(poller, now_s)
        if event.token != poller.token or poller.busy:
            return []  # stale: the window already closed at BatchSize
        if poller.members:
            return self._invoke(poller, now_s)
        if poller.added and len(self.pollers) > self.rules.pollers:
            del self.pollers[poller.ident]  # scale-down: an empty window retires an added one
        return []

    def _pick(self, receiving: list[_Poller]) -> _Poller:
        """The poller a record goes to (EsmRules.split; round robin: the next receiving poller
        after the last one chosen, in the order they were started)."""
        if self.rules.split == "random":
            if len(receiving) == 1:
                return receiving[0]
            return receiving[int(self._rng.integers(len(receiving)))]
        chosen = next((p for p in receiving if p.ident >= self._cursor), receiving[0])
        self._cursor = chosen.ident + 1
        return chosen

    def _scale_up(self, now_s: float) -> _Poller | None:
        if len(self.pollers) >= self.cap or now_s - self._added_s < self.rules.scale_up_gap_s:
            return None
        poller = _Poller(next(self._idents), added=True, opened_s=now_s, length_s=self.window_s)
        self.pollers[poller.ident] = poller
        self._added_s = now_s
        self.peak_pollers = max(self.peak_pollers, len(self.pollers))
        return poller

    def _receive(self, poller: _Poller, index: int, now_s: float) -> FollowUps:
        poller.members.append(index)
        if self.window_s == 0 or len(poller.members) >= self.batch:
            return self._invoke(poller, now_s)
        if window_open(poller.opened_s, now_s, poller.length_s):
            return []
        # the window lapsed: this receive's record goes out at once (or, in the pessimistic
        # variant, after the documented low-traffic wait)
        self.launcher.exposed.append(index)
        wait_s = self.rules.low_traffic_wait_s
        if wait_s > 0:
            poller.opened_s, poller.length_s = now_s, wait_s
            return [(now_s + wait_s, self._end(poller))]
        return self._invoke(poller, now_s)

    def _next_window(self, poller: _Poller, now_s: float) -> FollowUps:
        """The poller's invocation returned: its window begins now, first taking the backlog."""
        poller.busy = False
        poller.opened_s, poller.length_s = now_s, self.window_s
        take = min(self.batch, len(self.backlog))
        poller.members = [self.backlog.popleft() for _ in range(take)]
        if poller.members and (self.window_s == 0 or take >= self.batch):
            return self._invoke(poller, now_s)
        return [(now_s + self.window_s, self._end(poller))] if self.window_s > 0 else []

    def _end(self, poller: _Poller) -> WindowEnd:
        poller.token += 1
        return WindowEnd(self.buffer, poller.ident, poller.token)

    def _invoke(self, poller: _Poller, now_s: float) -> FollowUps:
        members, poller.members = poller.members, []
        padded = max(self.lengths[i] for i in members)
        end_s = self.launcher.launch(self.buffer, members, padded, now_s)
        poller.busy = True
        poller.token += 1
        return [(end_s, Done(self.buffer, poller.ident))]
