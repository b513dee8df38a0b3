from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffers.batcher import MultiBufferBatcher
from buffers.padding import EMPTY, PaddingStats, batch_padding
from buffers.plan import MODEL_MAX_LENGTH, BufferSpec, Plan
from buffers.plan_files import default_plan_path, load_plan
from buffers.router import LengthRouter
from buffers.types import Batch, FlushReason, Request


def make_plan(*buffers: tuple[int, int, int, int | None], max_length: int = 256) -> Plan:
    """Buffers as (max_length, max_batch_size, timeout_ms, max_batch_tokens), in order."""
    specs, low = [], 1
    for i, (high, batch, timeout_ms, tokens) in enumerate(buffers):
        specs.append(BufferSpec(f"b{i}", low, high, batch, timeout_ms, 1024,
                                max_batch_tokens=tokens))
        low = high + 1
    return Plan(buffers=tuple(specs), max_length=max_length)


def req(i: int, length: int, arrival_s: float) -> Request:
    return Request(id=f"r{i}", length=length, arrival_s=arrival_s)


def add_all(batcher: MultiBufferBatcher, requests: list[Request], now_s: float) -> list[Batch]:
    """Add each request in turn; every batch that filled up on the way."""
    return [batch for request in requests for batch in batcher.add(request, now_s)]


# ---- router --------------------------------------------------------------------------------


DEFAULT = load_plan(default_plan_path())


@pytest.mark.parametrize(("length", "buffer"), [
    (1, "short"), (32, "short"), (33, "medium"), (64, "medium"), (65, "long"), (128, "long"),
    (129, "xlong"), (256, "xlong"),
])
def test_router_boundaries_of_the_default_plan(length, buffer):
    router = LengthRouter(DEFAULT)
    assert router.route(length).name == buffer
    assert DEFAULT.buffers[router.index(length)].name == buffer


@pytest.mark.parametrize("length", [0, -1, MODEL_MAX_LENGTH + 1, 10_000])
def test_router_rejects_lengths_outside_the_plan(length):
    with pytest.raises(ValueError, match=f"got {length}"):
        LengthRouter(DEFAULT).index(length)


def test_router_agrees_with_accepts_for_every_length():
    plan = make_plan((1, 1, 0, None), (2, 1, 0, None), (100, 1, 0, None), (256, 1, 0, None))
    router = LengthRouter(plan)
    for length in range(1, 257):
        assert [s.accepts(length) for s in plan.buffers].count(True) == 1
        assert router.route(length).accepts(length)


def test_router_respects_a_plan_max_below_the_model_max():
    router = LengthRouter(make_plan((64, 1, 0, None), max_length=64))
    assert router.index(64) == 0
    with pytest.raises(ValueError, match="1..64"):
        router.index(65)


# ---- size and timeout ------------------------------------------------------------------------


def test_size_flush_returns_exactly_max_batch_size():
    batcher = MultiBufferBatcher(make_plan((32, 3, 1000, None), (256, 3, 1000, None)))
    assert batcher.add(req(0, 5, 1.0), 1.0) == []
    assert batcher.add(req(1, 40, 1.1), 1.1) == []  # another buffer: does not count
    assert batcher.add(req(2, 7, 1.2), 1.2) == []
    (batch,) = batcher.add(req(3, 9, 1.3), 1.3)
    assert batch.reason is FlushReason.SIZE
    assert [r.id for r in batch.requests] == ["r0", "r2", "r3"]
    assert (batch.buffer_index, batch.buffer_name, batch.size) == (0, "b0", 3)
    assert batch.formed_at_s == 1.3
    assert batch.padded_length == 9
    assert batcher.pending() == 1


def test_timeout_flush_fires_at_exactly_arrival_plus_timeout():
    batcher = MultiBufferBatcher(make_plan((256, 8, 250, None)))
    batcher.add(req(0, 5, 2.0), 2.0)
    batcher.add(req(1, 6, 2.1), 2.1)
    assert batcher.next_due_s() == 2.25
    assert batcher.poll(2.2499) == []
    (batch,) = batcher.poll(2.25)
    assert batch.reason is FlushReason.TIMEOUT
    assert [r.id for r in batch.requests] == ["r0", "r1"]  # the younger request rides along
    assert batch.formed_at_s == 2.25
    assert batcher.pending() == 0
    assert batcher.next_due_s() is None


def test_next_due_is_the_earliest_over_buffers():
    batcher = MultiBufferBatcher(make_plan((32, 8, 500, None), (256, 8, 100, None)))
    assert batcher.next_due_s() is None
    batcher.add(req(0, 5, 1.0), 1.0)
    assert batcher.next_due_s() == 1.5
    batcher.add(req(1, 100, 1.25), 1.25)
    assert batcher.next_due_s() == 1.35
    (batch,) = batcher.poll(1.35)
    assert batch.buffer_name == "b1"
    assert batcher.next_due_s() == 1.5


def test_poll_flushes_only_due_buffers():
    batcher = MultiBufferBatcher(make_plan((32, 8, 500, None), (256, 8, 100, None)))
    batcher.add(req(0, 5, 1.0), 1.0)
    batcher.add(req(1, 100, 1.0), 1.0)
    assert [b.buffer_name for b in batcher.poll(1.1)] == ["b1"]
    assert batcher.pending() == 1


def test_timeout_zero_flushes_on_a_poll_at_the_same_time():
    batcher = MultiBufferBatcher(make_plan((256, 8, 0, None)))
    assert batcher.add(req(0, 5, 7.0), 7.0) == []  # add only flushes full batches
    assert batcher.next_due_s() == 7.0
    (batch,) = batcher.poll(7.0)
    assert batch.reason is FlushReason.TIMEOUT
    assert batch.size == 1


def test_drain_flushes_everything_with_drain_reason():
    batcher = MultiBufferBatcher(make_plan((32, 2, 1000, None), (256, 8, 1000, None)))
    add_all(batcher, [req(0, 5, 1.0), req(1, 100, 1.0), req(2, 200, 1.0)], 1.0)
    batcher.add(req(3, 6, 1.0), 1.0)  # makes b0 full: flushed by size
    batcher.add(req(4, 7, 1.0), 1.0)
    batches = batcher.drain(1.5)
    assert [(b.buffer_name, b.size, b.reason) for b in batches] == [
        ("b0", 1, FlushReason.DRAIN), ("b1", 2, FlushReason.DRAIN)]
    assert batcher.pending() == 0
    assert batcher.drain(2.0) == []


def test_drain_respects_max_batch_size():
    batcher = MultiBufferBatcher(make_plan((256, 3, 1000, None)))
    for i in range(2):
        batcher.add(req(i, 5, 0.0), 0.0)
    batcher.queues[0].add(req(9, 5, 0.0))  # bypasses take_full: 3 pending
    batcher.queues[0].add(req(10, 5, 0.0))
    assert [b.size for b in batcher.drain(1.0)] == [3, 1]


def test_add_to_uses_the_given_buffer():
    batcher = MultiBufferBatcher(make_plan((32, 1, 1000, None), (256, 8, 1000, None)))
    # an already-routed message goes where it was routed, even if its length says otherwise
    assert batcher.add_to(1, req(0, 5, 0.0), 0.0) == []
    assert len(batcher.queues[1]) == 1
    assert len(batcher.queues[0]) == 0


def test_adding_in_turn_returns_every_full_batch():
    batcher = MultiBufferBatcher(make_plan((256, 2, 1000, None)))
    batches = add_all(batcher, [req(i, 5, 0.0) for i in range(5)], 0.0)
    assert [b.size for b in batches] == [2, 2]
    assert batcher.pending() == 1


# ---- token budget ---------------------------------------------------------------------------


def test_token_budget_splits_with_tokens_reason():
    # GIVEN a buffer of up to 64 tokens, 10 requests a batch, at most 128 padded tokens
    batcher = MultiBufferBatcher(make_plan((64, 10, 1000, 128), (256, 10, 1000, None)))
    # WHEN three 30-token requests (90 padded tokens) then a 40-token one (4 x 40 = 160) arrive
    out = [batcher.add(req(i, 30, 0.0), 0.0) for i in range(3)]
    assert out == [[], [], []]
    (batch,) = batcher.add(req(3, 40, 0.1), 0.1)
    # THEN the first three leave as a TOKENS batch and the 40-token one waits
    assert batch.reason is FlushReason.TOKENS
    assert [r.id for r in batch.requests] == ["r0", "r1", "r2"]
    assert batch.size * batch.padded_length == 90
    assert batcher.pending() == 1


def test_token_budget_caps_timeout_batches_too():
    batcher = MultiBufferBatcher(make_plan((64, 10, 100, 100), (256, 10, 1000, None)))
    batcher.add(req(0, 50, 0.0), 0.0)
    batcher.add(req(1, 50, 0.0), 0.0)
    batches = batcher.poll(0.1)
    assert [b.size for b in batches] == [2]
    assert batches[0].size * batches[0].padded_length == 100  # exactly at the budget
    long_first = MultiBufferBatcher(make_plan((64, 10, 100, 100), (256, 10, 1000, None)))
    batches = add_all(long_first, [req(0, 64, 0.0), req(1, 10, 0.0)], 0.0)
    assert [(b.size, b.reason) for b in batches] == [(1, FlushReason.TOKENS)]


def test_single_request_at_the_budget_is_one_batch():
    batcher = MultiBufferBatcher(make_plan((256, 10, 1000, 256)))
    batches = add_all(batcher, [req(i, 256, 0.0) for i in range(3)], 0.0)
    assert [(b.size, b.padded_length) for b in batches] == [(1, 256), (1, 256)]
    (last,) = batcher.drain(1.0)
    assert last.size == 1


# ---- property: every request exactly once, every batch within its limits ---------------------


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    cuts = sorted(draw(st.sets(st.integers(1, 255), max_size=4)))
    buffers = []
    for high in [*cuts, 256]:
        tokens = draw(st.none() | st.integers(high, 4 * high))
        buffers.append((high, draw(st.integers(1, 6)), draw(st.integers(0, 400)), tokens))
    return make_plan(*buffers)


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    gaps_ms = draw(st.lists(st.integers(0, 300), min_size=1, max_size=60))
    lengths = draw(st.lists(st.integers(1, 256), min_size=len(gaps_ms), max_size=len(gaps_ms)))
    out, now_ms = [], 0
    for i, (gap, length) in enumerate(zip(gaps_ms, lengths, strict=True)):
        now_ms += gap
        out.append(req(i, length, now_ms / 1000.0))
    return out


def replay(plan: Plan, requests: list[Request]) -> list[Batch]:
    """Drive the batcher as a dispatcher would: poll at every due time, then add arrivals."""
    batcher = MultiBufferBatcher(plan)
    batches: list[Batch] = []
    for request in requests:
        while (due := batcher.next_due_s()) is not None and due <= request.arrival_s:
            batches.extend(batcher.poll(due))
        batches.extend(batcher.add(request, request.arrival_s))
    while (due := batcher.next_due_s()) is not None:
        batches.extend(batcher.poll(due))
    assert batcher.drain(1e9) == []
    return batches


@settings(max_examples=150, deadline=None)
@given(plan=plans(), requests=workloads())
def test_every_request_lands_in_exactly_one_batch_within_limits(plan, requests):
    batches = replay(plan, requests)
    seen = Counter(r.id for b in batches for r in b.requests)
    assert seen == Counter(r.id for r in requests)
    for batch in batches:
        spec = plan.buffers[batch.buffer_index]
        assert batch.buffer_name == spec.name
        assert 1 <= batch.size <= spec.max_batch_size
        assert all(spec.accepts(r.length) for r in batch.requests)
        if spec.max_batch_tokens is not None:
            assert batch.size == 1 or batch.size * batch.padded_length <= spec.max_batch_tokens
        # a batch forms no earlier than its newest member arrived, and no later than its oldest
        # member's timeout (the driver polls at every due time)
        assert batch.formed_at_s >= max(r.arrival_s for r in batch.requests)
        assert batch.formed_at_s <= batch.requests[0].arrival_s + spec.timeout_s
        if batch.reason is FlushReason.TIMEOUT:
            assert batch.formed_at_s >= batch.requests[0].arrival_s + spec.timeout_s
        elif batch.reason is FlushReason.SIZE:
            assert batch.size == spec.max_batch_size


@settings(max_examples=100, deadline=None)
@given(plan=plans(), requests=workloads())
def test_each_buffer_serves_its_requests_in_arrival_order(plan, requests):
    batches = replay(plan, requests)
    router = LengthRouter(plan)
    for index in range(len(plan.buffers)):
        served = [r.id for b in batches if b.buffer_index == index for r in b.requests]
        assert served == [r.id for r in requests if router.index(r.length) == index]


# ---- padding --------------------------------------------------------------------------------


def test_batch_padding_hand_computed():
    stats = batch_padding([3, 5, 10])
    assert (stats.real_tokens, stats.padded_tokens, stats.batches, stats.requests) == (
        18, 30, 1, 3)
    assert stats.overhead == pytest.approx(30 / 18 - 1)
    assert stats.efficiency == pytest.approx(18 / 30)


def test_equal_lengths_have_no_padding():
    stats = batch_padding([7, 7, 7, 7])
    assert stats.overhead == 0.0
    assert stats.efficiency == 1.0


def test_padding_stats_sum_over_batches():
    total = batch_padding([3, 5, 10]) + batch_padding([7]) + batch_padding([2, 4])
    assert total == PaddingStats(real_tokens=31, padded_tokens=45, batches=3, requests=6)
    assert total.overhead == pytest.approx(45 / 31 - 1)


def test_empty_padding_adds_nothing():
    assert EMPTY + batch_padding([7]) == batch_padding([7]) == batch_padding([7]) + EMPTY
    assert EMPTY.overhead == 0.0
    assert EMPTY.efficiency == 1.0


@pytest.mark.parametrize("lengths", [[], [0, 3], [-1]])
def test_batch_padding_rejects_bad_lengths(lengths):
    with pytest.raises(ValueError):
        batch_padding(lengths)


def test_batch_padding_property_matches_its_requests():
    batcher = MultiBufferBatcher(make_plan((256, 3, 1000, None)))
    (batch,) = add_all(batcher, [req(0, 3, 0.0), req(1, 5, 0.0), req(2, 10, 0.0)], 0.0)
    assert batch.padding == batch_padding([3, 5, 10])
