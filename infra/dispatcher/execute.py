"""Run one formed batch through an invoker: split it to fit the invoke payload limits, and bisect
a batch that fails on its inputs so that only the poison input fails. Blocking (a worker thread
calls it); no clock, no HTTP.

Every extra invocation is counted in the Outcome and logged: a batch is never re-run silently.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from functions.shared.model import EMBEDDING_DIM
from infra.dispatcher.invoke import (
    FailureKind,
    InferInput,
    InferReply,
    InvokeFailed,
    Invoker,
    encode_event,
)

log = logging.getLogger("mbs.dispatcher")

# The reply's JSON: a float32 widened to a double prints as at most 23 characters
# ("-1.2345678901234567e-05") plus ", ", per value; the margin covers the other fields.
REPLY_BYTES_PER_INPUT = EMBEDDING_DIM * 25 + 4
REPLY_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class Embedded:
    """One input's embedding and the invocation that produced it."""

    vector: np.ndarray
    padded_length: int
    batch_size: int
    inference_ms: float
    device: str
    model: str
    batch_id: str = ""  # one id per invocation, shared by the batch's inputs
    batch_real_tokens: int = 0  # the batch's tokens before padding


@dataclass
class Outcome:
    done: dict[str, Embedded] = field(default_factory=dict)
    failed: dict[str, InvokeFailed] = field(default_factory=dict)
    invocations: int = 0
    bisect_invocations: int = 0  # invocations made only to isolate a poison input
    splits: int = 0  # extra invocations because one would exceed the payload limits

    def merge(self, other: Outcome) -> None:
        self.done.update(other.done)
        self.failed.update(other.failed)
        self.invocations += other.invocations
        self.bisect_invocations += other.bisect_invocations
        self.splits += other.splits


def max_items_per_reply(max_reply_bytes: int | None) -> int | None:
    """How many embeddings fit one reply (None: no limit)."""
    if max_reply_bytes is None:
        return None
    return max(1, (max_reply_bytes - REPLY_OVERHEAD_BYTES) // REPLY_BYTES_PER_INPUT)


def split_to_fit(buffer: str, inputs: Sequence[InferInput], max_request_bytes: int | None,
                 max_items: int | None) -> list[list[InferInput]]:
    """Consecutive chunks whose request payload and reply stay inside the limits."""
    if max_request_bytes is None and max_items is None:
        return [list(inputs)]
    base = len(encode_event(buffer, []))
    chunks: list[list[InferInput]] = [[]]
    size = base
    for item in inputs:
        item_bytes = len(json.dumps({"id": item.id, "text": item.text},
                                    separators=(",", ":")).encode("utf-8")) + 1
        full_by_bytes = max_request_bytes is not None and size + item_bytes > max_request_bytes
        full_by_count = max_items is not None and len(chunks[-1]) >= max_items
        if chunks[-1] and (full_by_bytes or full_by_count):
            chunks.append([])
            size = base
        chunks[-1].append(item)
        size += item_bytes
    return chunks


def _embedded(inputs: Sequence[InferInput], reply: InferReply) -> dict[str, Embedded]:
    batch_id = uuid.uuid4().hex
    real_tokens = sum(item.tokens for item in inputs)
    return {item.id: Embedded(vector=reply.embeddings[i], padded_length=reply.padded_length,
                              batch_size=len(inputs), inference_ms=reply.inference_ms,
                              device=reply.device, model=reply.model, batch_id=batch_id,
                              batch_real_tokens=real_tokens)
            for i, item in enumerate(inputs)}


def run_isolating(invoker: Invoker, buffer: str, inputs: Sequence[InferInput]) -> Outcome:
    """Invoke once; on an input error, bisect so that only the poison inputs fail.

    A batch that fails because of one bad input would otherwise fail every neighbour. Halving
    costs about 2 log2(n) extra invocations per poison input. Any other failure (the function
    cannot load its model, timed out, was throttled, or gave no reply) fails the whole batch at
    once: halving could not help, and would run the batch again.
    """
    outcome = Outcome(invocations=1)
    try:
        outcome.done = _embedded(inputs, invoker.invoke(buffer, inputs))
        return outcome
    except InvokeFailed as exc:
        if exc.kind is not FailureKind.INPUT or len(inputs) == 1:
            outcome.failed = {item.id: exc for item in inputs}
            return outcome
        log.warning("batch of %d on %s failed on its inputs (%s); bisecting to isolate it",
                    len(inputs), buffer, exc)
    middle = len(inputs) // 2
    for half in (inputs[:middle], inputs[middle:]):
        part = run_isolating(invoker, buffer, half)
        part.bisect_invocations += 1
        outcome.merge(part)
    return outcome


def run_batch(invoker: Invoker, buffer: str, inputs: Sequence[InferInput]) -> Outcome:
    """Split to fit the invoker's payload limits, then run each chunk with isolation."""
    chunks = split_to_fit(buffer, inputs, invoker.max_request_bytes,
                          max_items_per_reply(invoker.max_reply_bytes))
    if len(chunks) > 1:
        log.info("batch of %d on %s split into %d invocations to fit the payload limits",
                 len(inputs), buffer, len(chunks))
    outcome = Outcome()
    for chunk in chunks:
        outcome.merge(run_isolating(invoker, buffer, chunk))
    outcome.splits = len(chunks) - 1
    return outcome
