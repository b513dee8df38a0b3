"""Process-wide dependencies (boto3 clients, ports), created once per cold start."""

from __future__ import annotations

import time
from functools import lru_cache

import boto3

from buffers.router import LengthRouter
from functions.shared.queues import SqsQueueDepth, SqsQueueSender
from functions.shared.settings import get_settings
from functions.shared.store import DynamoResultStore


@lru_cache(maxsize=1)
def result_store() -> DynamoResultStore:
    return DynamoResultStore(get_settings().table_name, boto3.client("dynamodb"))


@lru_cache(maxsize=1)
def queue_sender() -> SqsQueueSender:
    return SqsQueueSender(get_settings().queue_urls, boto3.client("sqs"))


@lru_cache(maxsize=1)
def queue_depth() -> SqsQueueDepth:
    return SqsQueueDepth(get_settings().queue_urls, boto3.client("sqs"), time.monotonic)


@lru_cache(maxsize=1)
def router() -> LengthRouter:
    return LengthRouter(get_settings().plan)


def reset() -> None:
    """Forget cached settings and clients (a new cold start; used by the local stack and tests)."""
    for cached in (get_settings, result_store, queue_sender, queue_depth, router):
        cached.cache_clear()
