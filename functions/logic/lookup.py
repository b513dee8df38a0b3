"""A request's status for its caller: results are bound to the tenant that created them."""

from __future__ import annotations

from typing import Any

from functions.shared.store import ResultStore


def tenant_view(store: ResultStore, request_id: str, caller: str) -> dict[str, Any] | None:
    """The request's public view, or None when it is unknown or another tenant's.

    Another tenant gets the same None as an unknown id, so ids cannot be probed across tenants.
    """
    item = store.get(request_id)
    if item is None or item.get("tenant") != caller:
        return None
    return item
