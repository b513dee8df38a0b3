"""The online batching loop: each input goes by its token length into its buffer, the buffers/
batcher forms batches under the plan's policy (and gears), a worker thread invokes the buffer's
function, and each caller is answered when all its inputs are done.

It runs on the ASGI server's event loop. Timers are the loop's own (`call_at`, monotonic); the
batcher and policies are pure and are told `now`. Invocations block (boto3, torch), so they run
in a thread pool, at most the plan's max_concurrency at once per buffer; while a buffer is at its
cap its queue is marked blocked, so the next batch forms, fuller, when a slot frees.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from buffers.batcher import MultiBufferBatcher
from buffers.geared import GearedBatcher
from buffers.gears import GearSet
from buffers.plan import Plan
from buffers.policies import make_batch_policy
from buffers.router import LengthRouter
from buffers.types import Batch, Request, ServiceTime
from infra.dispatcher import admission
from infra.dispatcher.errors import ApiError, infer_error
from infra.dispatcher.execute import Outcome, run_batch
from infra.dispatcher.fleet_scaling import FleetScaler, gear_fleet
from infra.dispatcher.inputs import PreparedInput
from infra.dispatcher.invoke import FailureKind, InferInput, InvokeFailed, Invoker
from infra.dispatcher.waiting import InputResult, ServiceStats, Waiting, collect

log = logging.getLogger("mbs.dispatcher")


class OnlineService:
    """`await start()`, then `await embed(inputs, user)` per request; `await stop()` drains."""

    def __init__(self, plan: Plan, invoker: Invoker, model: str, *, policy: str | None = None,
                 predict_ms: ServiceTime | None = None, slo_ms: float | None = None,
                 gears: GearSet | None = None, max_waiting_inputs: int | None = None,
                 max_loop_lag_ms: float | None = admission.DEFAULT_MAX_LOOP_LAG_MS,
                 fleet_scaler: FleetScaler | None = None) -> None:
        self.plan, self.model, self.slo_ms = plan, model, slo_ms
        self.stats = ServiceStats()
        self._invoker, self._predict_ms = invoker, predict_ms
        self._policy = make_batch_policy(policy or plan.policy, predict_ms)
        # One batcher: the plan's, or the gear set's (buffers/geared.py), as in the simulator.
        self._batcher: MultiBufferBatcher | GearedBatcher = (
            MultiBufferBatcher(plan, self._policy) if gears is None
            else GearedBatcher(plan, gears, self._policy))
        self._fleet = gear_fleet(plan, gears, fleet_scaler)  # a gpu plan's gears' fleet bounds
        self._router = LengthRouter(plan)
        count = len(plan.buffers)
        self._caps = [s.max_concurrency for s in plan.buffers]
        self._in_flight = [0] * count
        self._service = [admission.Ewma() for _ in range(count)]
        self._backlog: list[deque[Batch]] = [deque() for _ in range(count)]  # drained batches
        self._waiting = 0  # inputs admitted and not yet launched
        self.limit = max_waiting_inputs or admission.default_queue_limit(plan)
        self._max_lag_ms, self._lag = max_loop_lag_ms, admission.Ewma()
        self._probe: asyncio.TimerHandle | None = None
        self._pool = ThreadPoolExecutor(max_workers=sum(self._caps), thread_name_prefix="invoke")
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._draining = False
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._probe_lag(self._loop.time())
        if self._fleet is not None:  # the initial gear's bounds, if not the deployed ones
            self._fleet.observe(self._batcher.gear)

    def _probe_lag(self, expected_s: float) -> None:
        now = self.loop.time()
        self._lag.observe(max(0.0, now - expected_s))
        self._probe = self.loop.call_at(now + admission.LAG_PROBE_S, self._probe_lag,
                                        now + admission.LAG_PROBE_S)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the service is not started")
        return self._loop

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    @property
    def draining(self) -> bool:
        return self._draining

    async def embed(self, inputs: Sequence[PreparedInput], user: str | None = None
                    ) -> list[InputResult]:
        """Batch every input and wait for all of them; raises ApiError for the caller."""
        now = self.loop.time()
        buffers = [self._route(i, p.tokens) for i, p in enumerate(inputs)]
        self.check_admission(len(buffers))
        self.stats.requests += 1
        deadline = admission.deadline_s(now, self.slo_ms)
        tenant = user or "default"
        waiting = [self._enqueue(p, b, now, deadline, tenant)
                   for p, b in zip(inputs, buffers, strict=True)]
        self._schedule()
        try:
            return await collect(waiting)
        finally:
            for w in waiting:  # unlaunched siblings of a failed input are dropped at launch
                if not w.future.done():
                    w.future.cancel()

    def _route(self, index: int, tokens: int) -> int:
        if tokens > self.plan.max_length:  # a plan may cover less than the model's 256 tokens
            raise ApiError(400, "input_too_long", f"input[{index}] has {tokens} tokens; this "
                           f"plan serves up to {self.plan.max_length}", f"input[{index}]")
        return self._router.index(tokens)

    def check_admission(self, inputs: int) -> None:
        """Raise the 503 or 429 a request of `inputs` inputs would get now (nothing queued)."""
        if self._draining:
            raise ApiError(503, "shutting_down", "the service is draining for shutdown; "
                           "retry on another instance", retry_after_s=1)
        retry = admission.retry_after_s(self.plan, max(s.mean_s for s in self._service))
        if not admission.admits(self._waiting, inputs, self.limit):
            self.stats.rejected += 1
            raise ApiError(429, "rate_limit_exceeded", f"{self._waiting} inputs are waiting "
                           f"(limit {self.limit}); retry after {retry} s", retry_after_s=retry)
        if admission.loop_overloaded(self._lag.mean_s, self._max_lag_ms):
            self.stats.rejected += 1
            raise ApiError(429, "rate_limit_exceeded", f"the service is saturated (its event "
                           f"loop runs {self._lag.mean_s * 1000:.0f} ms late); retry after "
                           f"{retry} s", retry_after_s=retry)

    def _enqueue(self, prepared: PreparedInput, b: int, now: float, deadline: float | None,
                 tenant: str) -> Waiting:
        w = Waiting(str(next(self._ids)), prepared, b, now, self.loop.create_future())
        self._batcher.enqueue(b, Request(id=w.id, length=prepared.tokens, arrival_s=now,
                                         tenant=tenant, deadline_s=deadline, payload=w), now)
        if self._fleet is not None:  # a switch's PutFunctionScalingConfig runs in its thread
            self._fleet.observe(self._batcher.gear)
        self._waiting += 1
        if deadline is not None and self.slo_ms is not None:
            give_up_s = admission.give_up_at_s(deadline, self._service[b].mean_s, self.slo_ms)
            w.give_up = self.loop.call_at(give_up_s, self._give_up, w)
        self._launch_ready(b, now)
        return w

    def _give_up(self, w: Waiting) -> None:
        if w.future.done():
            return
        self.stats.expired += 1
        waited_ms = (self.loop.time() - w.arrival_s) * 1000.0
        w.future.set_exception(ApiError(
            504, "deadline_exceeded", f"not served within the {self.slo_ms:g} ms SLO: waited "
            f"{waited_ms:.0f} ms in buffer {self.plan.buffers[w.buffer_index].name!r} and "
            f"could no longer finish in time"))

    def _take_next(self, b: int, now: float) -> Batch | None:
        if self._backlog[b]:
            return self._backlog[b].popleft()
        for queue in self._batcher.buffer_queues(b):
            if (batch := queue.take_next(now)) is not None:
                return batch
        return None

    def _launch_ready(self, b: int, now: float) -> None:
        while self._in_flight[b] < self._caps[b]:
            batch = self._take_next(b, now)
            if batch is None:
                return
            self._launch(batch, now)

    def _set_blocked(self, b: int) -> None:
        for queue in self._batcher.buffer_queues(b):
            queue.blocked = self._in_flight[b] >= self._caps[b]

    def _launch(self, batch: Batch, now: float) -> None:
        self._waiting -= batch.size
        live = [r.payload for r in batch.requests if not r.payload.future.done()]
        for w in live:
            if w.give_up is not None:
                w.give_up.cancel()
        if not live:
            return  # every member already answered (deadline, or a failed sibling)
        b = batch.buffer_index
        self._in_flight[b] += 1
        self._set_blocked(b)
        self.stats.batches[batch.buffer_name] += 1
        self.stats.inputs[batch.buffer_name] += len(live)
        task = self.loop.create_task(self._run(batch, live, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch, live: list[Waiting], launched_s: float) -> None:
        b, name = batch.buffer_index, batch.buffer_name
        inputs = [InferInput(w.id, w.prepared.text, w.prepared.tokens) for w in live]
        started = self.loop.time()
        try:
            outcome = await self.loop.run_in_executor(self._pool, run_batch, self._invoker, name,
                                                      inputs)
        except Exception as exc:  # an adapter bug, not a reply: fail the batch, keep serving
            log.exception("invoking %s failed outside the adapter's contract", name)
            failure = InvokeFailed(FailureKind.FUNCTION, type(exc).__name__, str(exc))
            outcome = Outcome(failed={i.id: failure for i in inputs}, invocations=1)
        elapsed_s = self.loop.time() - started
        self._in_flight[b] -= 1
        self._set_blocked(b)
        self._service[b].observe(elapsed_s)
        self._report(batch, outcome, elapsed_s)
        for w in live:
            self._answer(w, outcome, name, launched_s)
        self._launch_ready(b, self.loop.time())
        self._schedule()
        self._check_idle()

    def _report(self, batch: Batch, outcome: Outcome, elapsed_s: float) -> None:
        self.stats.invocations += outcome.invocations
        self.stats.bisect_invocations += outcome.bisect_invocations
        self.stats.splits += outcome.splits
        if self._predict_ms is None or not outcome.done:
            return
        padded = max(e.padded_length for e in outcome.done.values())
        spec = self.plan.buffers[batch.buffer_index]
        predicted_ms = self._predict_ms(len(outcome.done), padded, spec.memory_mb)
        self._policy.on_complete(batch, predicted_ms, elapsed_s * 1000.0)

    def _answer(self, w: Waiting, outcome: Outcome, buffer: str, launched_s: float) -> None:
        if w.future.done():
            return
        embedded = outcome.done.get(w.id)
        if embedded is None:
            self.stats.failed_inputs += 1
            w.future.set_exception(infer_error(outcome.failed[w.id], buffer))
        elif embedded.model != self.model:
            self.stats.failed_inputs += 1
            w.future.set_exception(ApiError(502, "model_mismatch", f"buffer {buffer!r}'s "
                                   f"function serves {embedded.model!r}, this service "
                                   f"{self.model!r}"))
        else:
            wait_ms = (launched_s - w.arrival_s) * 1000.0
            w.future.set_result(InputResult(embedded, buffer, wait_ms))

    def _schedule(self) -> None:
        """Arm one loop timer for the earliest moment a buffer's policy must be polled."""
        due = self._batcher.next_due_s()
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = None if due is None else self.loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        # The loop may fire a timer up to its clock resolution early; it is due all the same.
        now = max(self.loop.time(), self._timer_at or 0.0)
        self._timer, self._timer_at = None, None
        for b in range(len(self.plan.buffers)):
            self._launch_ready(b, now)
        self._schedule()

    def begin_drain(self) -> None:
        """Refuse new requests; flush every buffer now, launching as slots free."""
        if self._draining:
            return
        self._draining = True
        now = self.loop.time()
        for b in range(len(self.plan.buffers)):
            for queue in self._batcher.buffer_queues(b):
                self._backlog[b].extend(queue.drain(now))
            self._launch_ready(b, now)
        self._schedule()
        self._check_idle()

    def request_drain(self) -> None:
        """begin_drain from another thread (a signal handler, a test's runner)."""
        self.loop.call_soon_threadsafe(self.begin_drain)

    def _check_idle(self) -> None:
        if self._draining and self._idle is not None and self._waiting == 0 \
                and not any(self._in_flight):
            self._idle.set()

    async def stop(self) -> None:
        """Drain: every admitted input is answered before this returns."""
        self.begin_drain()
        if self._idle is not None:
            await self._idle.wait()
        for timer in (self._timer, self._probe):
            if timer is not None:
                timer.cancel()
        self._pool.shutdown(wait=False)
        if self._fleet is not None:
            self._fleet.close(wait=False)

    def snapshot(self) -> dict:
        """Queue, slot and counter state for /healthz."""
        return {"waiting_inputs": self._waiting, "waiting_limit": self.limit,
                "in_flight": {s.name: n for s, n in zip(self.plan.buffers, self._in_flight,
                                                         strict=True)},
                "draining": self._draining, "stats": self.stats.to_dict(),
                **({} if self._fleet is None else {"fleet": self._fleet.snapshot()})}

