"""Which role may do what: the role-permission matrix, decided by Casbin once at startup.

Why precompute: a user's role is per business and comes from the membership row the caller has
already loaded; the only question left is "may this role do this?". Casbin answers it from
``model.conf`` and ``policy.csv`` (readable, reviewable, with ``keyMatch`` wildcards), but its
``enforce`` is synchronous and evaluates an expression each call. So :meth:`Authorizer.load` asks
Casbin once for every (role, permission) pair and keeps a ``frozenset`` per role; a request-time
check is a set lookup and never blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path

import casbin
from casbin.util import key_match

ROLES: tuple[str, ...] = ("owner", "admin", "finance", "developer", "cardholder", "viewer")

PERMISSION_DESCRIPTIONS: Mapping[str, str] = {
    "business:read": "See the business profile and settings.",
    "business:update": "Change the business profile and settings.",
    "business:verify": "Submit and manage business verification (KYB).",
    "members:read": "See team members and their roles.",
    "members:invite": "Invite new team members.",
    "members:manage": "Change members' roles and remove members.",
    "owners:manage": "Grant, change or remove the owner role.",
    "api_keys:read": "See API keys (prefix only, never the secret).",
    "api_keys:manage": "Create and revoke API keys.",
    "ledger:read": "See accounts, balances and ledger entries.",
    "funds:create": "Add funds to the business balance.",
    "cards:read": "See all cards of the business.",
    "cards:read_own": "See the cards issued to oneself.",
    "cards:issue": "Issue new virtual cards.",
    "cards:manage": "Freeze, unfreeze and cancel cards.",
    "cards:controls": "Change card limits and spending controls (raising needs step-up).",
    "cards:reveal": "Reveal a card's full number and CVC (needs step-up).",
    "authorizations:decide": "Approve or decline card authorizations under review.",
    "transactions:read": "See transactions: fundings, payments, card authorizations.",
    "payments:create": "Create payments.",
    "payments:refund": "Refund payments.",
    "payments:configure": "Choose the gateways payments are routed to, and the Stripe account.",
    "disputes:manage": "Respond to and manage disputes.",
    "webhooks:manage": "Create, change and delete webhook endpoints.",
    "analytics:read": "See analytics and reports.",
    "billing:manage": "Manage the business's plan, billing and payout details.",
    "invoices:manage": "Create and send invoices.",
    "audit:read": "Read the audit log.",
}

PERMISSIONS: tuple[str, ...] = tuple(PERMISSION_DESCRIPTIONS)

_PACKAGE = "veix.security"
_MODEL_FILE = "model.conf"
_POLICY_FILE = "policy.csv"


class Authorizer:
    """An immutable role -> permissions matrix; build it once with :meth:`load`."""

    def __init__(self, matrix: Mapping[str, frozenset[str]]) -> None:
        unknown = {p for perms in matrix.values() for p in perms} - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions in matrix: {sorted(unknown)}")
        extra = set(matrix) - set(ROLES)
        if extra:
            raise ValueError(f"unknown roles in matrix: {sorted(extra)}")
        self._matrix: dict[str, frozenset[str]] = {
            role: frozenset(matrix.get(role, frozenset())) for role in ROLES
        }

    @classmethod
    def load(cls, model_path: Path | None = None, policy_path: Path | None = None) -> Authorizer:
        """Read the model and policy (by default the files shipped in this package).

        Raises ``ValueError`` when the policy names an unknown role or a pattern that matches no
        permission, so a typo fails at startup instead of silently denying.
        """
        package = files(_PACKAGE)
        with ExitStack() as stack:
            model = model_path or stack.enter_context(as_file(package / _MODEL_FILE))
            policy = policy_path or stack.enter_context(as_file(package / _POLICY_FILE))
            # casbin logs the whole model and policy at INFO on every load: keep it quiet.
            logging.getLogger("casbin").setLevel(logging.WARNING)
            enforcer = casbin.Enforcer(str(model), str(policy))
        _check_policy(enforcer.get_policy())
        matrix = {
            role: frozenset(p for p in PERMISSIONS if enforcer.enforce(role, p)) for role in ROLES
        }
        return cls(matrix)

    def allowed(self, role: str, permission: str) -> bool:
        """Tell whether ``role`` may do ``permission``; an unknown role may do nothing.

        An unknown permission is a bug in the caller, so it raises ``ValueError``.
        """
        if permission not in PERMISSION_DESCRIPTIONS:
            raise ValueError(f"unknown permission: {permission!r}")
        return permission in self._matrix.get(role, frozenset())

    def permissions_of(self, role: str) -> frozenset[str]:
        """Everything ``role`` may do (empty for an unknown role)."""
        return self._matrix.get(role, frozenset())

    def roles(self) -> tuple[str, ...]:
        """The roles, most powerful first."""
        return ROLES

    def markdown_table(self) -> str:
        """The matrix as a Markdown table for the README: a row per permission."""
        header = "| Permission | Description | " + " | ".join(ROLES) + " |"
        rule = "|---|---|" + "|".join(":-:" for _ in ROLES) + "|"
        rows = [
            f"| `{perm}` | {PERMISSION_DESCRIPTIONS[perm]} | "
            + " | ".join("✓" if perm in self._matrix[role] else " " for role in ROLES)
            + " |"
            for perm in PERMISSIONS
        ]
        return "\n".join([header, rule, *rows]) + "\n"


def _check_policy(rules: list[list[str]]) -> None:
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"policy rule must be 'p, role, permission': {rule}")
        role, pattern = rule
        if role not in ROLES:
            raise ValueError(f"policy names unknown role {role!r}")
        if not any(key_match(perm, pattern) for perm in PERMISSIONS):
            raise ValueError(f"policy pattern {pattern!r} for {role!r} matches no permission")
