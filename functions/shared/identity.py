"""Who is calling: the tenant from the authenticated identity (AWS) or a trusted header (local)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from functions.shared.submission import DEFAULT_TENANT, TENANT_PATTERN, InputError

TENANT_HEADER = "x-mbs-tenant"


def _safe(identity: str) -> str:
    """Identities that are not already tenant-shaped (ARNs, emails) become a stable digest."""
    if TENANT_PATTERN.fullmatch(identity):
        return identity
    return "id-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


# An assumed role's ARN ends in the session name the caller chose (IAM user guide, "IAM
# identifiers": arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION), and its unique id is
# ROLE_ID:SESSION (the aws:userid policy variable). The session changes at every AssumeRole, so the
# tenant is bound to the role: the ARN or id without the session part.
_ASSUMED_ROLE_ARN = re.compile(r"^(arn:[\w-]+:sts::\d{12}:assumed-role/[^/]+)/.+$")
_ROLE_SESSION_ID = re.compile(r"^(AROA[A-Z0-9]+):.+$")


def iam_principal(user_arn: str | None, user_id: str | None) -> str | None:
    """The stable IAM principal: an assumed role's ARN (or id) without the session name."""
    if user_arn:
        found = _ASSUMED_ROLE_ARN.fullmatch(user_arn)
        return found.group(1) if found else user_arn
    if user_id:
        found = _ROLE_SESSION_ID.fullmatch(user_id)
        return found.group(1) if found else user_id
    return None


def authenticated_tenant(event: dict[str, Any], trust_header: bool) -> str | None:
    """The caller's tenant from API Gateway's authorizer context, or the local header."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if subject := claims.get("sub") or claims.get("client_id"):
        return _safe(str(subject))
    iam = authorizer.get("iam") or {}
    if principal := iam_principal(iam.get("userArn"), iam.get("userId")):
        return _safe(principal)
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
