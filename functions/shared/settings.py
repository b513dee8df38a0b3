"""Function settings from the environment, read once per cold start."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

from buffers.plan import Plan
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict

DEFAULT_MAX_BODY_BYTES = 64 * 1024  # well under SQS's 256 KiB message limit, with the envelope
# A list of up to 100 texts (functions/shared/submission.py): 1 MiB, inside API Gateway's 10 MB
# payload and Lambda's 6 MB invocation payload even once base64-encoded.
DEFAULT_MAX_LIST_BODY_BYTES = 1024 * 1024
DEFAULT_RESULT_TTL_S = 7 * 24 * 3600
# Backpressure: past this many waiting messages on a buffer's queue, ingest answers 429.
# 0 turns it off. 10,000 waiting requests is minutes of work for any plan MBS chooses.
DEFAULT_MAX_QUEUE_DEPTH = 10_000


class SettingsError(RuntimeError):
    """A required environment variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    queue_urls: dict[str, str]
    plan: Plan
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    # Only the local stack sets MBS_TRUST_TENANT_HEADER=1: on AWS the tenant comes from the
    # authorizer, and a client-supplied header must never be trusted.
    trust_tenant_header: bool = False
    max_queue_depth: int = DEFAULT_MAX_QUEUE_DEPTH
    max_list_body_bytes: int = DEFAULT_MAX_LIST_BODY_BYTES
    results_bucket: str | None = None  # where jobs' results go (S3); None: no S3 output


def _load_active_plan() -> Plan:
    # MBS_PLAN_JSON is what the SAM template passes; MBS_PLAN_PATH is handy locally.
    if raw := os.environ.get("MBS_PLAN_JSON"):
        try:
            return plan_from_dict(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise SettingsError(f"MBS_PLAN_JSON is not valid JSON: {exc}") from None
    return load_plan(os.environ.get("MBS_PLAN_PATH") or default_plan_path())


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process; `get_settings.cache_clear()` re-reads them."""
    table = os.environ.get("MBS_TABLE_NAME")
    if not table:
        raise SettingsError("MBS_TABLE_NAME is not set")
    try:
        queue_urls = json.loads(os.environ.get("MBS_QUEUE_URLS", "{}"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"MBS_QUEUE_URLS is not valid JSON: {exc}") from None
    plan = _load_active_plan()
    missing = [b.name for b in plan.buffers if b.name not in queue_urls]
    if missing:
        raise SettingsError(f"MBS_QUEUE_URLS has no queue for buffer(s) {missing}")
    return Settings(
        table_name=table,
        queue_urls=queue_urls,
        plan=plan,
        max_body_bytes=_int_env("MBS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        result_ttl_s=_int_env("MBS_RESULT_TTL_S", DEFAULT_RESULT_TTL_S),
        trust_tenant_header=os.environ.get("MBS_TRUST_TENANT_HEADER") == "1",
        max_queue_depth=_int_env("MBS_MAX_QUEUE_DEPTH", DEFAULT_MAX_QUEUE_DEPTH),
        max_list_body_bytes=_int_env("MBS_MAX_LIST_BODY_BYTES", DEFAULT_MAX_LIST_BODY_BYTES),
        results_bucket=os.environ.get("MBS_RESULTS_BUCKET") or None,
    )
