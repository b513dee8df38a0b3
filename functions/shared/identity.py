"""Who is calling: the tenant from the authenticated identity (AWS) or a trusted header (local)."""

from __future__ import annotations

import hashlib
from typing import Any

from functions.shared.submission import DEFAULT_TENANT, TENANT_PATTERN, InputError

TENANT_HEADER = "x-mbs-tenant"


def _safe(identity: str) -> str:
    """Identities that are not already tenant-shaped (ARNs, emails) become a stable digest."""
    if TENANT_PATTERN.fullmatch(identity):
        return identity
    return "id-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def authenticated_tenant(event: dict[str, Any], trust_header: bool) -> str | None:
    """The caller's tenant from API Gateway's authorizer context, or the local header."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if subject := claims.get("sub") or claims.get("client_id"):
        return _safe(str(subject))
    iam = authorizer.get("iam") or {}
    if principal := iam.get("userArn") or iam.get("userId"):
        return _safe(str(principal))
    if trust_header:
        header = {k.lower(): v for k, v in (event.get("headers") or {}).items()}.get(TENANT_HEADER)
        if header is not None:
            if not TENANT_PATTERN.fullmatch(header):
                raise InputError(400, "invalid_tenant",
                                 f"header {TENANT_HEADER} must be 1-64 letters, digits, '_', '-' "
                                 f"or '.', got {header!r}")
            return header
    return None


def submitting_tenant(identity: str | None, body_tenant: str | None) -> str:
    """The tenant a new request belongs to; a body tenant may not contradict the identity."""
    if identity is None:
        return body_tenant or DEFAULT_TENANT
    if body_tenant is not None and body_tenant != identity:
        raise InputError(403, "tenant_mismatch",
                         f"field 'tenant' {body_tenant!r} does not match the caller's identity")
    return identity
