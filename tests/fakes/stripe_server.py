"""A local fake of the part of the Stripe REST API the Stripe gateway uses.

A real HTTP server (``http.server`` in a thread, on 127.0.0.1 and a free
port) so the official ``stripe`` SDK talks to it exactly as it talks to
Stripe: form-encoded bodies with nested keys, Bearer auth, ``Idempotency-Key``
replay, Stripe's JSON error shape and status codes. State lives in memory.

Test cards behave like Stripe test mode:

=================  =====================================================
4242424242424242   succeeds
4000000000000002   declined: card_declined (generic_decline)
4000000000009995   declined: insufficient_funds
4000000000000069   declined: expired_card
4000000000000127   declined: incorrect_cvc
4000000000000119   declined: processing_error
4000002500003155   requires_action (3-D Secure); confirming it again succeeds
4000000000000259   succeeds, and a dispute is opened on it (see ``dispute_event``)
=================  =====================================================

Outages: ``fail_next(n, status=503)`` answers the next ``n`` API requests with
that status; ``hang_next(n, seconds)`` holds the next ``n`` requests that long
before answering. Every API request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SUCCESS = "4242424242424242"
DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
EXPIRED = "4000000000000069"
INCORRECT_CVC = "4000000000000127"
PROCESSING_ERROR = "4000000000000119"
THREE_D_SECURE = "4000002500003155"
DISPUTED = "4000000000000259"

# number -> (code, decline_code, message, param)
_DECLINES: dict[str, tuple[str, str | None, str, str | None]] = {
    DECLINED: ("card_declined", "generic_decline", "Your card was declined.", None),
    INSUFFICIENT_FUNDS: ("card_declined", "insufficient_funds", "Your card has insufficient funds.", None),
    EXPIRED: ("expired_card", None, "Your card has expired.", "exp_month"),
    INCORRECT_CVC: ("incorrect_cvc", None, "Your card's security code is incorrect.", "cvc"),
    PROCESSING_ERROR: ("processing_error", None,
                       "An error occurred while processing your card. Try again in a little bit.", None),
}
_BRANDS = {"4": "visa", "5": "mastercard", "3": "amex"}
_REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


class _ApiError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> _ApiError:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return _ApiError(400, error)


def parse_form(body: str) -> dict[str, Any]:
    """``a[b][c]=1&l[0]=x`` -> ``{"a": {"b": {"c": "1"}}, "l": ["x"]}`` (values stay strings)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in rest.split("[")] if rest else [])
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _State:
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)  # by payment intent id
    idempotent: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)


class FakeStripe:
    """The fake server. ``start()`` returns the base URL to hand the SDK."""

    api_version = "2025-09-30.clover"

    def __init__(self) -> None:
        self.api_key = "sk_test_fake_" + secrets.token_hex(8)
        self.webhook_secret = "whsec_fake_" + secrets.token_hex(16)
        self.requests: list[RecordedRequest] = []
        self._state = _State()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._fail: list[int] = []
        self._hang: list[float] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # -- fault injection -------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int = 1, seconds: float = 5.0) -> None:
        with self._lock:
            self._hang.extend([seconds] * n)

    def reset_faults(self) -> None:
        with self._lock:
            self._fail.clear()
            self._hang.clear()

    # -- inspection ------------------------------------------------------

    def payment_intent(self, pi_id: str) -> dict[str, Any]:
        """The stored PaymentIntent as Stripe would send it (``latest_charge`` an id)."""
        with self._lock:
            return json.loads(json.dumps(self._state.intents[pi_id]))

    def charge(self, pi_id: str) -> dict[str, Any]:
        with self._lock:
            charge_id = self._state.intents[pi_id]["latest_charge"]
            return json.loads(json.dumps(self._state.charges[charge_id]))

    def refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._state.refunds[refund_id]))

    def requests_to(self, path: str, method: str = "POST") -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and r.method == method]

    # -- webhooks --------------------------------------------------------

    def signed_event(
        self, event_type: str, obj: dict[str, Any], *, timestamp: int | None = None,
        secret: str | None = None, event_id: str | None = None, created: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook body and its headers (lower-case keys), signed like Stripe does."""
        now = int(time.time())
        event = {
            "id": event_id or self._id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": created if created is not None else now,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        body = json.dumps(event).encode()
        return body, self.sign(body, timestamp=timestamp, secret=secret)

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        t = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{t}.".encode() + body, hashlib.sha256)
        return {"stripe-signature": f"t={t},v1={mac.hexdigest()}", "content-type": "application/json"}

    def dispute_event(
        self, pi_id: str, event_type: str = "charge.dispute.created", *, status: str | None = None,
        reason: str = "fraudulent", amount: int | None = None, due_in_days: int = 7,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed ``charge.dispute.*`` event on the payment's charge.

        Uses the dispute Stripe opened on a ``4000000000000259`` payment, or
        opens one on any succeeded payment. ``status`` defaults per event type:
        ``needs_response`` (created/updated), ``lost`` (closed).
        """
        with self._lock:
            dispute = self._state.disputes.get(pi_id) or self._open_dispute(pi_id, reason, due_in_days)
            if amount is not None:
                dispute["amount"] = amount
            default_status = "lost" if event_type == "charge.dispute.closed" else "needs_response"
            dispute["status"] = status or default_status
            if dispute["status"] in {"won", "lost"}:
                dispute["evidence_details"]["has_evidence"] = True
            obj = json.loads(json.dumps(dispute))
        return self.signed_event(event_type, obj)

    def refund_event(self, refund_id: str, event_type: str = "refund.updated") -> tuple[bytes, dict[str, str]]:
        return self.signed_event(event_type, self.refund(refund_id))

    def charge_refunded_event(self, pi_id: str) -> tuple[bytes, dict[str, str]]:
        with self._lock:
            charge = json.loads(json.dumps(self._state.charges[self._state.intents[pi_id]["latest_charge"]]))
            refunds = [r for r in self._state.refunds.values() if r["payment_intent"] == pi_id]
            charge["refunds"] = {"object": "list", "data": json.loads(json.dumps(refunds[::-1])),
                                 "has_more": False, "url": f"/v1/charges/{charge['id']}/refunds"}
        return self.signed_event("charge.refunded", charge)

    # -- the API ---------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(6)}"

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        """One API request -> (status, JSON body). Called from the server threads."""
        with self._lock:
            self.requests.append(RecordedRequest(method, path, params, headers))
            fail = self._fail.pop(0) if self._fail else None
            hang = self._hang.pop(0) if self._hang else None
        if hang is not None:
            self._stopping.wait(hang)
        if fail is not None:
            return fail, _json({"error": {"type": "api_error", "message": "Injected outage."}})
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _json({"error": {"type": "invalid_request_error",
                                         "message": "Invalid API Key provided: sk_****"}})
        key = headers.get("idempotency-key")
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        with self._lock:
            if method == "POST" and key:
                seen = self._state.idempotent.get(key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        return 400, _json({"error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the same parameters "
                                       "they were first used with."}})
                    return seen[1], seen[2]
            try:
                status, payload = 200, self._route(method, path, params)
            except _ApiError as err:
                status, payload = err.status, {"error": err.error}
            body = _json(payload)
            if method == "POST" and key:
                self._state.idempotent[key] = (fingerprint, status, body)
            return status, body

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        expand = set(params.pop("expand", []) or [])
        if parts[:2] == ["v1", "payment_intents"]:
            if len(parts) == 2 and method == "POST":
                return self._render(self._create_intent(params), expand)
            pi = self._state.intents.get(parts[2]) if len(parts) > 2 else None
            if pi is None:
                raise _invalid(f"No such payment_intent: '{parts[2] if len(parts) > 2 else ''}'",
                               code="resource_missing", param="intent")
            if len(parts) == 3 and method == "GET":
                return self._render(pi, expand)
            action = parts[3] if len(parts) == 4 and method == "POST" else None
            if action == "confirm":
                return self._render(self._confirm(pi, params), expand)
            if action == "capture":
                return self._render(self._capture(pi, params), expand)
            if action == "cancel":
                return self._render(self._cancel(pi, params), expand)
        if parts[:2] == ["v1", "disputes"] and len(parts) == 3 and method == "POST":
            return self._update_dispute(parts[2], params)
        if parts == ["v1", "refunds"] and method == "POST":
            return self._create_refund(params)
        raise _ApiError(404, {"type": "invalid_request_error", "message": f"Unrecognized request URL ({method}: {path})."})

    def _render(self, pi: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        out = json.loads(json.dumps(pi))
        if "payment_method" in expand and pi.get("payment_method"):
            out["payment_method"] = self._state.payment_methods[pi["payment_method"]]
        if "latest_charge" in expand and pi.get("latest_charge"):
            out["latest_charge"] = self._state.charges[pi["latest_charge"]]
        return out

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            amount = int(params["amount"])
            currency = params["currency"]
        except (KeyError, ValueError) as err:
            raise _invalid("Missing required param: amount/currency.", param="amount") from err
        if amount < 1:
            raise _invalid("This value must be greater than or equal to 1.", param="amount")
        if currency != currency.lower() or len(currency) != 3:
            raise _invalid(f"Invalid currency: {currency}.", param="currency")
        capture_method = params.get("capture_method", "automatic_async")
        if capture_method not in {"automatic", "automatic_async", "manual"}:
            raise _invalid("Invalid capture_method.", param="capture_method")
        transfer = params.get("transfer_data") or {}
        fee = params.get("application_fee_amount")
        if fee is not None and not transfer.get("destination"):
            raise _invalid("application_fee_amount needs a connected account.", param="application_fee_amount")
        pi_id = self._id("pi")
        pi: dict[str, Any] = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "application_fee_amount": int(fee) if fee is not None else None,
            "canceled_at": None, "cancellation_reason": None, "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{secrets.token_hex(8)}", "confirmation_method": "automatic",
            "created": int(time.time()), "currency": currency, "description": params.get("description"),
            "last_payment_error": None, "latest_charge": None, "livemode": False,
            "metadata": params.get("metadata") or {}, "next_action": None, "payment_method": None,
            "payment_method_types": ["card"], "status": "requires_payment_method",
            "transfer_data": {"destination": transfer["destination"]} if transfer.get("destination") else None,
        }
        self._state.intents[pi_id] = pi
        pm_data = params.get("payment_method_data")
        if pm_data:
            pi["payment_method"] = self._create_payment_method(pm_data)["id"]
            pi["status"] = "requires_confirmation"
        if params.get("confirm") == "true":
            self._confirm(pi, {"return_url": params.get("return_url")})
        return pi

    def _create_payment_method(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") != "card" or not isinstance(data.get("card"), dict):
            raise _invalid("Invalid payment_method_data.", param="payment_method_data[type]")
        card = data["card"]
        number = str(card.get("number", "")).replace(" ", "")
        if not number.isdigit() or len(number) < 12:
            raise _ApiError(402, {"type": "card_error", "code": "incorrect_number",
                                  "message": "Your card number is incorrect.",
                                  "param": "payment_method_data[card][number]"})
        pm = {
            "id": self._id("pm"), "object": "payment_method", "type": "card", "created": int(time.time()),
            "card": {"brand": _BRANDS.get(number[0], "unknown"), "last4": number[-4:],
                     "exp_month": int(card.get("exp_month", 0)), "exp_year": int(card.get("exp_year", 0)),
                     "funding": "credit", "country": "US"},
            "_number": number,
        }
        self._state.payment_methods[pm["id"]] = pm
        return pm

    def _public_pm(self, pm_id: str) -> dict[str, Any]:
        return {k: v for k, v in self._state.payment_methods[pm_id].items() if not k.startswith("_")}

    def _confirm(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] not in {"requires_confirmation", "requires_action", "requires_payment_method"}:
            raise _invalid(
                f"This PaymentIntent's status is {pi['status']}, but it must be requires_confirmation, "
                "requires_action or requires_payment_method to be confirmed.",
                code="payment_intent_unexpected_state")
        if not pi["payment_method"]:
            raise _invalid("You cannot confirm this PaymentIntent because it's missing a payment method.",
                           code="payment_intent_unexpected_state")
        number = self._state.payment_methods[pi["payment_method"]]["_number"]
        if number == THREE_D_SECURE and pi["status"] != "requires_action":
            pi["status"] = "requires_action"
            url = f"{self.base_url}/3ds/{pi['id']}"
            pi["next_action"] = {"type": "redirect_to_url",
                                 "redirect_to_url": {"url": url, "return_url": params.get("return_url")}}
            return pi
        pi["next_action"] = None
        charge = self._charge(pi, number)
        decline = _DECLINES.get(number)
        if decline is not None:
            code, decline_code, message, param = decline
            error: dict[str, Any] = {"type": "card_error", "code": code, "message": message, "charge": charge["id"],
                                     "doc_url": f"https://stripe.com/docs/error-codes/{code}"}
            if decline_code:
                error["decline_code"] = decline_code
            if param:
                error["param"] = param
            error["payment_method"] = self._public_pm(pi["payment_method"])
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = dict(error)
            error["payment_intent"] = json.loads(json.dumps(pi))
            raise _ApiError(402, error)
        pi["last_payment_error"] = None
        if pi["capture_method"] == "manual":
            pi["status"] = "requires_capture"
            pi["amount_capturable"] = pi["amount"]
        else:
            self._settle(pi, pi["amount"])
        if number == DISPUTED and pi["status"] == "succeeded":
            self._open_dispute(pi["id"], "fraudulent", 7)
        return pi

    def _charge(self, pi: dict[str, Any], number: str) -> dict[str, Any]:
        pm = self._public_pm(pi["payment_method"])
        charge = {
            "id": self._id("ch"), "object": "charge", "amount": pi["amount"], "amount_captured": 0,
            "amount_refunded": 0, "captured": False, "created": int(time.time()), "currency": pi["currency"],
            "disputed": False, "paid": number not in _DECLINES, "payment_intent": pi["id"],
            "payment_method": pm["id"], "refunded": False,
            "payment_method_details": {"type": "card", "card": pm["card"]},
            "status": "failed" if number in _DECLINES else "succeeded",
            "application_fee_amount": pi["application_fee_amount"],
            "transfer_data": pi["transfer_data"],
        }
        self._state.charges[charge["id"]] = charge
        pi["latest_charge"] = charge["id"]
        return charge

    def _settle(self, pi: dict[str, Any], amount: int) -> None:
        pi["status"] = "succeeded"
        pi["amount_received"] = amount
        pi["amount_capturable"] = 0
        charge = self._state.charges[pi["latest_charge"]]
        charge.update(amount_captured=amount, captured=True)

    def _capture(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] != "requires_capture":
            raise _invalid(f"This PaymentIntent could not be captured because it has a status of {pi['status']}.",
                           code="payment_intent_unexpected_state")
        amount = int(params.get("amount_to_capture", pi["amount_capturable"]))
        if not 0 < amount <= pi["amount_capturable"]:
            raise _invalid("The amount_to_capture is greater than the amount capturable.",
                           code="amount_too_large", param="amount_to_capture")
        self._settle(pi, amount)
        return pi

    def _cancel(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] in {"succeeded", "canceled"}:
            raise _invalid(f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                           code="payment_intent_unexpected_state")
        pi.update(status="canceled", canceled_at=int(time.time()), amount_capturable=0, next_action=None,
                  cancellation_reason=params.get("cancellation_reason") or "requested_by_customer")
        return pi

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        pi = self._state.intents.get(params.get("payment_intent", ""))
        if pi is None:
            raise _invalid("No such payment_intent.", code="resource_missing", param="payment_intent")
        if pi["status"] != "succeeded":
            raise _invalid("This PaymentIntent has no successful charge to refund.", code="charge_not_refundable")
        charge = self._state.charges[pi["latest_charge"]]
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = int(params.get("amount", left))
        if not 0 < amount <= left:
            raise _invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                           code="amount_too_large", param="amount")
        reason = params.get("reason")
        if reason is not None and reason not in _REFUND_REASONS:
            raise _invalid("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                           param="reason")
        refund = {
            "id": self._id("re"), "object": "refund", "amount": amount, "charge": charge["id"],
            "created": int(time.time()), "currency": pi["currency"], "metadata": params.get("metadata") or {},
            "payment_intent": pi["id"], "reason": reason, "status": "succeeded", "failure_reason": None,
        }
        self._state.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        return refund

    def _update_dispute(self, dispute_id: str, params: dict[str, Any]) -> dict[str, Any]:
        dispute = next((d for d in self._state.disputes.values() if d["id"] == dispute_id), None)
        if dispute is None:
            raise _ApiError(404, {"type": "invalid_request_error", "message": f"No such dispute: {dispute_id!r}"})
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise _invalid("This dispute is already closed or under review", param="evidence")
        dispute["evidence"] = {**dispute.get("evidence", {}), **(params.get("evidence") or {})}
        if str(params.get("submit")).lower() == "true":
            dispute["status"] = "under_review"
            dispute["evidence_details"]["has_evidence"] = True
            dispute["evidence_details"]["submission_count"] += 1
        return dispute

    def _open_dispute(self, pi_id: str, reason: str, due_in_days: int) -> dict[str, Any]:
        pi = self._state.intents[pi_id]
        if pi["status"] != "succeeded":
            raise ValueError(f"{pi_id} is {pi['status']}: only a succeeded payment can be disputed")
        charge = self._state.charges[pi["latest_charge"]]
        charge["disputed"] = True
        now = int(time.time())
        dispute = {
            "id": self._id("du"), "object": "dispute", "amount": pi["amount_received"], "charge": charge["id"],
            "created": now, "currency": pi["currency"], "is_charge_refundable": False, "livemode": False,
            "metadata": {}, "payment_intent": pi_id, "reason": reason, "status": "needs_response",
            "evidence_details": {"due_by": now + due_in_days * 86400, "has_evidence": False,
                                 "past_due": False, "submission_count": 0},
        }
        self._state.disputes[pi_id] = dispute
        return dispute


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeStripe
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        params = parse_form(url.query if method == "GET" else raw)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body = self.server_fake.handle(method, url.path, params, headers)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Request-Id", "req_" + secrets.token_hex(7))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

