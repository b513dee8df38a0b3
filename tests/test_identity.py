"""Tenant identity: authorizer context on AWS, a header only where the stack trusts it."""

from __future__ import annotations

import pytest

from functions.shared.identity import TENANT_HEADER, authenticated_tenant, submitting_tenant
from functions.shared.submission import InputError


def _event(authorizer: dict | None = None, headers: dict | None = None) -> dict:
    context = {"authorizer": authorizer} if authorizer is not None else {}
    return {"requestContext": context, "headers": headers or {}}


def test_jwt_subject_is_the_tenant():
    event = _event({"jwt": {"claims": {"sub": "acme"}}})
    assert authenticated_tenant(event, trust_header=False) == "acme"


def test_iam_principal_becomes_a_stable_tenant_digest():
    arn = "arn:aws:iam::123456789012:user/alice"
    first = authenticated_tenant(_event({"iam": {"userArn": arn}}), trust_header=False)
    again = authenticated_tenant(_event({"iam": {"userArn": arn}}), trust_header=False)
    other = authenticated_tenant(_event({"iam": {"userArn": arn + "x"}}), trust_header=False)
    assert first == again != other
    assert first.startswith("id-") and len(first) == 35


def test_header_is_ignored_unless_trusted():
    event = _event(headers={TENANT_HEADER: "mallory"})
    assert authenticated_tenant(event, trust_header=False) is None
    assert authenticated_tenant(event, trust_header=True) == "mallory"


def test_authorizer_wins_over_the_header():
    event = _event({"jwt": {"claims": {"sub": "acme"}}}, {TENANT_HEADER: "mallory"})
    assert authenticated_tenant(event, trust_header=True) == "acme"


def test_malformed_trusted_header_is_a_400():
    with pytest.raises(InputError) as exc:
        authenticated_tenant(_event(headers={TENANT_HEADER: "a b"}), trust_header=True)
    assert exc.value.status == 400 and "'a b'" in exc.value.message


def test_body_tenant_may_not_contradict_the_identity():
    assert submitting_tenant(None, None) == "default"
    assert submitting_tenant(None, "acme") == "acme"
    assert submitting_tenant("acme", None) == "acme"
    assert submitting_tenant("acme", "acme") == "acme"
    with pytest.raises(InputError) as exc:
        submitting_tenant("acme", "globex")
    assert exc.value.status == 403 and "'globex'" in exc.value.message
