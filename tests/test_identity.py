"""Tenant identity: authorizer context on AWS, a header only where the stack trusts it."""

from __future__ import annotations

import pytest

from functions.shared.identity import (
    TENANT_HEADER,
    authenticated_tenant,
    iam_principal,
    submitting_tenant,
)
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


ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/mbs-client"


def _iam(user_arn: str | None = None, user_id: str | None = None) -> dict:
    fields = {k: v for k, v in (("userArn", user_arn), ("userId", user_id)) if v}
    return _event({"iam": {"accountId": "123456789012", **fields}})


def test_assumed_role_tenant_is_bound_to_the_role_not_the_session():
    # GIVEN the same client calling under two sessions of one role (re-assumed in between)
    first = authenticated_tenant(_iam(f"{ROLE_ARN}/session-1", "AROAEXAMPLE:session-1"), False)
    again = authenticated_tenant(_iam(f"{ROLE_ARN}/botocore-session-17", "AROAEXAMPLE:b-17"),
                                 False)
    # THEN both are one tenant, and another role is another tenant
    other = authenticated_tenant(_iam("arn:aws:sts::123456789012:assumed-role/other/session-1"),
                                 False)
    assert first == again != other
    assert first == authenticated_tenant(_iam(ROLE_ARN), False)


def test_assumed_role_id_without_an_arn_drops_the_session_too():
    first = authenticated_tenant(_iam(user_id="AROAEXAMPLE123:alice"), False)
    assert first == authenticated_tenant(_iam(user_id="AROAEXAMPLE123:bob"), False)
    assert first == "AROAEXAMPLE123"


def test_iam_user_and_federated_arns_are_kept_whole():
    user = "arn:aws:iam::123456789012:user/alice"
    federated = "arn:aws-cn:sts::123456789012:federated-user/alice"
    assert iam_principal(user, "AIDAEXAMPLE") == user
    assert iam_principal(federated, None) == federated
    assert iam_principal("arn:aws-us-gov:sts::123456789012:assumed-role/r/s", None) == (
        "arn:aws-us-gov:sts::123456789012:assumed-role/r")
    assert iam_principal(None, None) is None
