"""The `ragged` baseline: Hugging Face text-embeddings-inference's (TEI's) token-budget batcher,
whose variable-length kernels compute no padding.

TEI (router/src/infer.rs and queue.rs; `--max-batch-tokens`, default 16,384) keeps one queue
and, whenever its backend is free, takes queued requests in arrival order while their token
count stays within max_batch_tokens; with flash-attention's variable-length kernels the batch
is packed, so its compute follows the real tokens, not batch x longest. Here a batch also
waits, while the queue is short of the budget, until its oldest request has waited
max_queue_delay (0 = TEI's own rule: send whatever is queued at once).

Service time is MODELLED, not measured: no GPU was lent to measure a variable-length path, so
a batch of B requests with R real tokens takes the padded profile's time at B rows of the mean
length, service_ms(B, ceil(R / B)). The linear layers' work is exactly R tokens; attention's,
sum(L_i^2), is at least R^2 / B (Jensen), so the model is optimistic for ragged batching on
attention, which at these lengths (<= 256) is the smaller share of an encoder's FLOPs. A
ragged batch has no padded length: the log records its mean length R / B, so its padded tokens
equal its real tokens and padding_overhead is 0.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from buffers.plan import MAX_DISPATCHER_BATCH, MODEL_MAX_LENGTH, BufferSpec, DispatchMode, Plan
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import FollowUps, PolicyInputs, register

RAGGED_POLICY = "ragged"  # its name in the simulator's policy registry
SERVICE_TIME_LABEL = "modelled: padded profile at the real token count, service_ms(B, ceil(R/B))"

_FREE = "free"  # an instance finished its batch
_DELAY = "delay"  # the oldest queued request has waited max_queue_delay


def ragged_plan(max_batch_tokens: int, max_queue_delay_ms: int, memory_mb: int,
                instances: int, max_batch: int = MAX_DISPATCHER_BATCH) -> Plan:
    """TEI-style token-budget batching over `instances` functions (>= 2, the plan's minimum).

    The plan's max_batch_tokens is the budget on REAL tokens here (the buffered policies read it
    as padded tokens); max_batch caps the requests per batch (TEI's --max-batch-requests;
    default: the dispatcher's payload limit).
    """
    spec = BufferSpec(name="all", min_length=1, max_length=MODEL_MAX_LENGTH,
                      max_batch_size=max_batch, timeout_ms=max_queue_delay_ms,
                      memory_mb=memory_mb, dispatch_mode=DispatchMode.DISPATCHER,
                      max_concurrency=instances, max_batch_tokens=max_batch_tokens)
    return Plan(buffers=(spec,), name="ragged", policy=RAGGED_POLICY)


class RaggedPolicy:
    """One queue, a fixed pool, a real-token budget per batch; work-conserving like Triton's.

    A batch is formed only when an instance is free. It is the longest prefix of the queue
    within max_batch_tokens real tokens (at least one request) and max_batch requests. It
    leaves at once if it is full (the next queued request would not fit, or it holds
    max_batch) or its oldest request has waited max_queue_delay (the plan's timeout_ms); else
    the queue waits for more arrivals or that delay.
    """

    gear_of = None  # one queue, no gears

    def __init__(self, spec: BufferSpec, arrivals_s: list[float], lengths: list[int],
                 launcher: Launcher) -> None:
        if spec.max_batch_tokens is None:
            raise ValueError("the ragged policy needs max_batch_tokens (its token budget), "
                             "got None")
        self.budget = spec.max_batch_tokens
        self.max_batch = spec.max_batch_size
        self.delay_s = spec.timeout_s
        self.instances = spec.max_concurrency
        self.arrivals_s = arrivals_s
        self.lengths = lengths
        self.launcher = launcher
        self.queue: deque[int] = deque()
        self.queued_tokens = 0
        self.busy = 0
        self._armed: float | None = None

    def on_arrival(self, index: int, now_s: float) -> FollowUps:
        self.queue.append(index)
        self.queued_tokens += self.lengths[index]
        return self._dispatch(now_s)

    def on_event(self, event: str, now_s: float) -> FollowUps:
        if event == _FREE:
            self.busy -= 1
        elif self._armed != now_s:
            return []  # stale delay timer: its request already left
        return self._dispatch(now_s)

    def _full(self) -> bool:
        # lengths are >= 1, so at the budget exactly the next request would not fit either
        return self.queued_tokens >= self.budget or len(self.queue) >= self.max_batch

    def _dispatch(self, now_s: float) -> list[tuple[float, Any]]:
        follow_ups: list[tuple[float, Any]] = []
        while self.queue and self.busy < self.instances:
            if not self._full():
                due_s = self.arrivals_s[self.queue[0]] + self.delay_s
                if due_s > now_s:
                    if due_s != self._armed:
                        self._armed = due_s
                        follow_ups.append((due_s, _DELAY))
                    break
            members, tokens = self._take()
            self.busy += 1
            # service at B rows of the mean length (module docstring); the log keeps R / B
            end_s = self.launcher.launch(0, members, tokens / len(members), now_s,
                                         service_length=math.ceil(tokens / len(members)))
            follow_ups.append((end_s, _FREE))
        return follow_ups

    def _take(self) -> tuple[list[int], int]:
        """The queue's longest prefix within the budget (one request always goes)."""
        members = [self.queue.popleft()]
        tokens = self.lengths[members[0]]
        while (self.queue and len(members) < self.max_batch
               and tokens + self.lengths[self.queue[0]] <= self.budget):
            members.append(self.queue.popleft())
            tokens += self.lengths[members[-1]]
        self.queued_tokens -= tokens
        return members, tokens


def _ragged(inputs: PolicyInputs) -> RaggedPolicy:
    if inputs.gears is not None:
        raise ValueError(f"the ragged policy takes no gears, got {inputs.gears.config.gears}")
    if len(inputs.plan.buffers) != 1:
        raise ValueError(f"the ragged policy takes a one-buffer plan, got "
                         f"{len(inputs.plan.buffers)} buffers")
    return RaggedPolicy(inputs.plan.buffers[0], inputs.arrivals_s, inputs.lengths,
                        inputs.launcher)


register(RAGGED_POLICY, _ragged)
