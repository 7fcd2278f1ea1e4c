"""The exported SDL is the contract partners read: it must match the code and
carry a description on every type and field."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType

from veix.schema import build_schema

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT.parent / "shared" / "API.graphql"


def test_schema_graphql_in_the_repo_matches_the_code():
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == str(build_schema()) + "\n", "run `veix export-schema` and commit schema.graphql"


def test_every_type_and_field_has_a_description():
    schema = build_schema()._schema
    missing = []
    for name, t in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if not t.description:
            missing.append(name)
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, d in t.fields.items() if not d.description]
        if isinstance(t, GraphQLEnumType):
            continue
    assert missing == []


def test_implemented_operations_keep_the_contract_names():
    if not CONTRACT.exists():
        return
    contract = CONTRACT.read_text()
    sdl = str(build_schema())
    for op in ["signUp", "logIn", "refreshToken", "createApiKey", "revokeApiKey", "createBusiness",
               "updateBusiness", "submitVerification", "inviteMember", "changeMemberRole",
               "removeMember", "fundBusiness", "node", "me", "business", "businesses"]:
        assert re.search(rf"\b{op}\(|\b{op}:", contract), op
        assert re.search(rf"\b{op}\(|\b{op}:", sdl), op
