"""The local moto server's SQS speed-ups answer as moto does (infra/local/moto_server.py)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_server


@pytest.fixture
def sqs(monkeypatch):
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from moto.sqs import models

    # GIVEN the patches, undone after the test (moto in-process is shared by other tests)
    monkeypatch.setattr(models.SQSBackend, "is_message_valid_based_on_retention_period",
                        models.SQSBackend.is_message_valid_based_on_retention_period)
    for name in ("delete_message", "approximate_number_of_messages",
                 "approximate_number_of_messages_delayed",
                 "approximate_number_of_messages_not_visible"):
        monkeypatch.setattr(models.Queue, name, getattr(models.Queue, name))
    monkeypatch.setattr(models.SQSBackend, "send_message", models.SQSBackend.send_message)
    moto_server.apply()
    with mock_aws():
        yield boto3.client("sqs")


def test_receive_and_delete_answer_as_before(sqs):
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for start in range(0, 30, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 10
    reply = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert len(reply["Successful"]) == 10 and not reply.get("Failed")
    # a second delete of the same handle is accepted; an unknown handle is refused
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    bad = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": "not-a-handle"}])
    assert bad["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"],
            attrs["ApproximateNumberOfMessagesDelayed"]) == ("20", "0", "0")
    # a received message counts as not visible
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"],
            attrs["ApproximateNumberOfMessagesNotVisible"]) == ("15", "5")


def test_messages_past_their_retention_are_not_received(sqs, monkeypatch):
    old, fresh = (sqs.create_queue(QueueName=name, Attributes={
        "MessageRetentionPeriod": "60"})["QueueUrl"] for name in ("old", "fresh"))
    for url in (old, fresh):
        sqs.send_message(QueueUrl=url, MessageBody="m")
    assert len(sqs.receive_message(QueueUrl=fresh)["Messages"]) == 1
    from moto.core import utils

    real = utils.unix_time
    with monkeypatch.context() as later:  # two minutes on: past the 60 s retention
        later.setattr(utils, "unix_time", lambda *args: real(*args) + 120)
        assert sqs.receive_message(QueueUrl=old).get("Messages", []) == []
