"""Benchmark (modelled, not measured): the bulk path's fixed cost per 1M texts, by line item.

"Fixed" is the issue's definition: everything but the infer function's compute (HTTP API, the
front functions, SQS send, receive and delete, DynamoDB, S3, the infer function's request
fees). Logs and egress are listed apart. Three ways to submit the same texts:
- alone: one text per POST, each with its PENDING and result items (the first edition);
- list100_items: lists of 100 per POST, each text still with its two items;
- list100_s3_job: lists of 100 as jobs with S3 output: no per-text item (functions/shared/jobs.py).
The batches come from a plan (default: the shipped managed plan) under a backlog: each buffer's
batches are full (its max_batch_size), and a buffer's share of texts is measured on the
workload's texts (Pang & Lee, 70% sentences / 30% passages, seed 0), tokenized as ingest does.
A list's texts in one buffer are consecutive messages, so a job meets about
n_b / B_b + 1 - 1/B_b batches there (a run of n_b texts at a random offset in batches of B_b).
Writes benchmarks/results/bulk_cost.json.

    .venv/bin/python benchmarks/bench_bulk_cost.py [--plan managed] [--texts 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buffers.plan import Plan  # noqa: E402
from buffers.plan_files import default_plan_path, load_plan  # noqa: E402
from functions.shared.tokenizer import count_tokens  # noqa: E402
from optimizer.platform.bulk_items import SQS_BATCH_MAX, BulkShape, per_text_usd  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.workload.texts import sample_texts  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "bulk_cost.json"
LIST_TEXTS = 100
TARGET_USD_PER_MILLION = 0.60
MILLION = 1e6


def buffer_shares(plan: Plan, lengths: np.ndarray) -> list[float]:
    """The share of texts each buffer takes, by token length."""
    return [float(np.mean((lengths >= s.min_length) & (lengths <= s.max_length)))
            for s in plan.buffers]


def batch_figures(plan: Plan, shares: list[float], list_texts: int) -> dict[str, float]:
    """Per text under full batches: batches, receive + delete calls, and a job's (batch, job)
    pairs, from each buffer's share and batch size."""
    sizes = [float(s.max_batch_size) for s in plan.buffers]
    batches = sum(f / b for f, b in zip(shares, sizes, strict=True))
    sqs_calls = sum(f * 2 * math.ceil(b / SQS_BATCH_MAX) / b
                    for f, b in zip(shares, sizes, strict=True))
    touched = sum(n / b + 1 - 1 / b for f, b in zip(shares, sizes, strict=True)
                  if (n := f * list_texts) > 0)
    return {"texts_per_batch": 1 / batches, "receive_delete_calls_per_text": sqs_calls,
            "job_batches_per_list": touched, "texts_per_job_batch": list_texts / touched}


def line_items(shape: BulkShape, figures: dict[str, float], pricing: Pricing
               ) -> dict[str, float]:
    """USD per 1M texts of each fixed line item, the total, and whether it meets the target."""
    usd = {f"{k}_usd": v * MILLION for k, v in per_text_usd(shape, pricing).items()}
    usd["sqs_receive_delete_usd"] = (figures["receive_delete_calls_per_text"]
                                     * pricing.sqs_request_usd * MILLION)
    usd["infer_request_usd"] = pricing.lambda_request_usd / figures["texts_per_batch"] * MILLION
    total = sum(usd.values())
    return {**{k: round(v, 5) for k, v in usd.items()}, "fixed_total_usd": round(total, 4),
            "meets_target": total <= TARGET_USD_PER_MILLION}


def run(plan_name: str, n_texts: int) -> dict[str, Any]:
    plan = load_plan(default_plan_path(plan_name))
    pricing = Pricing()
    texts = sample_texts(n_texts, np.random.default_rng(0))
    lengths = np.array([count_tokens(t).length for t in texts])
    shares = buffer_shares(plan, lengths)
    figures = batch_figures(plan, shares, LIST_TEXTS)
    per_batch = figures["texts_per_batch"]
    shapes = {
        "alone": BulkShape(),
        "list100_items": BulkShape(texts_per_call=LIST_TEXTS),
        "list100_s3_job": BulkShape(texts_per_call=LIST_TEXTS, s3_job=True,
                                    texts_per_batch=per_batch,
                                    texts_per_job_batch=min(figures["texts_per_job_batch"],
                                                            per_batch)),
    }
    sensitivity = {}
    for batch in (10, 20, 40, 100):
        shape = BulkShape(texts_per_call=LIST_TEXTS, s3_job=True, texts_per_batch=batch)
        sensitivity[f"batch_{batch}"] = line_items(
            shape, {**figures, "texts_per_batch": batch,
                    "receive_delete_calls_per_text": 2 * math.ceil(batch / SQS_BATCH_MAX) / batch},
            pricing)["fixed_total_usd"]
    return {
        "kind": "modelled (optimizer/platform/bulk_items.py), not measured on AWS",
        "unit": "USD per 1M texts; fixed = all but the infer function's compute",
        "target_usd_per_million": TARGET_USD_PER_MILLION,
        "pricing_as_of": pricing.as_of, "plan": plan.name,
        "buffers": [{"name": s.name, "share": round(f, 4), "batch": s.max_batch_size}
                    for s, f in zip(plan.buffers, shares, strict=True)],
        "batches": {k: round(v, 3) for k, v in figures.items()},
        "shapes": {name: asdict(shape) for name, shape in shapes.items()},
        "line_items_per_million": {name: line_items(shape, figures, pricing)
                                   for name, shape in shapes.items()},
        "s3_job_total_by_batch_size": sensitivity,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="managed", help="shipped plan whose batches to use")
    parser.add_argument("--texts", type=int, default=2000, help="texts to measure shares on")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    report = run(args.plan, args.texts)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, items in report["line_items_per_million"].items():
        print(f"{name:<16} ${items['fixed_total_usd']:.3f} per 1M  {items}")
    return 0 if report["line_items_per_million"]["list100_s3_job"]["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
