"""The bulk path's fixed items per text for each way of submitting, by hand (bulk_items)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.platform.bulk_items import BulkShape, fixed_usd, per_text_usd, run_cost
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import InferBill, bulk_cost

PRICING = Pricing()
GB_S_X86 = 0.0000166667
LAMBDA_REQUEST = 0.20e-6
WRU, RRU, SQS, API = 0.625e-6, 0.125e-6, 0.40e-6, 1.00e-6
S3_PUT, S3_GET = 0.005e-3, 0.0004e-3


def front(duration_ms: float) -> float:
    """One 256 MB front invocation."""
    return duration_ms / 1000 * 0.25 * GB_S_X86 + LAMBDA_REQUEST


def test_a_text_sent_alone_pays_every_item_itself():
    usd = per_text_usd(BulkShape(), PRICING)
    assert usd["api"] == pytest.approx(2 * API)  # POST + GET
    assert usd["front"] == pytest.approx(2 * front(15.0))  # ingest + results
    assert usd["sqs_send"] == pytest.approx(SQS)  # SendMessage
    assert usd["ddb_write"] == pytest.approx(2 * WRU)  # PENDING + result (float16: < 1 KB)
    assert usd["ddb_read"] == pytest.approx(RRU)  # one strongly consistent GetItem
    assert usd["s3_put"] == usd["s3_get"] == 0.0


def test_a_list_of_100_with_items_shares_the_calls_but_not_the_items():
    usd = per_text_usd(BulkShape(texts_per_call=100), PRICING)
    assert usd["api"] == pytest.approx(2 * API / 100)  # one POST, one batch read
    assert usd["front"] == pytest.approx(2 * front(15.0 + 99 * 1.0) / 100)
    assert usd["sqs_send"] == pytest.approx(10 * SQS / 100)  # SendMessageBatch of 10
    assert usd["ddb_write"] == pytest.approx(2 * WRU)  # still two items per text
    assert usd["ddb_read"] == pytest.approx(0.5 * RRU)  # BatchGetItem, eventually consistent
    # $1.25 of DynamoDB writes per 1M texts: over the $0.60 target on their own
    assert usd["ddb_write"] * 1e6 == pytest.approx(1.25)


def test_an_s3_job_of_100_pays_per_batch_and_per_job_not_per_text():
    shape = BulkShape(texts_per_call=100, s3_job=True, texts_per_batch=20)
    usd = per_text_usd(shape, PRICING)
    assert usd["ddb_write"] == pytest.approx((1 / 100 + 1 / 20) * WRU)  # job put, count updates
    assert usd["ddb_read"] == pytest.approx(1 / 100 * RRU)  # the job read
    assert usd["s3_put"] == pytest.approx((1 / 20 + 1 / 100) * S3_PUT)  # parts, final object
    assert usd["s3_get"] == pytest.approx((1 / 20 + 2 / 100) * S3_GET)  # parts, HEAD, download
    # a job whose texts share batches with other jobs: 5 of its texts per batch
    mixed = per_text_usd(BulkShape(texts_per_call=100, s3_job=True, texts_per_batch=20,
                                   texts_per_job_batch=5), PRICING)
    assert mixed["ddb_write"] == pytest.approx((1 / 100 + 1 / 5) * WRU)
    assert mixed["s3_put"] == usd["s3_put"]  # still one part per batch
    assert mixed["s3_get"] == pytest.approx((1 / 5 + 2 / 100) * S3_GET)


def test_fixed_items_fold_into_the_breakdown_fields():
    shape = BulkShape(texts_per_call=100, s3_job=True, texts_per_batch=20)
    usd = per_text_usd(shape, PRICING)
    fixed = fixed_usd(1000, PRICING, shape=shape)
    assert fixed["api_usd"] == pytest.approx(1000 * usd["api"])
    assert fixed["ingest_usd"] == pytest.approx(1000 * usd["front"])
    # S3 requests are billed beside DynamoDB, under store_usd
    assert fixed["store_usd"] == pytest.approx(1000 * sum(
        usd[k] for k in ("ddb_write", "ddb_read", "s3_put", "s3_get")))


def test_run_and_path_costs_take_the_shape():
    shape = BulkShape(texts_per_call=100)
    sizes = np.full(100, 10)
    run = run_cost(1000, sizes, np.full(100, 200), np.full(100, 1024), PRICING, shape=shape)
    # 100 SendMessageBatch calls, then a receive and a delete per batch of 10
    assert run.queue_usd == pytest.approx((100 + 2 * 100) * SQS)
    bill = InferBill.from_invocations(np.full(100, 200), np.full(100, 1024))
    path = bulk_cost(1000, bill, receive_calls=100, duration_s=0.0, queues=1, pricing=PRICING,
                     shape=shape)
    for item in ("queue_usd", "api_usd", "ingest_usd", "store_usd"):
        assert getattr(path, item) == pytest.approx(getattr(run, item)), item


@pytest.mark.parametrize("kwargs", [{"texts_per_call": 0}, {"texts_per_call": 101},
                                    {"reads_per_call": -1}, {"texts_per_batch": 0.5},
                                    {"texts_per_call": 10, "texts_per_job_batch": 11}])
def test_a_bad_shape_names_the_bad_value(kwargs):
    with pytest.raises(ValueError, match="must|need"):
        BulkShape(**kwargs)
