"""Process-wide dependencies (boto3 clients, ports), created once per cold start.

`wrap_ports` lets whoever runs the functions (the local stack, a test) wrap each port as it is
made, from outside: this module knows nothing of what a wrapper does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import boto3
from botocore.config import Config

from buffers.router import LengthRouter
from functions.shared.jobs import DynamoJobStore, JobStore, ResultObjects, S3ResultObjects
from functions.shared.model import TextEmbedder, get_embedder
from functions.shared.queues import QueueDepth, QueueSender, SqsQueueDepth, SqsQueueSender
from functions.shared.settings import get_settings
from functions.shared.store import DynamoResultStore, ResultStore


class PortWrappers:
    """Hooks applied to each port as it is made; each default returns the port unchanged."""

    def result_store(self, make: Callable[[], ResultStore]) -> ResultStore:
        return make()

    def queue_sender(self, make: Callable[[], QueueSender]) -> QueueSender:
        return make()

    def embedder(self, load: Callable[[], TextEmbedder]) -> TextEmbedder:
        return load()


_wrappers = PortWrappers()


@lru_cache(maxsize=1)
def result_store() -> ResultStore:
    return _wrappers.result_store(
        lambda: DynamoResultStore(get_settings().table_name, boto3.client("dynamodb")))


@lru_cache(maxsize=1)
def queue_sender() -> QueueSender:
    return _wrappers.queue_sender(
        lambda: SqsQueueSender(get_settings().queue_urls, boto3.client("sqs")))


@lru_cache(maxsize=1)
def queue_depth() -> QueueDepth:
    return SqsQueueDepth(get_settings().queue_urls, boto3.client("sqs"), time.monotonic)


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return DynamoJobStore(get_settings().table_name, boto3.client("dynamodb"))


@lru_cache(maxsize=1)
def result_objects() -> ResultObjects | None:
    """Jobs' results in S3; None when the stack has no results bucket."""
    bucket = get_settings().results_bucket
    # Signature Version 4 for the presigned URLs (SigV2 is deprecated for S3).
    client = boto3.client("s3", config=Config(signature_version="s3v4"))
    return None if bucket is None else S3ResultObjects(bucket, client)


@lru_cache(maxsize=1)
def router() -> LengthRouter:
    return LengthRouter(get_settings().plan)


def embedder() -> TextEmbedder:
    """The model: loaded once per process; a load that failed is tried again on the next call."""
    return _wrappers.embedder(get_embedder)


def wrap_ports(wrappers: PortWrappers) -> None:
    """Make every port from now on through `wrappers` (until `reset`)."""
    global _wrappers
    _wrappers = wrappers
    for cached in (result_store, queue_sender):
        cached.cache_clear()


def reset() -> None:
    """Forget cached settings, clients and port wrappers (a new cold start)."""
    global _wrappers
    _wrappers = PortWrappers()
    for cached in (get_settings, result_store, queue_sender, queue_depth, router, job_store,
                   result_objects):
        cached.cache_clear()
