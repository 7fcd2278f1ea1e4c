"""The GraphQL schema: Strawberry types over the resolvers."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from veix.schema.card_mutations import CardMutation
from veix.schema.mutations import Mutation
from veix.schema.payment_mutations import PaymentMutation
from veix.schema.query import Query
from veix.schema.subscriptions import Subscription
from veix.schema.types.business import ApiKey, Business, Member, Transaction, User
from veix.schema.types.cards import Card, CardTransaction
from veix.schema.types.payments import Dispute, PaymentMethod, Refund
from veix.schema.webhook_mutations import WebhookMutation


def build_schema(*, max_depth: int = 12, max_tokens: int = 2000) -> strawberry.Schema:
    """Parsing and validation are cached (they cost ~80% of a small query);
    depth, token and alias limits reject abusive documents before execution."""
    from veix.http.graphql import QuietSchema

    # The rule classes are built once: ValidationCache keys on the rules, so a
    # limiter re-created per request (QueryDepthLimiter makes a new class in
    # its __init__) would make every validation a cache miss.
    rules = [max_depth_rule(max_depth, None, None), max_aliases_rule(30)]
    mutation = merge_types("Mutation", (Mutation, CardMutation, WebhookMutation, PaymentMutation))
    mutation.__strawberry_definition__.description = Mutation.__strawberry_definition__.description  # type: ignore[attr-defined]
    return QuietSchema(
        query=Query,
        mutation=mutation,
        subscription=Subscription,
        types=[Business, Member, User, ApiKey, Transaction, Card, CardTransaction, Dispute, PaymentMethod, Refund],
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: ParserCache(maxsize=1000),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=1000),
        ],
        config=StrawberryConfig(auto_camel_case=True),
    )
