"""Access through the public API (DESIGN.md section 8): sign-up, log-in and its
throttling, refresh-token rotation, JWT verification, API keys, invitations
and the last-owner rule. Every request goes over HTTP to the real app."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from tests.integration.conftest import PASSWORD, Api

SIGN_UP = ("mutation($i: SignUpInput!){ signUp(input:$i){ accessToken expiresAt refreshToken "
           "user{ id email name memberships{ role business{ id name } } } "
           "userErrors{ field code message } } }")
LOG_IN = ("mutation($i: LogInInput!){ logIn(input:$i){ accessToken expiresAt refreshToken "
          "user{ id email } userErrors{ field code message } } }")
REFRESH = ("mutation($t: String!){ refreshToken(refreshToken:$t){ accessToken expiresAt "
           "refreshToken user{ id email } userErrors{ field code message } } }")
ME = "{ me { id email name memberships{ role business{ id name } } } }"
CREATE_KEY = ("mutation($b: ID!, $n: String!, $r: Role!){ createApiKey(businessId:$b, name:$n, role:$r)"
              "{ secret apiKey{ id name role prefix createdAt lastUsedAt revokedAt } "
              "userErrors{ field code message } } }")
REVOKE_KEY = ("mutation($id: ID!){ revokeApiKey(id:$id){ secret apiKey{ id name role prefix "
              "revokedAt } userErrors{ field code message } } }")
INVITE = ("mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id role invitedAt "
          "joinedAt user{ email name } } userErrors{ field code message } } }")
MEMBERS = ("query($b: ID!){ business(id:$b){ members(first: 100){ totalCount edges{ node{ id role "
           "invitedAt joinedAt user{ id email name } } } } } }")
CHANGE_ROLE = ("mutation($m: ID!, $r: Role!){ changeMemberRole(memberId:$m, role:$r){ member{ id role } "
               "userErrors{ field code message } } }")
REMOVE = ("mutation($m: ID!){ removeMember(memberId:$m){ member{ id role } "
          "userErrors{ field code message } } }")


def _email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def top_level_code(body: dict[str, Any]) -> str:
    """The one top-level error code of a response (and it carries a request id)."""
    assert body.get("errors"), body
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert len(codes) == 1, body
    for e in body["errors"]:
        assert e["extensions"]["requestId"], body
    return str(codes.pop())


async def raw(api: Api, query: str, variables: dict[str, Any] | None = None, *,
              authorization: str | None = None) -> dict[str, Any]:
    """POST with an arbitrary Authorization header; checks the request-id plumbing."""
    headers = {"authorization": authorization} if authorization is not None else {}
    r = await api.client.post("/graphql", json={"query": query, "variables": variables},
                              headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-request-id"), r.headers
    body: dict[str, Any] = r.json()
    for e in body.get("errors", []):
        assert e["extensions"]["code"] != "INTERNAL_SERVER_ERROR", body
        assert e["extensions"]["requestId"] == r.headers["x-request-id"], body
    return body


async def sign_up(api: Api, email: str | None = None, name: str = "Person") -> dict[str, Any]:
    data = await api.ok(SIGN_UP, {"i": {"email": email or _email(), "password": PASSWORD,
                                        "name": name}})
    payload: dict[str, Any] = data["signUp"]
    return payload


async def log_in(api: Api, email: str, password: str) -> dict[str, Any]:
    return await raw(api, LOG_IN, {"i": {"email": email, "password": password}})


def forge(claims: dict[str, Any], key: str | None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]  # alg none


def claims_for(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": user_id, "iat": now - 60, "exp": now + 600, "iss": "veix", "typ": "access",
            "jti": uuid.uuid4().hex}
    return {**base, **overrides}


def raw_user_id(access_token: str) -> str:
    """The ``sub`` of one of our own tokens (read, not verified)."""
    return str(jwt.decode(access_token, options={"verify_signature": False})["sub"])


# ---------------------------------------------------------------- sign-up and log-in


async def test_sign_up_returns_a_session_and_me_is_the_new_user(api: Api) -> None:
    email = _email("Signup").replace("Signup", "SignUp")
    payload = await sign_up(api, email, name="  Ada Lovelace ")
    assert payload["accessToken"] and payload["refreshToken"] and payload["expiresAt"]
    assert payload["user"]["email"] == email.lower()
    assert payload["user"]["name"] == "Ada Lovelace"
    assert payload["user"]["memberships"] == []
    me = await api.ok(ME, token=payload["accessToken"])
    assert me["me"] == {"id": payload["user"]["id"], "email": email.lower(),
                        "name": "Ada Lovelace", "memberships": []}


async def test_me_without_credentials_is_unauthenticated(api: Api) -> None:
    body = await raw(api, ME)
    assert top_level_code(body) == "UNAUTHENTICATED"
    assert body["data"] == {"me": None}


async def test_duplicate_sign_up_is_a_conflict_user_error(api: Api) -> None:
    email = _email()
    await sign_up(api, email)
    for variant in (email, email.upper()):
        body = await raw(api, SIGN_UP, {"i": {"email": variant, "password": "another password 1",
                                              "name": "Impostor"}})
        assert "errors" not in body, body
        payload = body["data"]["signUp"]
        assert payload["accessToken"] is None and payload["refreshToken"] is None
        assert payload["user"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("CONFLICT", ["input", "email"])]
    # The original password still works; the impostor's does not.
    assert (await log_in(api, email, PASSWORD))["data"]["logIn"]["accessToken"]
    assert top_level_code(await log_in(api, email, "another password 1")) == "UNAUTHENTICATED"


async def test_log_in_with_the_right_password(api: Api) -> None:
    email = _email()
    signed = await sign_up(api, email)
    body = await log_in(api, email.upper(), PASSWORD)
    assert "errors" not in body, body
    payload = body["data"]["logIn"]
    assert payload["userErrors"] == []
    assert payload["user"] == {"id": signed["user"]["id"], "email": email}
    assert payload["accessToken"] and payload["refreshToken"]
    assert payload["refreshToken"] != signed["refreshToken"]
    me = await api.ok(ME, token=payload["accessToken"])
    assert me["me"]["id"] == signed["user"]["id"]


async def test_wrong_password_and_unknown_email_are_the_same_unauthenticated_error(
        api: Api) -> None:
    email = _email()
    await sign_up(api, email)
    wrong = await log_in(api, email, "not the password at all")
    unknown = await log_in(api, _email("nobody"), "not the password at all")
    for body in (wrong, unknown):
        assert top_level_code(body) == "UNAUTHENTICATED"
        assert body["data"] is None
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]


async def test_five_wrong_passwords_lock_the_account_even_for_the_right_password(
        api: Api) -> None:
    email = _email("locked")
    await sign_up(api, email)
    for _ in range(4):
        assert top_level_code(await log_in(api, email, "wrong password!!")) == "UNAUTHENTICATED"
    # The fifth failure locks the account and says so.
    fifth = await log_in(api, email, "wrong password!!")
    assert "errors" not in fifth, fifth
    assert [e["code"] for e in fifth["data"]["logIn"]["userErrors"]] == ["RATE_LIMITED"]
    # Now even the right password is refused, as a RATE_LIMITED user error, without tokens.
    for password in (PASSWORD, "wrong password!!"):
        body = await log_in(api, email, password)
        assert "errors" not in body, body
        payload = body["data"]["logIn"]
        assert payload["accessToken"] is None and payload["refreshToken"] is None
        assert payload["user"] is None
        assert [e["code"] for e in payload["userErrors"]] == ["RATE_LIMITED"]
        assert "try again" in payload["userErrors"][0]["message"]


async def test_a_success_resets_the_failure_count(api: Api) -> None:
    email = _email()
    await sign_up(api, email)
    for _ in range(4):
        assert top_level_code(await log_in(api, email, "wrong password!!")) == "UNAUTHENTICATED"
    assert (await log_in(api, email, PASSWORD))["data"]["logIn"]["accessToken"]
    for _ in range(4):
        assert top_level_code(await log_in(api, email, "wrong password!!")) == "UNAUTHENTICATED"
    assert (await log_in(api, email, PASSWORD))["data"]["logIn"]["accessToken"]


# ---------------------------------------------------------------- refresh tokens


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(api: Api) -> None:
    email = _email()
    first = await sign_up(api, email)
    rotated = await api.ok(REFRESH, {"t": first["refreshToken"]})
    second = rotated["refreshToken"]
    assert second["userErrors"] == []
    assert second["accessToken"] and second["refreshToken"]
    assert second["refreshToken"] != first["refreshToken"]
    assert second["accessToken"] != first["accessToken"]
    assert second["user"] == {"id": first["user"]["id"], "email": email}
    me = await api.ok(ME, token=second["accessToken"])
    assert me["me"]["id"] == first["user"]["id"]

    # The newest token rotates once more, so the family is alive and well.
    third = (await api.ok(REFRESH, {"t": second["refreshToken"]}))["refreshToken"]

    # Replaying an already-rotated token fails...
    replay = await raw(api, REFRESH, {"t": first["refreshToken"]})
    assert top_level_code(replay) == "UNAUTHENTICATED"
    assert replay["data"] is None
    # ...and revokes the family: the newest refresh token dies too.
    newest = await raw(api, REFRESH, {"t": third["refreshToken"]})
    assert top_level_code(newest) == "UNAUTHENTICATED"

    # Another session (another family) of the same person is untouched.
    other = (await log_in(api, email, PASSWORD))["data"]["logIn"]
    assert (await api.ok(REFRESH, {"t": other["refreshToken"]}))["refreshToken"]["accessToken"]


async def test_unknown_refresh_token_is_unauthenticated(api: Api) -> None:
    for token in ("vxr_" + "A" * 43, "", "x" * 5000):
        assert top_level_code(await raw(api, REFRESH, {"t": token})) == "UNAUTHENTICATED"


# ---------------------------------------------------------------- access tokens


async def test_expired_access_token_is_unauthenticated(api: Api, app: Any) -> None:
    user = await sign_up(api)
    secret = app.state.settings.secret_key
    now = int(time.time())
    expired = forge(claims_for(raw_user_id(user["accessToken"]), iat=now - 3600, exp=now - 60),
                    secret)
    body = await raw(api, ME, authorization=f"Bearer {expired}")
    assert top_level_code(body) == "UNAUTHENTICATED"
    assert body["data"] == {"me": None}
    assert "expired" in body["errors"][0]["message"].lower()
    # The same claims, not expired, are accepted: the test forges correctly.
    fresh = forge(claims_for(raw_user_id(user["accessToken"])), secret)
    ok = await raw(api, ME, authorization=f"Bearer {fresh}")
    assert ok == {"data": {"me": {"id": user["user"]["id"], "email": user["user"]["email"],
                                  "name": "Person", "memberships": []}}}


@pytest.mark.parametrize("how", ["wrong key", "alg none", "tampered payload", "wrong issuer",
                                 "not an access token", "no exp", "HS512 with the key"])
async def test_forged_access_token_is_unauthenticated(api: Api, app: Any, how: str) -> None:
    user = await sign_up(api)
    secret = app.state.settings.secret_key
    claims = claims_for(raw_user_id(user["accessToken"]))
    if how == "wrong key":
        token = forge(claims, "a-completely-different-secret-key-0123456789")
    elif how == "alg none":
        token = forge(claims, None, algorithm="none")
    elif how == "tampered payload":
        victim = await sign_up(api)
        head, _, sig = forge(claims, secret).split(".")
        other = forge(claims_for(raw_user_id(victim["accessToken"])), secret).split(".")[1]
        token = f"{head}.{other}.{sig}"
    elif how == "wrong issuer":
        token = forge({**claims, "iss": "evil"}, secret)
    elif how == "not an access token":
        token = forge({**claims, "typ": "refresh"}, secret)
    elif how == "no exp":
        token = forge({k: v for k, v in claims.items() if k != "exp"}, secret)
    else:
        token = forge(claims, secret, algorithm="HS512")
    body = await raw(api, ME, authorization=f"Bearer {token}")
    assert top_level_code(body) == "UNAUTHENTICATED"
    assert body["data"] == {"me": None}


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc.def.ghi", "bearer-abc",
    "Bearer not.a.jwt", "Bearer eyJhbGciOiJIUzI1NiJ9", "Bearer " + "x" * 10_000,
    "Bearer vx_test_abcdefgh_" + "A" * 43,
])
async def test_malformed_authorization_header_is_unauthenticated(api: Api, header: str) -> None:
    body = await raw(api, ME, authorization=header)
    assert top_level_code(body) == "UNAUTHENTICATED"
    assert body["data"] == {"me": None}


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    user = await sign_up(api)
    body = await raw(api, ME, authorization=f"bearer {user['accessToken']}")
    assert body["data"]["me"]["id"] == user["user"]["id"]


# ---------------------------------------------------------------- API keys


async def test_api_key_secret_is_shown_once_works_and_dies_when_revoked(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    created = (await api.ok(CREATE_KEY, {"b": business_id, "n": "partner", "r": "ADMIN"},
                            token))["createApiKey"]
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith("vx_test_")
    assert key["prefix"].startswith("vx_test_") and secret.startswith(key["prefix"])
    assert len(secret) > len(key["prefix"]) + 30
    assert key["name"] == "partner" and key["role"] == "ADMIN"
    assert key["createdAt"] and key["revokedAt"] is None

    # The key works as a Bearer credential, scoped to its business.
    body = await raw(api, "{ me { id } businesses(first: 10){ totalCount edges{ node{ id } } } }",
                     authorization=f"Bearer {secret}")
    assert "errors" not in body, body
    assert body["data"]["me"] is None  # a key is not a person
    assert body["data"]["businesses"]["totalCount"] == 1
    assert body["data"]["businesses"]["edges"] == [{"node": {"id": business_id}}]
    seen = await raw(api, "query($b: ID!){ business(id:$b){ id name } }", {"b": business_id},
                     authorization=f"Bearer {secret}")
    assert seen["data"]["business"]["id"] == business_id

    # The same key with one character changed is refused.
    last = secret[-1]
    tampered = secret[:-1] + ("A" if last != "A" else "B")
    bad = await raw(api, "{ businesses{ totalCount } }", authorization=f"Bearer {tampered}")
    assert top_level_code(bad) == "UNAUTHENTICATED"

    # Revoking: the payload never contains the secret.
    r = await api.client.post("/graphql", json={"query": REVOKE_KEY, "variables": {"id": key["id"]}},
                              headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert secret not in r.text and secret[len(key["prefix"]):] not in r.text
    revoked = r.json()["data"]["revokeApiKey"]
    assert revoked["userErrors"] == [] and revoked["secret"] is None
    assert revoked["apiKey"]["id"] == key["id"] and revoked["apiKey"]["revokedAt"]
    assert revoked["apiKey"]["prefix"] == key["prefix"]

    after = await raw(api, "{ businesses{ totalCount } }", authorization=f"Bearer {secret}")
    assert top_level_code(after) == "UNAUTHENTICATED"
    assert after["data"] is None


async def test_api_key_secret_never_appears_after_creation(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    created = (await api.ok(CREATE_KEY, {"b": business_id, "n": "k", "r": "VIEWER"},
                            token))["createApiKey"]
    secret, key_id = created["secret"], created["apiKey"]["id"]
    # Neither the node lookup nor anything the business exposes returns it.
    for query, variables in [
        ("query($id: ID!){ node(id:$id){ id } }", {"id": key_id}),
        ("query($b: ID!){ business(id:$b){ id name members{ edges{ node{ id user{ email } } } } } }",
         {"b": business_id}),
    ]:
        r = await api.client.post("/graphql", json={"query": query, "variables": variables},
                                  headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and secret not in r.text, r.text


async def test_api_key_of_another_business_cannot_be_revoked(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    key = (await api.ok(CREATE_KEY, {"b": business_id, "n": "k", "r": "VIEWER"},
                        token))["createApiKey"]
    stranger, _ = await api.sign_up("Stranger")
    await api.create_business(stranger)
    body = await api.gql(REVOKE_KEY, {"id": key["apiKey"]["id"]}, stranger)
    assert "errors" not in body, body
    assert [(e["code"], e["field"]) for e in body["data"]["revokeApiKey"]["userErrors"]] == [
        ("NOT_FOUND", ["id"])]
    still = await raw(api, "{ businesses{ totalCount } }",
                      authorization=f"Bearer {key['secret']}")
    assert still["data"]["businesses"]["totalCount"] == 1


# ---------------------------------------------------------------- invitations and owners


async def _members(api: Api, token: str, business_id: str) -> list[dict[str, Any]]:
    data = await api.ok(MEMBERS, {"b": business_id}, token)
    return [e["node"] for e in data["business"]["members"]["edges"]]


async def test_invited_email_that_signs_up_later_joins_the_business(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    email = _email("invitee")
    invited = (await api.ok(INVITE, {"i": {"businessId": business_id, "email": email.upper(),
                                           "role": "FINANCE"}}, token))["inviteMember"]["member"]
    assert invited["role"] == "FINANCE" and invited["invitedAt"]
    assert invited["joinedAt"] is None
    assert invited["user"]["email"] == email
    pending = {m["id"]: m for m in await _members(api, token, business_id)}
    assert pending[invited["id"]]["joinedAt"] is None

    # Nobody can log in as the invitee before they sign up.
    assert top_level_code(await log_in(api, email, PASSWORD)) == "UNAUTHENTICATED"

    payload = await sign_up(api, email, name="Finn")
    assert payload["user"]["memberships"] == [
        {"role": "FINANCE", "business": {"id": business_id, "name": "Acme GmbH"}}]
    me = await api.ok(ME, token=payload["accessToken"])
    assert me["me"]["memberships"] == [
        {"role": "FINANCE", "business": {"id": business_id, "name": "Acme GmbH"}}]

    joined = {m["id"]: m for m in await _members(api, token, business_id)}
    assert joined[invited["id"]]["joinedAt"] is not None
    assert joined[invited["id"]]["user"] == {"id": payload["user"]["id"], "email": email,
                                              "name": "Finn"}
    # And the new member sees the business as a finance member.
    seen = await api.ok("query($b: ID!){ business(id:$b){ id } businesses{ totalCount } }",
                        {"b": business_id}, payload["accessToken"])
    assert seen == {"business": {"id": business_id}, "businesses": {"totalCount": 1}}


async def test_inviting_an_existing_account_joins_at_once_and_twice_is_a_conflict(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    person = await sign_up(api)
    email = person["user"]["email"]
    member = (await api.ok(INVITE, {"i": {"businessId": business_id, "email": email,
                                          "role": "VIEWER"}}, token))["inviteMember"]["member"]
    assert member["joinedAt"] is not None
    again = await api.gql(INVITE, {"i": {"businessId": business_id, "email": email,
                                         "role": "ADMIN"}}, token)
    assert [(e["code"], e["field"]) for e in again["data"]["inviteMember"]["userErrors"]] == [
        ("CONFLICT", ["input", "email"])]
    me = await api.ok(ME, token=person["accessToken"])
    assert [m["role"] for m in me["me"]["memberships"]] == ["VIEWER"]


async def test_the_last_owner_cannot_be_demoted_or_removed_until_another_owner_joins(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    (owner_member,) = await _members(api, token, business_id)
    assert owner_member["role"] == "OWNER"

    for role in ("ADMIN", "VIEWER"):
        body = await api.gql(CHANGE_ROLE, {"m": owner_member["id"], "r": role}, token)
        assert body["data"]["changeMemberRole"]["member"] is None
        assert [(e["code"], e["field"]) for e in body["data"]["changeMemberRole"]["userErrors"]] == [
            ("CONFLICT", ["role"])]
    body = await api.gql(REMOVE, {"m": owner_member["id"]}, token)
    assert body["data"]["removeMember"]["member"] is None
    assert [(e["code"], e["field"]) for e in body["data"]["removeMember"]["userErrors"]] == [
        ("CONFLICT", ["memberId"])]
    # Nothing changed.
    assert [(m["id"], m["role"]) for m in await _members(api, token, business_id)] == [
        (owner_member["id"], "OWNER")]

    # A second owner joins; now the first can step down...
    second_token, second_member = await api.member_token(token, business_id, "OWNER")
    demoted = await api.ok(CHANGE_ROLE, {"m": owner_member["id"], "r": "ADMIN"}, token)
    assert demoted["changeMemberRole"]["member"] == {"id": owner_member["id"], "role": "ADMIN"}
    # ...and the second owner is now the last one: they cannot leave...
    body = await api.gql(REMOVE, {"m": second_member}, second_token)
    assert [(e["code"], e["field"]) for e in body["data"]["removeMember"]["userErrors"]] == [
        ("CONFLICT", ["memberId"])]
    # ...but they can remove the former owner.
    removed = await api.ok(REMOVE, {"m": owner_member["id"]}, second_token)
    assert removed["removeMember"]["member"]["id"] == owner_member["id"]
    assert [(m["id"], m["role"]) for m in await _members(api, second_token, business_id)] == [
        (second_member, "OWNER")]
    # The removed owner no longer sees the business.
    gone = await api.ok("query($b: ID!){ business(id:$b){ id } businesses{ totalCount } }",
                        {"b": business_id}, token)
    assert gone == {"business": None, "businesses": {"totalCount": 0}}


async def test_two_owners_one_can_be_removed(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    _, second_member = await api.member_token(token, business_id, "OWNER")
    removed = await api.ok(REMOVE, {"m": second_member}, token)
    assert removed["removeMember"]["member"] == {"id": second_member, "role": "OWNER"}
    (only,) = await _members(api, token, business_id)
    body = await api.gql(REMOVE, {"m": only["id"]}, token)
    assert [e["code"] for e in body["data"]["removeMember"]["userErrors"]] == ["CONFLICT"]


async def test_a_pending_owner_invitation_does_not_count_as_a_second_owner(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    (owner_member,) = await _members(api, token, business_id)
    await api.ok(INVITE, {"i": {"businessId": business_id, "email": _email("pending-owner"),
                                "role": "OWNER"}}, token)
    body = await api.gql(CHANGE_ROLE, {"m": owner_member["id"], "r": "ADMIN"}, token)
    assert [e["code"] for e in body["data"]["changeMemberRole"]["userErrors"]] == ["CONFLICT"]
