"""The schema, as SQLAlchemy Core tables (the hot paths use Core, not the ORM)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    select,
    text,
)

from veix.persistence.types import JSONType, MoneyType, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users", metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(255)),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
    Column("step_up_secret", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

businesses = Table(
    "businesses", metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tax_id", String(64)),
    Column("registration_date", UTCDateTime, nullable=False),
    Column("legal_address", JSONType, nullable=False),
    Column("contact_info", JSONType, nullable=False),
    Column("verification_status", String(16), nullable=False),
    Column("compliance_status", JSONType, nullable=False),
    Column("default_currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

memberships = Table(
    "memberships", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False),
    Column("user_id", Uuid, ForeignKey("users.id"), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("invited_at", UTCDateTime, nullable=False),
    Column("joined_at", UTCDateTime),
    Column("invited_by", Uuid),
    UniqueConstraint("business_id", "user_id", name="uq_memberships_business_user"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("created_by", Uuid),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id"), nullable=False, index=True),
    Column("family_id", Uuid, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

ledger_accounts = Table(
    "ledger_accounts", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), index=True),
    Column("code", String(128), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("allow_negative", Boolean, nullable=False),
    Column("balance", MoneyType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

journal_entries = Table(
    "journal_entries", metadata,
    Column("id", Uuid, primary_key=True),
    # Not indexed: the ledger is read whole (``veix ledger verify``); balances
    # live on ledger_accounts. Each index costs every card authorization.
    Column("business_id", Uuid, ForeignKey("businesses.id")),
    Column("kind", String(32), nullable=False),
    Column("description", String(200), nullable=False),
    Column("transaction_id", Uuid),
    Column("created_at", UTCDateTime, nullable=False),
)

postings = Table(
    "postings", metadata,
    Column("id", Uuid, primary_key=True),
    Column("entry_id", Uuid, ForeignKey("journal_entries.id"), nullable=False, index=True),
    Column("account_id", Uuid, ForeignKey("ledger_accounts.id"), nullable=False),  # not indexed, as above
    Column("amount", MoneyType, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("pending", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)

transactions = Table(
    "transactions", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("amount", MoneyType, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method", String(32)),
    Column("gateway", String(16)),
    Column("gateway_reference", String(128)),
    Column("customer_id", String(128)),
    Column("risk_score", Float, nullable=False, default=0.0),
    Column("processing_fee", MoneyType, nullable=False),
    Column("refunded_amount", MoneyType, nullable=False),
    Column("error_code", String(64)),
    Column("error_message", String(500)),
    Column("idempotency_key", String(255)),
    Column("metadata", JSONType, nullable=False),
    Column("next_action", JSONType),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Payments (migration 0004).
    Column("parent_id", Uuid),
    Column("payment_method_id", Uuid),
    Column("captured_amount", MoneyType, nullable=False, server_default="0"),
    Column("description", String(500)),
    Column("routing", JSONType),
    Column("gateway_data", JSONType),
    Index("ix_transactions_business_created", "business_id", "created_at", "id"),
    # Partial: card authorizations (the hot insert path) pay nothing for these.
    Index("ix_transactions_gateway_reference", "gateway", "gateway_reference",
          postgresql_where=text("parent_id IS NULL AND type = 'payment'"),
          sqlite_where=text("parent_id IS NULL AND type = 'payment'")),
    Index("ix_transactions_parent", "parent_id", "created_at",
          postgresql_where=text("parent_id IS NOT NULL"), sqlite_where=text("parent_id IS NOT NULL")),
)

virtual_cards = Table(
    "virtual_cards", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False),
    Column("cardholder_id", Uuid, ForeignKey("users.id")),
    Column("card_number_encrypted", LargeBinary, nullable=False),
    Column("card_number_hash", String(64), nullable=False, unique=True),
    Column("cvv_encrypted", LargeBinary, nullable=False),
    Column("vault_key_id", String(32), nullable=False),
    Column("public_token", String(64), nullable=False, unique=True),
    Column("masked_number", String(32), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("expiry_date", Date, nullable=False),
    Column("card_type", String(16), nullable=False),
    Column("network", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("spending_limit", MoneyType),
    Column("current_balance", MoneyType, nullable=False),
    Column("merchant_lock", String(200)),
    Column("metadata", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_virtual_cards_business_created", "business_id", "created_at", "id"),
)

card_controls = Table(
    "card_controls", metadata,
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), primary_key=True),
    Column("allowed_merchant_categories", JSONType),
    Column("blocked_merchant_categories", JSONType),
    Column("allowed_countries", JSONType),
    Column("blocked_countries", JSONType),
    Column("max_transaction_amount", MoneyType),
    Column("daily_limit", MoneyType),
    Column("monthly_limit", MoneyType),
    Column("allowed_days", JSONType),
    Column("allowed_hours", JSONType),
    Column("requires_approval", Boolean, nullable=False, default=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

card_transactions = Table(
    "card_transactions", metadata,
    Column("id", Uuid, primary_key=True),
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), nullable=False),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False),
    Column("transaction_id", Uuid, ForeignKey("transactions.id"), nullable=False),
    Column("network_id", String(128), nullable=False, unique=True),
    Column("merchant_name", String(200)),
    Column("merchant_category_code", String(4)),
    Column("merchant_country", String(2)),
    Column("merchant_id", String(128)),
    Column("original_amount", MoneyType, nullable=False),
    Column("original_currency", String(3), nullable=False),
    Column("billing_amount", MoneyType, nullable=False),
    Column("billing_currency", String(3), nullable=False),
    Column("exchange_rate", MoneyType),
    Column("status", String(24), nullable=False),
    Column("response_code", String(2), nullable=False),
    Column("decline_reason", String(64)),
    Column("risk_score", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Added with the cards issue (migration 0002):
    Column("kind", String(24), nullable=False, server_default="purchase"),
    Column("parent_id", Uuid),  # incremental authorizations extend this one
    Column("approved_amount", MoneyType, nullable=False, server_default="0"),
    Column("held_amount", MoneyType, nullable=False, server_default="0"),
    Column("cleared_amount", MoneyType, nullable=False, server_default="0"),
    Column("released_amount", MoneyType, nullable=False, server_default="0"),
    Column("spend_day", String(12)),  # the business-local day/month the spend counted in
    Column("spend_month", String(12)),
    Column("hold_expires_at", UTCDateTime),
    Column("approval_expires_at", UTCDateTime),
    Column("decided_by", Uuid),
    Column("risk_reasons", JSONType),
    Index("ix_card_transactions_card_created", "card_id", "created_at", "id"),
    Index("ix_card_transactions_hold_expiry", "status", "hold_expires_at"),
)

# Spend per card and business-local period ("D2026-11-26", "M2026-11"), kept in
# the authorization transaction so limits are checked without summing history.
card_spend = Table(
    "card_spend", metadata,
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), primary_key=True),
    Column("period", String(12), primary_key=True),
    Column("amount", MoneyType, nullable=False),
)

# The risk scorer's history of a card (veix.domain.risk), kept in the
# authorization transaction so a decision reads a bounded number of rows
# whatever the card's past: per UTC day, its approved purchases and
# incremental authorizations (count, billing-currency total, largest one), and
# the merchants it was approved at (the authorization's merchant key, as
# AuthRequest.merchant_key). Written when an approved row is inserted into
# card_transactions, never changed by what happens to it later (a reversal
# does not make a purchase unseen). Rows past the risk window are deleted by
# the worker's "risk" job.
card_risk_days = Table(
    "card_risk_days", metadata,
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("amount", MoneyType, nullable=False),
    Column("max_amount", MoneyType, nullable=False),
    Index("ix_card_risk_days_day", "day"),  # the worker's pruning
)

# The fraud score's velocity windows: approvals per card and UTC minute
# (veix.domain.services.authorize.velocity_window), kept with the decisions
# like card_risk_days; the worker deletes what is more than an hour old.
card_risk_minutes = Table(
    "card_risk_minutes", metadata,
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), primary_key=True),
    Column("minute", UTCDateTime, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("amount", MoneyType, nullable=False),
)

card_merchants = Table(
    "card_merchants", metadata,
    Column("card_id", Uuid, ForeignKey("virtual_cards.id"), primary_key=True),
    Column("merchant_key", String(200), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
)

# Answers to signed network requests, by webhook-id: a repeat gets the original.
network_messages = Table(
    "network_messages", metadata,
    Column("id", String(128), primary_key=True),
    Column("endpoint", String(32), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

fraud_alerts = Table(
    "fraud_alerts", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False, index=True),
    Column("card_id", Uuid, ForeignKey("virtual_cards.id")),
    Column("transaction_id", Uuid, ForeignKey("transactions.id")),
    Column("card_transaction_id", Uuid),
    Column("risk_score", Float, nullable=False),
    Column("reasons", JSONType, nullable=False),
    Column("action", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

outbox = Table(
    "outbox", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("business_id", Uuid, index=True),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# What the outbox dispatcher has published: every row with seq <= dispatched_seq and
# none above (the dispatched rows are a gap-free prefix, see veix.events.dispatcher), so
# the outbox is written once per event and never updated. One row (migration 0009).
outbox_cursor = Table(
    "outbox_cursor", metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("dispatched_seq", Seq, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)
# The highest seq the dispatcher has published and committed (0 before the first).
DISPATCHED_SEQ = func.coalesce(select(outbox_cursor.c.dispatched_seq).scalar_subquery(), 0)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64)),
    Column("business_id", Uuid, index=True),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64)),
    Column("before", JSONType),
    Column("after", JSONType),
    Column("request_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("result_type", String(32)),
    Column("result_id", Uuid),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Outbound webhooks (migration 0003). The secret is sealed by the vault ("keyid:base64", AAD
# "webhook:" + endpoint id); event_types NULL means every event.
webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("description", String(500)),
    Column("event_types", JSONType),
    Column("secret_encrypted", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("disabled_reason", String(200)),
    Column("failure_count", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per (endpoint, outbox event): the delivery log and the retry queue.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", Uuid, primary_key=True),
    Column("endpoint_id", Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
           nullable=False),
    Column("business_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_seq", BigInteger),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", String(500)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
)


# ---------------------------------------------------------------- payments (migration 0004)

payment_methods = Table(
    "payment_methods", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("display", String(100), nullable=False),
    Column("gateway", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

disputes = Table(
    "disputes", metadata,
    Column("id", Uuid, primary_key=True),
    Column("business_id", Uuid, ForeignKey("businesses.id"), nullable=False, index=True),
    Column("transaction_id", Uuid, ForeignKey("transactions.id"), nullable=False, index=True),
    Column("gateway", String(16), nullable=False),
    Column("gateway_reference", String(128), nullable=False),
    Column("amount", MoneyType, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("evidence_due_by", UTCDateTime),
    Column("evidence", JSONType),
    # What the dispute took from the business: from its balance and, when that did not
    # cover it, as a receivable (negative balance) to be repaid first.
    Column("withdrawn_available", MoneyType, nullable=False, server_default="0"),
    Column("withdrawn_receivable", MoneyType, nullable=False, server_default="0"),
    Column("status_before", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("gateway", "gateway_reference", name="uq_disputes_gateway_reference"),
)

# Inbound gateway webhooks: stored, and processed once per (gateway, event id).
gateway_events = Table(
    "gateway_events", metadata,
    Column("id", Uuid, primary_key=True),
    Column("gateway", String(16), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("provider_type", String(100), nullable=False),
    Column("reference", String(128)),
    Column("transaction_id", Uuid),
    Column("outcome", String(32), nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("gateway", "event_id", name="uq_gateway_events_gateway_event"),
)

# Monotonic counters (crypto deposit address derivation indexes).
counters = Table(
    "counters", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Per-business routing preferences and gateway accounts (Stripe Connect).
business_payment_settings = Table(
    "business_payment_settings", metadata,
    Column("business_id", Uuid, ForeignKey("businesses.id"), primary_key=True),
    Column("routes", JSONType),
    Column("stripe_account", String(64)),
    Column("updated_at", UTCDateTime, nullable=False),
)
