"""The results table's item layout: attribute names, the float16 embedding, the public view, and
an item's size as DynamoDB counts it. Pure.

A DONE item must stay under 1 KB, so that storing a result costs one write unit (DynamoDB
developer guide, "DynamoDB item sizes and formats": an item's size is the sum of its attribute
names and values, and a write unit covers 1 KB; the guide recommends short names for that
reason). So:
- the embedding is stored as 384 little-endian float16 (768 bytes). Its cosine to the float32
  vector is >= 0.9999 (float16 keeps 11 significant bits; tests/test_store_settings.py checks);
- the attributes a result adds have one-letter names (RESULT_ATTRIBUTES maps them), and the batch
  id is 16 raw bytes. The names the PENDING item has (status, tenant, enqueued_at_ms, ...) stay:
  `mbs audit` and the TTL read them.
With a tenant of <= 40 characters and a buffer name of <= 16, a DONE item is at most 1,010
bytes (tests/test_store_settings.py measures it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"
EMBEDDING_DTYPE = "<f2"
LEGACY_EMBEDDING_DTYPE = "<f4"  # items written before float16 (attribute "embedding")
# Result attribute -> its stored name.
RESULT_ATTRIBUTES = {"embedding": "e", "batch_id": "b", "batch_size": "n", "padded_length": "p",
                     "batch_real_tokens": "r", "queue_wait_ms": "w", "inference_ms": "i",
                     "completed_at_ms": "c", "device": "d"}
_PUBLIC_NAMES = {stored: public for public, stored in RESULT_ATTRIBUTES.items()}
_STRING_FIELDS = ("tenant", "buffer", "device", "reason", "last_error")
_INT_FIELDS = ("length", "full_length", "enqueued_at_ms", "batch_size", "padded_length",
               "batch_real_tokens", "queue_wait_ms", "completed_at_ms", "slo_ms", "attempts")
ONE_WRITE_UNIT_BYTES = 1024


def encode_embedding(vector: np.ndarray) -> bytes:
    """A unit vector as little-endian float16 bytes (2 per dimension)."""
    return np.asarray(vector, dtype=np.float32).astype(EMBEDDING_DTYPE).tobytes()


def decode_embedding(raw: bytes, dtype: str = EMBEDDING_DTYPE) -> list[float]:
    """The stored vector as floats. For float16, each is the shortest decimal that reads back as
    the same float16 ('0.01915', not the exact binary value '0.0191497802734375'): a JSON reply
    of 384 values is then about 3.5 KB instead of 8.4 KB, and carries the same information."""
    values = np.frombuffer(raw, dtype=dtype)
    if values.dtype == np.float16:
        return [float(str(v)) for v in values]
    return values.astype(float).tolist()


def public_view(item: dict[str, Any]) -> dict[str, Any]:
    """A results-table item -> the JSON the results API returns."""
    fields = {_PUBLIC_NAMES.get(name, name): value for name, value in item.items()}
    out: dict[str, Any] = {"id": fields["id"]["S"], "status": fields["status"]["S"]}
    for key in _STRING_FIELDS:
        if key in fields:
            out[key] = fields[key]["S"]
    if "batch_id" in fields:
        value = fields["batch_id"]
        out["batch_id"] = value["S"] if "S" in value else bytes(value["B"]).hex()
    for key in _INT_FIELDS:
        if key in fields:
            out[key] = int(fields[key]["N"])
    if "inference_ms" in fields:
        out["inference_ms"] = float(fields["inference_ms"]["N"])
    out["truncated"] = out.get("full_length", 0) > out.get("length", 0)
    if "embedding" in fields:
        stored = bytes(fields["embedding"]["B"])
        dtype = EMBEDDING_DTYPE if "e" in item else LEGACY_EMBEDDING_DTYPE
        out["embedding"] = decode_embedding(stored, dtype)
    return out


def _number_bytes(text: str) -> int:
    """(1 byte per two significant digits) + 1, leading and trailing zeroes trimmed."""
    digits = Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return (significant + 1) // 2 + 1


def _value_bytes(value: dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return _number_bytes(raw)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: v}) for v in raw)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + _value_bytes(v) for k, v in raw.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it for capacity units (names plus values)."""
    return sum(len(name.encode("utf-8")) + _value_bytes(value) for name, value in item.items())
