"""The results store against moto, and settings read from the environment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from functions.shared import deps
from functions.shared.items import (
    ONE_WRITE_UNIT_BYTES,
    decode_embedding,
    encode_embedding,
    item_bytes,
)
from functions.shared.settings import DEFAULT_MAX_BODY_BYTES, SettingsError, get_settings
from functions.shared.store import (
    DONE,
    FAILED,
    PENDING,
    MissingRequest,
    PendingRecord,
    ResultRecord,
    pending_item,
    result_values,
)

RID = "0123456789abcdef0123456789abcdef"


def pending(request_id: str = RID, slo_ms: int | None = None) -> PendingRecord:
    return PendingRecord(id=request_id, tenant="acme", buffer="short", length=6, full_length=6,
                         enqueued_at_ms=1_000, expires_at_s=9_999, slo_ms=slo_ms)


def result(batch_id: str = "b" * 32, seed: int = 0) -> ResultRecord:
    vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return ResultRecord(embedding=vector / np.linalg.norm(vector), batch_id=batch_id,
                        batch_size=2, padded_length=9, batch_real_tokens=15, queue_wait_ms=40,
                        inference_ms=12.3456, completed_at_ms=2_000, device="cpu")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- store ------------------------------------------------------------------------------------


def test_unknown_id_is_none(aws):
    assert deps.result_store().get(RID) is None


def test_pending_view(aws):
    deps.result_store().put_pending(pending(slo_ms=500))
    assert deps.result_store().get(RID) == {
        "id": RID, "status": PENDING, "tenant": "acme", "buffer": "short", "length": 6,
        "full_length": 6, "enqueued_at_ms": 1_000, "slo_ms": 500, "truncated": False}


def test_put_pending_never_overwrites(aws):
    store = deps.result_store()
    store.put_pending(pending())
    store.complete(RID, result())
    with pytest.raises(aws.ddb.exceptions.ConditionalCheckFailedException):
        store.put_pending(pending())
    assert store.get(RID)["status"] == DONE


def test_complete_stores_the_embedding_exactly_once(aws):
    store = deps.result_store()
    store.put_pending(pending())
    first = result(batch_id="a" * 32, seed=1)
    assert store.complete(RID, first) is True
    assert store.complete(RID, result(batch_id="c" * 32, seed=2)) is False
    view = store.get(RID)
    assert view["status"] == DONE
    assert view["batch_id"] == "a" * 32
    # float16 storage (functions/shared/items.py): exactly the float16 rounding of the vector,
    # written as the shortest decimals that read back as those float16 values
    stored = np.array(view["embedding"])
    assert np.array_equal(stored.astype(np.float16), first.embedding.astype(np.float16))
    assert cosine(stored, first.embedding) >= 0.9999
    assert max(len(repr(v)) for v in view["embedding"]) <= 10
    assert (view["batch_size"], view["padded_length"], view["batch_real_tokens"]) == (2, 9, 15)
    assert view["inference_ms"] == 12.346


def test_complete_without_apending_item_raises_and_writes_nothing(aws):
    # A missing item (never accepted, or expired by TTL) is not a duplicate: the message must
    # fail so that it is retried and ends in the DLQ instead of vanishing.
    with pytest.raises(MissingRequest, match=RID):
        deps.result_store().complete(RID, result())
    assert aws.item_count() == 0


def test_fail_only_from_pending(aws):
    store = deps.result_store()
    store.put_pending(pending())
    assert store.fail(RID, "x" * 5000) is True
    assert store.complete(RID, result()) is False
    view = store.get(RID)
    assert view["status"] == FAILED
    assert len(view["reason"]) == 1000
    assert store.fail(RID, "again") is False


# ---- settings ---------------------------------------------------------------------------------


def test_settings_from_the_fixture_env(aws):
    settings = get_settings()
    assert settings.table_name == aws.resources.table_name
    assert settings.queue_urls == aws.resources.queue_urls
    assert settings.plan == aws.plan
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("MBS_TABLE_NAME", "", "MBS_TABLE_NAME"),
    ("MBS_QUEUE_URLS", "{not json", "MBS_QUEUE_URLS"),
    ("MBS_QUEUE_URLS", json.dumps({"short": "u"}), "['medium', 'long', 'xlong']"),
    ("MBS_PLAN_JSON", "[", "MBS_PLAN_JSON"),
    ("MBS_MAX_BODY_BYTES", "64k", "MBS_MAX_BODY_BYTES"),
])
def test_bad_env_is_a_settings_error_naming_it(aws, monkeypatch, key, value, needle):
    monkeypatch.setenv(key, value)
    deps.reset()
    with pytest.raises(SettingsError, match=needle.replace("[", r"\[")):
        get_settings()


def test_invalid_plan_json_is_a_plan_error(aws, monkeypatch):
    raw = aws.plan.to_dict()
    raw["buffers"][0]["memory_mb"] = 1
    monkeypatch.setenv("MBS_PLAN_JSON", json.dumps(raw))
    deps.reset()
    with pytest.raises(ValueError, match=r"buffers\[0\].memory_mb"):
        get_settings()


def test_plan_path_is_used_without_plan_json(aws, monkeypatch):
    monkeypatch.delenv("MBS_PLAN_JSON")
    monkeypatch.setenv("MBS_PLAN_PATH", str(default_plan_path("batch")))
    monkeypatch.setenv("MBS_QUEUE_URLS", json.dumps({"all": "https://q/all"}))
    deps.reset()
    assert get_settings().plan == load_plan(default_plan_path("batch"))
    assert deps.router().route(200).name == "all"


def test_shipped_default_plan_without_plan_env(aws, monkeypatch):
    monkeypatch.delenv("MBS_PLAN_JSON")
    deps.reset()
    assert get_settings().plan == load_plan(default_plan_path())


def test_body_limit_from_env_is_enforced_by_ingest(aws, monkeypatch):
    from tests.test_handlers import post

    monkeypatch.setenv("MBS_MAX_BODY_BYTES", "20")
    deps.reset()
    reply = post(json.dumps({"text": "just over twenty bytes"}))
    assert reply["statusCode"] == 413
    assert aws.item_count() == 0


# ---- float16 results, item size, batch writes and reads --------------------------------------


def test_float16_round_trip_keeps_cosine_above_0_9999_for_real_and_adversarial_vectors():
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((200, 384)).astype(np.float32)
    spiky = np.zeros((1, 384), np.float32)
    spiky[0, :3] = (1.0, 1e-3, 1e-6)  # one large component, and two near float16's floor
    for vector in np.vstack([vectors, spiky]):
        vector /= np.linalg.norm(vector)
        raw = encode_embedding(vector)
        assert len(raw) == 768
        assert cosine(np.array(decode_embedding(raw)), vector) >= 0.9999


def _done_item(tenant: str, buffer: str) -> dict:
    """The stored DONE item at the widest values it can hold (9-digit waits, 10,000 batches)."""
    record = PendingRecord(id=RID, tenant=tenant, buffer=buffer, length=256, full_length=65_536,
                           enqueued_at_ms=1_799_999_999_999, expires_at_s=1_800_604_799,
                           slo_ms=900_000)
    done = ResultRecord(embedding=np.full(384, 0.05, np.float32), batch_id="f" * 32,
                        batch_size=10_000, padded_length=256, batch_real_tokens=2_560_000,
                        queue_wait_ms=899_999_999, inference_ms=12_345.678,
                        completed_at_ms=1_799_999_999_999, device="cuda:0")
    return {**pending_item(record), "status": {"S": DONE}, **result_values(done)}


def test_a_done_item_stays_within_one_write_unit():
    # The documented bound: tenants of <= 40 characters, buffer names of <= 16.
    assert item_bytes(_done_item("t" * 40, "b" * 16)) <= ONE_WRITE_UNIT_BYTES
    # Worked check of the size rules on one attribute of each kind.
    assert item_bytes({"id": {"S": RID}}) == 2 + 32
    assert item_bytes({"e": {"B": b"x" * 768}}) == 1 + 768
    assert item_bytes({"n": {"N": "1000"}, "w": {"N": "12.500"}}) == (1 + 2) + (1 + 3)


def test_done_item_read_back_from_the_table_is_under_1_kb(aws):
    store = deps.result_store()
    store.put_pending(pending())
    store.complete(RID, result())
    item = aws.ddb.get_item(TableName=aws.resources.table_name, Key={"id": {"S": RID}})["Item"]
    assert set(item) >= {"e", "b", "n", "p", "r", "w", "i", "c", "d"}
    assert 800 < item_bytes(item) <= ONE_WRITE_UNIT_BYTES


def testpending_items_in_batches_and_batch_reads(aws):
    # GIVEN 60 PENDING requests written in batches (25 per BatchWriteItem)
    ids = [f"{i:032x}" for i in range(60)]
    deps.result_store().put_pending_many([pending(i) for i in ids])
    assert aws.item_count() == 60
    deps.result_store().complete(ids[0], result())
    # WHEN 130 ids are read at once (BatchGetItem takes 100 keys: two calls and a retry of misses)
    unknown = [f"{i:032x}" for i in range(1000, 1070)]
    views = deps.result_store().get_many(ids + unknown)
    # THEN every known id is there with its state, and unknown ids are simply absent
    assert set(views) == set(ids)
    assert views[ids[0]]["status"] == DONE and len(views[ids[0]]["embedding"]) == 384
    assert {views[i]["status"] for i in ids[1:]} == {PENDING}
