"""Shared fixtures: moto-backed AWS resources for the handlers, and the real model."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from buffers.plan import Plan
from buffers.plan_files import default_plan_path, load_plan
from functions.shared import deps
from infra.local.stack import StackResources, create_resources

EVENTS_DIR = Path(__file__).resolve().parent / "events"
VISIBILITY_TIMEOUT_S = 60


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of a stored event file (tests/events/NAME.json)."""
    return copy.deepcopy(json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8")))


@dataclass
class AwsStack:
    """The moto resources a test talks to, with clients made inside the mock."""

    plan: Plan
    resources: StackResources
    sqs: Any
    ddb: Any

    def receive(self, buffer: str) -> list[dict[str, Any]]:
        """Every message now visible on a buffer's queue (they become invisible for 60 s)."""
        url = self.resources.queue_urls[buffer]
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", []):
            messages.extend(batch)
        return messages

    def queue_depths(self) -> dict[str, int]:
        """Visible plus in-flight messages per buffer queue."""
        depths = {}
        for name, url in self.resources.queue_urls.items():
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
            depths[name] = sum(int(v) for v in attrs["Attributes"].values())
        return depths

    def item_count(self) -> int:
        return self.ddb.scan(TableName=self.resources.table_name, Select="COUNT")["Count"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    """moto's in-process AWS with the default plan's table and queues, and the handlers' env."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                       "POWERTOOLS_METRICS_DISABLED": "true",
                       "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(key, value)
    for key in ("MBS_PLAN_PATH", "MBS_FAIL_MODEL_LOAD", "MBS_MAX_BODY_BYTES"):
        monkeypatch.delenv(key, raising=False)
    plan = load_plan(default_plan_path())
    deps.reset()
    with mock_aws():
        resources = create_resources(plan, f"mbs-test-{uuid.uuid4().hex[:8]}",
                                     VISIBILITY_TIMEOUT_S)
        monkeypatch.setenv("MBS_TABLE_NAME", resources.table_name)
        monkeypatch.setenv("MBS_QUEUE_URLS", json.dumps(resources.queue_urls))
        monkeypatch.setenv("MBS_PLAN_JSON", json.dumps(plan.to_dict()))
        monkeypatch.setenv("MBS_RESULTS_BUCKET", resources.bucket)
        yield AwsStack(plan, resources, boto3.client("sqs"), boto3.client("dynamodb"))
    deps.reset()


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once per test session."""
    from functions.shared.model import get_embedder

    return get_embedder()
