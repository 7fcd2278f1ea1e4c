"""The GraphQL schema: Strawberry types over the resolvers."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from veix.schema.mutations import Mutation
from veix.schema.query import Query
from veix.schema.types.business import ApiKey, Business, Member, Transaction, User


def build_schema(*, max_depth: int = 12, max_tokens: int = 2000) -> strawberry.Schema:
    """Parsing and validation are cached (they cost ~80% of a small query);
    depth, token and alias limits reject abusive documents before execution."""
    from veix.http.graphql import QuietSchema

    return QuietSchema(
        query=Query,
        mutation=Mutation,
        types=[Business, Member, User, ApiKey, Transaction],
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: ParserCache(maxsize=1000),
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=30),
            lambda: ValidationCache(maxsize=1000),
        ],
        config=StrawberryConfig(auto_camel_case=True),
    )
