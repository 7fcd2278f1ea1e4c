"""Ledger invariants: every entry balances per currency; non-negative accounts stay so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain import ledger
from veix.domain.errors import InsufficientFunds, InvariantViolation
from veix.domain.money import Money

NOW = datetime(2026, 11, 26, tzinfo=UTC)
BIZ = uuid.uuid4()


def test_transfer_builds_a_balanced_entry():
    lines = ledger.transfer(ledger.funding_source("sandbox", "EUR"),
                            ledger.business_available(BIZ, "EUR"), Money.of("10.50", "EUR"))
    entry = ledger.journal_entry(business_id=BIZ, kind="funding", description="t", lines=lines,
                                 occurred_at=NOW)
    assert sum(line.amount for line in entry.lines) == 0
    assert [line.amount for line in entry.lines] == [Decimal("-10.50"), Decimal("10.50")]


def test_refuses_an_unbalanced_entry():
    a = ledger.business_available(BIZ, "EUR")
    b = ledger.funding_source("sandbox", "EUR")
    with pytest.raises(InvariantViolation):
        ledger.journal_entry(business_id=BIZ, kind="x", description="x", occurred_at=NOW,
                             lines=[ledger.PostingLine(a, Decimal("1")),
                                    ledger.PostingLine(b, Decimal("-0.99"))])


def test_refuses_an_entry_balanced_only_across_currencies():
    eur = ledger.business_available(BIZ, "EUR")
    usd = ledger.funding_source("sandbox", "USD")
    with pytest.raises(InvariantViolation):
        ledger.journal_entry(business_id=BIZ, kind="x", description="x", occurred_at=NOW,
                             lines=[ledger.PostingLine(eur, Decimal("1")),
                                    ledger.PostingLine(usd, Decimal("-1"))])


def test_refuses_single_posting_and_zero_postings():
    a = ledger.business_available(BIZ, "EUR")
    with pytest.raises(InvariantViolation):
        ledger.journal_entry(business_id=BIZ, kind="x", description="x", occurred_at=NOW,
                             lines=[ledger.PostingLine(a, Decimal("0"))])


def test_refuses_amounts_finer_than_the_currency():
    a = ledger.business_available(BIZ, "JPY")
    b = ledger.funding_source("sandbox", "JPY")
    with pytest.raises(Exception):
        ledger.journal_entry(business_id=BIZ, kind="x", description="x", occurred_at=NOW,
                             lines=[ledger.PostingLine(a, Decimal("1.5")),
                                    ledger.PostingLine(b, Decimal("-1.5"))])


def test_a_business_balance_never_goes_below_zero():
    with pytest.raises(InsufficientFunds):
        ledger.apply_posting(Decimal("5.00"), Decimal("-5.01"), allow_negative=False)
    assert ledger.apply_posting(Decimal("5.00"), Decimal("-5.00"), allow_negative=False) == 0


def test_an_external_source_may_go_negative():
    assert ledger.apply_posting(Decimal("0"), Decimal("-100"), allow_negative=True) == Decimal("-100")


cents = st.integers(min_value=1, max_value=10**12).map(lambda c: Decimal(c).scaleb(-2))


@given(st.lists(cents, min_size=1, max_size=30))
def test_any_sequence_of_transfers_keeps_the_ledger_balanced(amounts):
    src = ledger.funding_source("sandbox", "EUR")
    dst = ledger.business_available(BIZ, "EUR")
    balances = {src.code: Decimal(0), dst.code: Decimal(0)}
    for amount in amounts:
        entry = ledger.journal_entry(
            business_id=BIZ, kind="funding", description="p", occurred_at=NOW,
            lines=ledger.transfer(src, dst, Money.of(amount, "EUR")))
        for line in entry.lines:
            balances[line.account.code] = ledger.apply_posting(
                balances[line.account.code], line.amount,
                allow_negative=line.account.allow_negative)
    assert sum(balances.values()) == 0
    assert balances[dst.code] == sum(amounts)
