"""Test machinery for the online service: small plans, HTTP calls, and invokers and models that
wrap the real ports from outside to hold, fail or poison a batch (production never imports it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from buffers.plan import Plan
from buffers.plan_files import plan_from_dict
from functions.shared.model import StandInEmbedder
from infra.dispatcher.invoke import InferInput, InferReply, InProcessInvoker, Invoker


def small_plan(buffers: Sequence[tuple[int, int, int]], max_concurrency: int = 2,
               policy: str = "size_timeout") -> Plan:
    """A plan of (max_length, max_batch_size, timeout_ms) buffers covering 1..last max_length."""
    specs, low = [], 1
    for i, (high, size, timeout_ms) in enumerate(buffers):
        specs.append({"name": f"b{i}", "min_length": low, "max_length": high,
                      "max_batch_size": size, "timeout_ms": timeout_ms, "memory_mb": 1769,
                      "max_concurrency": max_concurrency})
        low = high + 1
    return plan_from_dict({"version": 1, "name": "test", "max_length": low - 1,
                           "policy": policy, "buffers": specs})


def post_json(url: str, body: Any, timeout_s: float = 60.0,
              content_type: str = "application/json") -> tuple[int, dict[str, str], Any]:
    """POST a JSON body (or raw bytes); (status, headers with lower-case names, parsed reply)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(f"{url}/v1/embeddings", data=data, method="POST",
                                     headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return reply.status, _lower(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), json.loads(exc.read())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll a condition on the running service (across threads), failing after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class PoisonEmbedder(StandInEmbedder):
    """The stand-in, raising (as a model could) on any batch holding `marker`."""

    def __init__(self, marker: str = "POISON") -> None:
        self.marker = marker

    def embed(self, texts: list[str]):
        if any(self.marker in t for t in texts):
            raise ValueError(f"the model cannot take an input containing {self.marker!r}")
        return super().embed(texts)


class GatedInvoker(Invoker):
    """Wraps an invoker: holds every invocation until `gate` opens, counts concurrency per
    buffer, and can replace the next invocations' outcome with an exception."""

    def __init__(self, inner: Invoker | None = None, open_: bool = True) -> None:
        self.inner = inner or InProcessInvoker(StandInEmbedder())
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.failures: list[Exception] = []
        self.sizes: Counter = Counter()
        self.running: Counter = Counter()
        self.peak: Counter = Counter()
        self._lock = threading.Lock()

    def invoke(self, buffer: str, inputs: Sequence[InferInput]) -> InferReply:
        with self._lock:
            self.running[buffer] += 1
            self.peak[buffer] = max(self.peak[buffer], self.running[buffer])
            self.sizes[len(inputs)] += 1
            failure = self.failures.pop(0) if self.failures else None
        try:
            self.gate.wait(timeout=60)
            if failure is not None:
                raise failure
            return self.inner.invoke(buffer, inputs)
        finally:
            with self._lock:
                self.running[buffer] -= 1
