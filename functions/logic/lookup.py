"""A request's status for its caller: results are bound to the tenant that created them."""

from __future__ import annotations

from collections.abc import Sequence
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


def tenant_views(store: ResultStore, request_ids: Sequence[str], caller: str
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """The caller's requests among `request_ids` (distinct), in order, and the ids it cannot see.

    Unknown ids and other tenants' ids are alike "missing", as tenant_view's None is.
    """
    views = store.get_many(request_ids)
    found = [views[i] for i in request_ids if i in views and views[i].get("tenant") == caller]
    seen = {view["id"] for view in found}
    return found, [i for i in request_ids if i not in seen]
