"""The results store against moto, and settings read from the environment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from buffers.plan_files import default_plan_path, load_plan
from functions.shared import deps
from functions.shared.settings import DEFAULT_MAX_BODY_BYTES, SettingsError, get_settings
from functions.shared.store import (
    DONE,
    FAILED,
    PENDING,
    MissingRequest,
    PendingRecord,
    ResultRecord,
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
    assert np.array_equal(np.array(view["embedding"], dtype=np.float32), first.embedding)
    assert (view["batch_size"], view["padded_length"], view["batch_real_tokens"]) == (2, 9, 15)
    assert view["inference_ms"] == 12.346


def test_complete_without_a_pending_item_raises_and_writes_nothing(aws):
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
