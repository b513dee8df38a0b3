"""Fault injection for the reliability tests: wrappers around the functions' ports, from outside.

Nothing in functions/ imports this module. The local stack installs a FaultInjector through
`functions.shared.deps.wrap_ports` and wraps its in-process invoke with `invocation`; a test that
calls a handler directly installs one with `injected`. Each fault imitates a way SQS, Lambda or
DynamoDB fail:
- poison_marker: a text containing this string makes the model raise, in any batch;
- crash_after_writes: the infer process dies (not an exception Powertools can catch) after this
  many result writes in one invocation;
- store_errors: the first N result writes raise a DynamoDB throttling error;
- send_errors: the first N enqueues fail, as SQS does when it is unavailable;
- sleep_ms: infer answers this much later (a timeout past the visibility timeout);
- invocations: crash_after_writes and sleep_ms hit only the first N infer invocations of the
  process (None: all), as a transient fault does;
- fail_model_load: the model cannot load.
The local stack reads them from MBS_FAULTS (a JSON object) and MBS_FAIL_MODEL_LOAD=1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from functions.shared import deps
from functions.shared.model import EmbedResult, ModelLoadError, TextEmbedder
from functions.shared.queues import QueueSender
from functions.shared.store import PendingRecord, ResultRecord, ResultStore

R = TypeVar("R")


class InjectedCrash(BaseException):  # noqa: N818 - a process death, so deliberately not an Error
    """Stands for the function's process dying mid-batch."""


class PoisonInput(ValueError):
    """The model rejects this input (the poison marker's fault)."""


@dataclass(frozen=True)
class Faults:
    poison_marker: str | None = None
    crash_after_writes: int | None = None
    store_errors: int = 0
    send_errors: int = 0
    sleep_ms: int = 0
    invocations: int | None = None
    fail_model_load: bool = False


def faults_from_env(environ: Mapping[str, str]) -> Faults:
    """The faults MBS_FAULTS and MBS_FAIL_MODEL_LOAD ask for (none when both are unset)."""
    raw = environ.get("MBS_FAULTS")
    faults = Faults(**json.loads(raw)) if raw else Faults()
    if environ.get("MBS_FAIL_MODEL_LOAD") == "1":
        faults = replace(faults, fail_model_load=True)
    return faults


class _Invocation(threading.local):
    crash_after_writes: int | None = None
    writes: int = 0


class FaultInjector(deps.PortWrappers):
    """One process's faults: wraps the ports as deps makes them, and counts what was used."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._used = {"store_errors": 0, "send_errors": 0, "invocations": 0}
        # The local stack runs several invocations at once, each in its own worker thread.
        self._invocation = _Invocation()

    def result_store(self, make: Callable[[], ResultStore]) -> ResultStore:
        return _FaultyStore(make(), self)

    def queue_sender(self, make: Callable[[], QueueSender]) -> QueueSender:
        return _FaultySender(make(), self)

    def embedder(self, load: Callable[[], TextEmbedder]) -> TextEmbedder:
        if self.faults.fail_model_load:
            raise ModelLoadError("model load disabled by MBS_FAIL_MODEL_LOAD=1")
        if marker := self.faults.poison_marker:
            return _PoisonedEmbedder(load(), marker)
        return load()

    def take(self, fault: str) -> bool:
        """True for each of the first N uses of a counted fault (store_errors, send_errors)."""
        with self._lock:
            if self._used[fault] < getattr(self.faults, fault):
                self._used[fault] += 1
                return True
            return False

    def invocation(self, invoke: Callable[..., R]) -> Callable[..., R]:
        """`invoke` (one infer invocation) with the crash and sleep faults of this invocation."""

        def run(*args: Any) -> R:
            with self._lock:
                self._used["invocations"] += 1
                hit = (self.faults.invocations is None
                       or self._used["invocations"] <= self.faults.invocations)
            state = self._invocation
            state.crash_after_writes = self.faults.crash_after_writes if hit else None
            state.writes = 0
            try:
                reply = invoke(*args)
            finally:
                state.crash_after_writes = None
            if hit and self.faults.sleep_ms > 0:
                time.sleep(self.faults.sleep_ms / 1000.0)  # past the queue's visibility timeout
            return reply

        return run

    def wrote(self) -> None:
        """Count a result write of the current invocation; die once its budget is reached."""
        state = self._invocation
        state.writes += 1
        if state.crash_after_writes is not None and state.writes >= state.crash_after_writes:
            raise InjectedCrash(f"process died after {state.writes} result writes")


class _FaultyStore(ResultStore):
    def __init__(self, inner: ResultStore, injector: FaultInjector) -> None:
        self._inner, self._injector = inner, injector

    def put_pending(self, record: PendingRecord) -> None:
        self._inner.put_pending(record)

    def put_pending_many(self, records: Sequence[PendingRecord]) -> None:
        self._inner.put_pending_many(records)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self._inner.get_many(request_ids)

    def complete(self, request_id: str, result: ResultRecord) -> bool:
        if self._injector.take("store_errors"):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "injected throttle"}}, "UpdateItem")
        stored = self._inner.complete(request_id, result)
        self._injector.wrote()
        return stored

    def fail(self, request_id: str, reason: str) -> bool:
        return self._inner.fail(request_id, reason)

    def note_error(self, request_id: str, reason: str) -> None:
        self._inner.note_error(request_id, reason)

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._inner.get(request_id)


class _FaultySender(QueueSender):
    def __init__(self, inner: QueueSender, injector: FaultInjector) -> None:
        self._inner, self._injector = inner, injector

    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        if self._injector.take("send_errors"):
            raise _outage("SendMessage")
        return self._inner.send(buffer_name, message)

    def send_many(self, buffer_name: str, messages: Sequence[dict[str, Any]]
                  ) -> list[Exception | None]:
        # Each message counts as one send: the first N fail, the rest go in batches.
        errors: list[Exception | None] = [
            _outage("SendMessageBatch") if self._injector.take("send_errors") else None
            for _ in messages]
        passed = [i for i, error in enumerate(errors) if error is None]
        for i, error in zip(passed, self._inner.send_many(
                buffer_name, [messages[i] for i in passed]), strict=True):
            errors[i] = error
        return errors


def _outage(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "AWS.SimpleQueueService.ServiceUnavailable",
                                  "Message": "injected outage"}}, operation)


class _PoisonedEmbedder:
    def __init__(self, inner: TextEmbedder, marker: str) -> None:
        self._inner, self._marker = inner, marker

    def embed(self, texts: list[str]) -> EmbedResult:
        if any(self._marker in text for text in texts):
            raise PoisonInput("the model rejected an input of this batch (injected poison)")
        return self._inner.embed(texts)


@contextmanager
def injected(faults: Faults) -> Iterator[FaultInjector]:
    """Wrap the functions' ports with `faults` for the block (a test calling handlers directly)."""
    injector = FaultInjector(faults)
    deps.wrap_ports(injector)
    try:
        yield injector
    finally:
        deps.wrap_ports(deps.PortWrappers())
