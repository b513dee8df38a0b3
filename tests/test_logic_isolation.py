"""Poison isolation (functions/logic/isolation.py) and infer's batch logic, without events."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from functions.logic.infer_batch import infer_records, parse_records, store_outcome
from functions.logic.isolation import isolate_failures
from functions.shared.model import EmbedResult, ModelLoadError


def _records(n: int, poison: Sequence[int] = ()) -> list[dict]:
    return [{"messageId": f"m{i}", "body": json.dumps({
        "id": f"r{i}", "text": "POISON" if i in poison else f"text {i}", "length": 4 + i,
        "buffer": "short", "enqueued_at_ms": 1_000})} for i in range(n)]


class CountingEmbedder:
    """Test double for the model: unit vectors, and a ValueError on any text "POISON"."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> EmbedResult:
        self.calls.append(len(texts))
        if "POISON" in texts:
            raise ValueError("bad input")
        vectors = np.eye(len(texts), 384, dtype=np.float32)
        return EmbedResult(vectors, padded_length=12, inference_ms=3.0, device="test-double")


def test_isolation_fails_only_the_poison_members_by_index():
    calls: list[int] = []

    def run(batch: Sequence[str]) -> list[str]:
        calls.append(len(batch))
        if "bad" in batch:
            raise ValueError("bad input")
        return [text.upper() for text in batch]

    ok, failed = isolate_failures(["a", "b", "bad", "c", "d", "bad", "e", "f"], run)
    assert sorted(failed) == [2, 5]
    assert ok == {0: "A", 1: "B", 3: "C", 4: "D", 6: "E", 7: "F"}
    assert len(calls) < 2 * 8


def test_whole_batch_errors_are_not_bisected():
    calls: list[int] = []

    def no_model(batch: Sequence[int]) -> list[int]:
        calls.append(len(batch))
        raise ModelLoadError("no model")

    ok, failed = isolate_failures([1, 2, 3, 4], no_model, whole_batch_errors=(ModelLoadError,))
    assert ok == {} and sorted(failed) == [0, 1, 2, 3]
    assert calls == [4]


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_no_failure_is_one_run(n):
    calls: list[int] = []
    ok, failed = isolate_failures(list(range(n)),
                                  lambda batch: calls.append(len(batch)) or list(batch))
    assert ok == {i: i for i in range(n)} and failed == {}
    assert calls == ([n] if n else [])


def test_a_run_that_drops_results_is_an_error_not_a_silent_loss():
    with pytest.raises(ValueError, match="4 items, got 3 results"):
        isolate_failures([1, 2, 3, 4], lambda batch: list(batch)[:3] if len(batch) == 4 else [])


def test_bisection_fails_only_the_poison_members():
    model = CountingEmbedder()
    outcome = infer_records(_records(8, poison=(2, 5)), lambda: model, started_ms=1_500,
                            clock_ms=lambda: 2_000)
    assert sorted(outcome.failed) == ["m2", "m5"]
    assert sorted(outcome.results) == ["m0", "m1", "m3", "m4", "m6", "m7"]
    assert len(model.calls) < 2 * 8  # bisection, not one retry per member and then some
    # Each successful pass is reported once, with its own batch id on its results.
    assert sum(p.size for p in outcome.passes) == 6
    assert len({r.batch_id for r in outcome.results.values()}) == len(outcome.passes)
    first = outcome.results["m0"]
    assert (first.queue_wait_ms, first.completed_at_ms, first.device) == (500, 2_000,
                                                                          "test-double")


def test_model_load_failure_fails_every_member_with_one_load_attempt():
    loads: list[int] = []

    def no_model():
        loads.append(1)
        raise ModelLoadError("no model")

    outcome = infer_records(_records(4), no_model, started_ms=0, clock_ms=lambda: 0)
    assert outcome.results == {} and sorted(outcome.failed) == ["m0", "m1", "m2", "m3"]
    assert loads == [1] and outcome.passes == ()


def test_malformed_records_fail_alone_and_never_reach_the_model():
    records = [*_records(2), {"messageId": "bad", "body": '{"id": "0123"'}]
    model = CountingEmbedder()
    outcome = infer_records(records, lambda: model, started_ms=0, clock_ms=lambda: 0)
    assert list(outcome.malformed) == ["bad"] and sorted(outcome.results) == ["m0", "m1"]
    assert model.calls == [2]
    items, errors = parse_records([{"messageId": "x", "body": "[]"}])
    assert items == {} and "'x'" in str(errors["x"])


class NotingStore:
    """Test double: records what infer's store step writes."""

    def __init__(self, stored: bool = True) -> None:
        self.stored, self.completed, self.noted = stored, [], []

    def complete(self, request_id, result):
        self.completed.append(request_id)
        return self.stored

    def note_error(self, request_id, reason):
        self.noted.append((request_id, reason))


def test_store_outcome_writes_results_and_raises_failures_after_noting_them():
    outcome = infer_records(_records(3, poison=(1,)), CountingEmbedder, started_ms=0,
                            clock_ms=lambda: 0)
    store = NotingStore()
    assert store_outcome(store, outcome, "m0") is True
    with pytest.raises(ValueError, match="bad input"):
        store_outcome(store, outcome, "m1")
    assert store.completed == ["r0"]
    assert store.noted == [("r1", "ValueError('bad input')")]
    assert store_outcome(NotingStore(stored=False), outcome, "m2") is False  # a redelivery
