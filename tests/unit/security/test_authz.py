"""Specification of the role-permission matrix (veix.security.authz)."""

from __future__ import annotations

from pathlib import Path

import casbin
import pytest

from veix.security.authz import PERMISSION_DESCRIPTIONS, PERMISSIONS, ROLES, Authorizer

# The matrix from the design brief, written out independently of policy.csv.
ALL = {
    "business:read", "business:update", "business:verify",
    "members:read", "members:invite", "members:manage", "owners:manage",
    "api_keys:read", "api_keys:manage",
    "ledger:read", "funds:create",
    "cards:read", "cards:read_own", "cards:issue", "cards:manage", "cards:controls",
    "cards:reveal",
    "authorizations:decide", "transactions:read",
    "payments:create", "payments:refund", "payments:configure", "disputes:manage",
    "webhooks:manage", "analytics:read", "billing:manage", "invoices:manage", "audit:read",
}  # fmt: skip

EXPECTED: dict[str, set[str]] = {
    "owner": ALL,
    "admin": ALL - {"owners:manage"},
    "finance": {
        "business:read", "members:read", "ledger:read", "funds:create",
        "cards:read", "cards:read_own", "cards:issue", "cards:manage", "cards:controls",
        "authorizations:decide", "transactions:read", "payments:create", "payments:refund",
        "disputes:manage", "analytics:read", "billing:manage", "invoices:manage",
    },
    "developer": {
        "business:read", "members:read", "api_keys:read", "api_keys:manage",
        "webhooks:manage", "ledger:read", "cards:read", "cards:read_own",
        "transactions:read", "payments:create", "analytics:read",
    },
    "cardholder": {"business:read", "cards:read_own", "cards:reveal"},
    "viewer": {
        "business:read", "members:read", "ledger:read", "cards:read", "cards:read_own",
        "transactions:read", "analytics:read",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    return Authorizer.load()


def test_permission_list_is_exactly_the_documented_one() -> None:
    assert len(PERMISSIONS) == len(set(PERMISSIONS)) == 28
    assert set(PERMISSIONS) == ALL


def test_every_permission_has_a_one_line_description() -> None:
    assert set(PERMISSION_DESCRIPTIONS) == set(PERMISSIONS)
    for description in PERMISSION_DESCRIPTIONS.values():
        assert description.strip() and "\n" not in description


def test_roles_are_the_six_documented_ones_most_powerful_first(authorizer: Authorizer) -> None:
    assert authorizer.roles() == (
        "owner", "admin", "finance", "developer", "cardholder", "viewer"
    )  # fmt: skip


def test_shipped_policy_yields_exactly_the_documented_matrix(authorizer: Authorizer) -> None:
    actual = {role: set(authorizer.permissions_of(role)) for role in authorizer.roles()}
    assert actual == EXPECTED


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("permission", sorted(ALL))
def test_allowed_agrees_with_the_matrix_for_every_pair(
    authorizer: Authorizer, role: str, permission: str
) -> None:
    assert authorizer.allowed(role, permission) is (permission in EXPECTED[role])


def test_only_an_owner_may_manage_owners(authorizer: Authorizer) -> None:
    assert [r for r in ROLES if authorizer.allowed(r, "owners:manage")] == ["owner"]


def test_finance_may_not_reveal_card_numbers(authorizer: Authorizer) -> None:
    assert authorizer.allowed("finance", "cards:manage")
    assert not authorizer.allowed("finance", "cards:reveal")


def test_unknown_role_may_do_nothing(authorizer: Authorizer) -> None:
    assert authorizer.allowed("superuser", "business:read") is False
    assert authorizer.allowed("", "business:read") is False
    assert authorizer.permissions_of("superuser") == frozenset()


def test_unknown_permission_is_a_programming_error(authorizer: Authorizer) -> None:
    with pytest.raises(ValueError, match="cards:delete"):
        authorizer.allowed("owner", "cards:delete")
    with pytest.raises(ValueError):
        authorizer.allowed("owner", "*")


def test_request_time_checks_never_call_casbin(
    authorizer: Authorizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> bool:
        raise AssertionError("casbin must not run per request")

    monkeypatch.setattr(casbin.Enforcer, "enforce", boom)
    assert authorizer.allowed("viewer", "ledger:read") is True
    assert authorizer.permissions_of("owner") == frozenset(ALL)


def test_permission_sets_are_immutable(authorizer: Authorizer) -> None:
    assert isinstance(authorizer.permissions_of("admin"), frozenset)


def test_markdown_table_has_a_row_per_permission_and_a_column_per_role(
    authorizer: Authorizer,
) -> None:
    lines = authorizer.markdown_table().splitlines()
    assert lines[0] == (
        "| Permission | Description | owner | admin | finance | developer | cardholder | viewer |"
    )
    rows = lines[2:]
    assert len(rows) == len(PERMISSIONS)
    for permission, row in zip(PERMISSIONS, rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == f"`{permission}`"
        assert cells[1] == PERMISSION_DESCRIPTIONS[permission]
        marks = {role for role, cell in zip(ROLES, cells[2:], strict=True) if cell == "✓"}
        blanks = {role for role, cell in zip(ROLES, cells[2:], strict=True) if cell == ""}
        assert marks == {r for r in ROLES if permission in EXPECTED[r]}
        assert marks | blanks == set(ROLES)


def _write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.csv"
    path.write_text(text)
    return path


def test_wildcards_in_a_custom_policy_grant_a_whole_family(tmp_path: Path) -> None:
    policy = _write_policy(tmp_path, "p, finance, cards:*\np, viewer, *\n")
    custom = Authorizer.load(policy_path=policy)
    assert custom.permissions_of("finance") == {p for p in ALL if p.startswith("cards:")}
    assert custom.permissions_of("viewer") == frozenset(ALL)
    assert custom.permissions_of("owner") == frozenset()


def test_policy_with_a_typo_in_a_permission_fails_at_load(tmp_path: Path) -> None:
    policy = _write_policy(tmp_path, "p, viewer, card:read\n")
    with pytest.raises(ValueError, match="card:read"):
        Authorizer.load(policy_path=policy)


def test_policy_with_an_unknown_role_fails_at_load(tmp_path: Path) -> None:
    policy = _write_policy(tmp_path, "p, auditor, audit:read\n")
    with pytest.raises(ValueError, match="auditor"):
        Authorizer.load(policy_path=policy)
