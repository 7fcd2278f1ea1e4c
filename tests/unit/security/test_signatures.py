"""Specification of Standard Webhooks signing (veix.security.signatures), as NETWORK.md describes it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from veix.domain.errors import Unauthenticated
from veix.security.signatures import (
    DUPLICATE_HEADER,
    INVALID_TIMESTAMP,
    MISSING_HEADER,
    NO_MATCHING_SIGNATURE,
    TIMESTAMP_OUT_OF_TOLERANCE,
    SignatureError,
    sign,
    signed_headers,
    verify,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
TS = 1_790_000_000
BODY = json.dumps({"id": "auth_7f3c", "amount": "42.50", "currency": "EUR", "merchant": "Café"}).encode()


def _reason(exc: pytest.ExceptionInfo[SignatureError]) -> str:
    return exc.value.reason


def test_sign_matches_the_documented_formula() -> None:
    raw = hmac.new(KEY, f"{MSG_ID}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(SECRET, MSG_ID, TS, BODY) == "v1," + base64.b64encode(raw).decode()


def test_known_vector_from_the_standard_webhooks_spec() -> None:
    # Example from the Standard Webhooks reference test suite.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_bare_base64_secret_is_accepted() -> None:
    bare = base64.b64encode(KEY).decode()
    assert sign(bare, MSG_ID, TS, BODY) == sign(SECRET, MSG_ID, TS, BODY)


@pytest.mark.parametrize("bad", ["whsec_", "", "whsec_***", "whsec_a"])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        sign(bad, MSG_ID, TS, BODY)


def test_round_trip_returns_the_id() -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(TS)
    assert verify(SECRET, headers, BODY, now=TS) == MSG_ID


def test_signed_headers_default_to_now() -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert verify(SECRET, headers, BODY) == MSG_ID


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in signed_headers(SECRET, MSG_ID, BODY, timestamp=TS).items()}
    assert "Webhook-Signature" in headers
    assert verify(SECRET, headers, BODY, now=TS) == MSG_ID


def test_same_header_twice_in_different_case_is_refused() -> None:
    headers: dict[str, str] = dict(signed_headers(SECRET, MSG_ID, BODY, timestamp=TS))
    headers["Webhook-Id"] = "msg_other"
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == DUPLICATE_HEADER


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(missing: str) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    del headers[missing]
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == MISSING_HEADER


@pytest.mark.parametrize("empty", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_empty_header_counts_as_missing(empty: str) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    headers[empty] = ""
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == MISSING_HEADER


@pytest.mark.parametrize("bad", ["abc", "1790000000.5", "1e9", "-1790000000", "+1790000000", "0x6AB0", "1_790_000_000"])
def test_non_integer_timestamp(bad: str) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    headers["webhook-timestamp"] = bad
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == INVALID_TIMESTAMP


@pytest.mark.parametrize("skew", [-301, 301, -86_400, 10**9])
def test_timestamp_out_of_tolerance(skew: int) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS + skew)
    assert _reason(exc) == TIMESTAMP_OUT_OF_TOLERANCE


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_at_the_tolerance_edge_passes(skew: int) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    assert verify(SECRET, headers, BODY, now=TS + skew) == MSG_ID


def test_custom_tolerance() -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    with pytest.raises(SignatureError):
        verify(SECRET, headers, BODY, now=TS + 61, tolerance=60)


def test_timestamp_is_checked_before_the_signature() -> None:
    # An old but correctly signed request is still refused (replay).
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS - 3600)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == TIMESTAMP_OUT_OF_TOLERANCE


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b" "},
        {"body": BODY.replace(b"42.50", b"4250.0")},
        {"webhook-id": "msg_other"},
        {"webhook-timestamp": str(TS + 1)},
    ],
)
def test_any_change_breaks_the_signature(change: dict[str, Any]) -> None:
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    body = change.pop("body", BODY)
    headers.update(change)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, body, now=TS)
    assert _reason(exc) == NO_MATCHING_SIGNATURE


def test_wrong_secret() -> None:
    headers = signed_headers(OTHER, MSG_ID, BODY, timestamp=TS)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == NO_MATCHING_SIGNATURE


@pytest.mark.parametrize(
    "value",
    ["v2,{sig}", "{sig}", "v1,", "v1", "v1,{sig}x", "V1,{sig}", "v1;{sig}", "v1,ü", "garbage"],
)
def test_malformed_or_other_version_signatures_do_not_match(value: str) -> None:
    sig = sign(SECRET, MSG_ID, TS, BODY).split(",", 1)[1]
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    headers["webhook-signature"] = value.format(sig=sig)
    with pytest.raises(SignatureError) as exc:
        verify(SECRET, headers, BODY, now=TS)
    assert _reason(exc) == NO_MATCHING_SIGNATURE


def test_one_matching_signature_among_several_is_enough() -> None:
    good = sign(SECRET, MSG_ID, TS, BODY)
    bad = sign(OTHER, MSG_ID, TS, BODY)
    headers = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    headers["webhook-signature"] = f"v2,abc {bad} {good}"
    assert verify(SECRET, headers, BODY, now=TS) == MSG_ID


def test_rotation_with_a_list_of_secrets() -> None:
    old = signed_headers(OTHER, MSG_ID, BODY, timestamp=TS)
    new = signed_headers(SECRET, MSG_ID, BODY, timestamp=TS)
    assert verify([SECRET, OTHER], old, BODY, now=TS) == MSG_ID
    assert verify([SECRET, OTHER], new, BODY, now=TS) == MSG_ID
    with pytest.raises(SignatureError):
        verify([SECRET], old, BODY, now=TS)
    with pytest.raises(ValueError):
        verify([], new, BODY, now=TS)


def test_signature_error_is_unauthenticated() -> None:
    err = SignatureError(NO_MATCHING_SIGNATURE)
    assert isinstance(err, Unauthenticated)
    assert err.reason == NO_MATCHING_SIGNATURE
    assert err.message


# Interoperability with the reference implementation (pip package "standardwebhooks").


def _webhook(secret: str) -> Any:
    module = pytest.importorskip(
        "standardwebhooks", reason="standardwebhooks is not installed: interoperability not checked"
    )
    return module.Webhook(secret)


def test_reference_signature_verifies_with_ours() -> None:
    webhook = _webhook(SECRET)
    ts = int(time.time())
    signature = webhook.sign(MSG_ID, datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}
    assert signature == sign(SECRET, MSG_ID, ts, BODY)
    assert verify(SECRET, headers, BODY, now=ts) == MSG_ID


def test_our_signature_verifies_with_the_reference() -> None:
    webhook = _webhook(SECRET)
    headers = signed_headers(SECRET, MSG_ID, BODY)
    assert webhook.verify(BODY, headers) == json.loads(BODY)


def test_reference_refuses_a_tampered_body_signed_by_us() -> None:
    webhook = _webhook(SECRET)
    module = pytest.importorskip("standardwebhooks")
    headers = signed_headers(SECRET, MSG_ID, BODY)
    with pytest.raises(module.WebhookVerificationError):
        webhook.verify(BODY + b" ", headers)


def test_reference_accepts_bare_and_prefixed_secrets_like_ours() -> None:
    bare = base64.b64encode(KEY).decode()
    webhook = _webhook(bare)
    ts = int(time.time())
    signature = webhook.sign(MSG_ID, datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}
    assert verify(SECRET, headers, BODY, now=ts) == MSG_ID
