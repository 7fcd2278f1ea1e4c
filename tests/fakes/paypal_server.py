"""A small, real HTTP fake of the PayPal REST API subset Veix uses.

It runs ``http.server`` in a background thread on 127.0.0.1 (a free port)
and keeps everything in memory: OAuth client credentials, Orders v2
(create, get, capture, authorize), authorizations (get, capture, void),
captures (get, refund), ``verify-webhook-signature`` and the Disputes API's
``provide-evidence`` (multipart/form-data with an ``input`` JSON part, as at
PayPal) for the disputes :meth:`FakePaypal.dispute_resource` made. ``PayPal-Request-Id``
replays the first answer. Faults can be injected for the next requests:
``fail_next`` (a non-JSON body, like a load balancer's error page) and
``hang_next`` (the answer comes late).

Webhook signatures: the fake signs ``id|time|webhook_id|crc32(event)`` with
an HMAC only it knows, over the canonical JSON of the event, and its verify
endpoint says SUCCESS only for a signature it made for that very event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import zlib
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_NOT_FOUND = (404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(8).upper()


def _unprocessable(issue: str, description: str = "") -> tuple[int, dict[str, Any]]:
    return 422, {
        "name": "UNPROCESSABLE_ENTITY",
        "message": "The requested action could not be performed, semantically incorrect, or failed business validation.",
        "debug_id": secrets.token_hex(6),
        "details": [{"issue": issue, "description": description or issue}],
    }


def _canonical(event: Any) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


class FakePaypal:
    def __init__(self) -> None:
        self.client_id = "fake-client-" + secrets.token_hex(4)
        self.client_secret = "fake-secret-" + secrets.token_hex(8)
        self.webhook_id = "WH-FAKE-" + secrets.token_hex(4).upper()
        self._signing_key = secrets.token_bytes(32)
        self.base_url = ""
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._refunded: dict[str, Decimal] = {}  # capture id -> refunded so far
        self.disputes: dict[str, dict[str, Any]] = {}  # dispute id -> the dispute resource
        self.evidence: dict[str, dict[str, Any]] = {}  # dispute id -> the last provide-evidence ``input``
        self.evidence_parts: dict[str, dict[str, str | None]] = {}  # dispute id -> part name -> its content type
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, token calls included
        self._tokens: set[str] = set()
        self._replays: dict[tuple[str, str], tuple[int, Any]] = {}
        self._faults: deque[tuple[str, Any]] = deque()
        self._declines: deque[str] = deque()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            paypal = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-paypal", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- test controls ---------------------------------------------------------

    def approve(self, order_id: str) -> None:
        """The buyer logged in at PayPal and approved the order."""
        with self._lock:
            order = self.orders[order_id]
            if order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
                order["status"] = "APPROVED"
                order["payer"] = {"email_address": "buyer@example.com", "payer_id": "FAKEPAYER1"}

    def decline_next_capture(self, kind: str = "INSTRUMENT_DECLINED") -> None:
        """``INSTRUMENT_DECLINED``: a 422 like PayPal's; ``DECLINED``: a 201 whose capture is DECLINED."""
        with self._lock:
            self._declines.append(kind)

    def fail_next(self, n: int = 1, status: int = 503, body: str = "<html>oops</html>") -> None:
        with self._lock:
            self._faults.extend([("fail", (status, body))] * n)

    def hang_next(self, n: int = 1, seconds: float = 2.0) -> None:
        with self._lock:
            self._faults.extend([("hang", seconds)] * n)

    def signed_event(
        self, event_type: str, resource: dict[str, Any], *, transmission_time: str | None = None,
        event_id: str | None = None, create_time: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery as PayPal would post it: the body and lower-case headers."""
        event = {
            "id": event_id or _new_id("WH-EVT-"),
            "event_version": "1.0",
            "create_time": create_time or _now(),
            "resource_type": event_type.split(".")[-2].lower() if "." in event_type else "unknown",
            "event_type": event_type,
            "summary": f"{event_type} (fake)",
            "resource": resource,
        }
        transmission_id = _new_id()
        transmission_time = transmission_time or _now()
        headers = {
            "paypal-transmission-id": transmission_id,
            "paypal-transmission-time": transmission_time,
            "paypal-transmission-sig": self._sign(transmission_id, transmission_time, self.webhook_id, event),
            "paypal-cert-url": f"{self.base_url}/v1/notifications/certs/CERT-FAKE",
            "paypal-auth-algo": "SHA256withRSA",
            "content-type": "application/json",
        }
        return json.dumps(event).encode(), headers

    def capture_resource(self, order_id: str) -> dict[str, Any]:
        """The first capture of an order, as a webhook ``resource``."""
        with self._lock:
            capture_id = self.orders[order_id]["purchase_units"][0]["payments"]["captures"][0]["id"]
            return json.loads(json.dumps(self.captures[capture_id]))

    def authorization_resource(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            auth_id = self.orders[order_id]["purchase_units"][0]["payments"]["authorizations"][0]["id"]
            return json.loads(json.dumps(self.authorizations[auth_id]))

    def dispute_resource(
        self, order_id: str, *, status: str = "OPEN", outcome: str | None = None,
        reason: str = "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", amount: str | None = None,
    ) -> dict[str, Any]:
        """A dispute on the order's capture: PayPal names the capture, not the order."""
        capture = self.capture_resource(order_id)
        resource: dict[str, Any] = {
            "dispute_id": _new_id("PP-D-"),
            "create_time": _now(),
            "update_time": _now(),
            "disputed_transactions": [{
                "seller_transaction_id": capture["id"],
                "buyer_transaction_id": _new_id(),
                "invoice_number": capture.get("invoice_id"),
                "custom": capture.get("custom_id"),
                "gross_amount": capture["amount"],
            }],
            "reason": reason,
            "status": status,
            "dispute_amount": {"currency_code": capture["amount"]["currency_code"],
                               "value": amount or capture["amount"]["value"]},
            "seller_response_due_date": "2030-01-15T10:00:00Z",
            "dispute_life_cycle_stage": "INQUIRY",
            "dispute_channel": "INTERNAL",
        }
        if outcome:
            resource["dispute_outcome"] = {"outcome_code": outcome}
        with self._lock:
            self.disputes[resource["dispute_id"]] = json.loads(json.dumps(resource))
        return resource

    # -- internals -------------------------------------------------------------

    def _sign(self, transmission_id: str, transmission_time: str, webhook_id: str, event: Any) -> str:
        message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(_canonical(event))}"
        return base64.b64encode(hmac.new(self._signing_key, message.encode(), hashlib.sha256).digest()).decode()

    def _next_fault(self) -> tuple[str, Any] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _money(self, currency: str, value: Decimal) -> dict[str, str]:
        exponent = Decimal(1) if currency in ("JPY", "HUF", "TWD") else Decimal("0.01")
        return {"currency_code": currency, "value": str(value.quantize(exponent))}

    def _links(self, kind: str, rid: str) -> list[dict[str, str]]:
        return [{"href": f"{self.base_url}/v2/{kind}/{rid}", "rel": "self", "method": "GET"}]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        self.requests.append((method, path))
        if path == "/v1/oauth2/token" and method == "POST":
            return self._token(headers)
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return 401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
        parts = path.strip("/").split("/")
        if method == "POST" and parts[:3] == ["v1", "customer", "disputes"] and parts[4:] == ["provide-evidence"]:
            with self._lock:
                return self._provide_evidence(parts[3], headers.get("content-type", ""), body)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, {"name": "INVALID_REQUEST", "message": "Request is not well-formed"}
        request_id = headers.get("paypal-request-id")
        replay_key = (path, request_id) if request_id and method == "POST" else None
        with self._lock:
            if replay_key and replay_key in self._replays:
                status, answer = self._replays[replay_key]
                return (200 if status == 201 else status), answer
            status, answer = self._route(method, path, payload)
            if replay_key and status < 500:
                self._replays[replay_key] = (status, answer)
            return status, answer

    def _token(self, headers: dict[str, str]) -> tuple[int, Any]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            return 401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        token = "A21AA" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return 200, {"scope": "https://uri.paypal.com/services/payments/payment", "access_token": token,
                     "token_type": "Bearer", "app_id": "APP-FAKE", "expires_in": 32400, "nonce": _new_id()}

    def _route(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        match method, parts:
            case "POST", ["v2", "checkout", "orders"]:
                return self._create_order(payload)
            case "GET", ["v2", "checkout", "orders", order_id]:
                order = self.orders.get(order_id)
                return (200, order) if order else _NOT_FOUND
            case "POST", ["v2", "checkout", "orders", order_id, "capture"]:
                return self._capture_order(order_id)
            case "POST", ["v2", "checkout", "orders", order_id, "authorize"]:
                return self._authorize_order(order_id)
            case "GET", ["v2", "payments", "authorizations", auth_id]:
                auth = self.authorizations.get(auth_id)
                return (200, auth) if auth else _NOT_FOUND
            case "POST", ["v2", "payments", "authorizations", auth_id, "capture"]:
                return self._capture_authorization(auth_id, payload)
            case "POST", ["v2", "payments", "authorizations", auth_id, "void"]:
                return self._void(auth_id)
            case "GET", ["v2", "payments", "captures", capture_id]:
                capture = self.captures.get(capture_id)
                return (200, capture) if capture else _NOT_FOUND
            case "POST", ["v2", "payments", "captures", capture_id, "refund"]:
                return self._refund(capture_id, payload)
            case "POST", ["v1", "notifications", "verify-webhook-signature"]:
                return self._verify(payload)
        return _NOT_FOUND

    def _create_order(self, payload: dict[str, Any]) -> tuple[int, Any]:
        units = payload.get("purchase_units") or []
        if payload.get("intent") not in ("CAPTURE", "AUTHORIZE") or len(units) != 1:
            return 400, {"name": "INVALID_REQUEST", "message": "Request is not well-formed",
                         "details": [{"issue": "MISSING_REQUIRED_PARAMETER", "field": "/intent"}]}
        amount = units[0].get("amount") or {}
        try:
            if Decimal(amount["value"]) <= 0:
                raise ValueError
        except (KeyError, ValueError, ArithmeticError):
            return _unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE")
        order_id = _new_id()
        context = ((payload.get("payment_source") or {}).get("paypal") or {}).get("experience_context") or {}
        order = {
            "id": order_id,
            "intent": payload["intent"],
            "status": "PAYER_ACTION_REQUIRED" if context else "CREATED",
            "create_time": _now(),
            "purchase_units": [{
                "reference_id": units[0].get("reference_id", "default"),
                "amount": amount,
                "custom_id": units[0].get("custom_id"),
                "invoice_id": units[0].get("invoice_id"),
                "description": units[0].get("description"),
                "payments": {},
            }],
            "experience_context": context,
            "links": [
                *self._links("checkout/orders", order_id),
                {"href": f"{self.base_url}/checkoutnow?token={order_id}",
                 "rel": "payer-action" if context else "approve", "method": "GET"},
            ],
        }
        self.orders[order_id] = order
        return 201, order

    def _capture_order(self, order_id: str) -> tuple[int, Any]:
        order = self.orders.get(order_id)
        if order is None:
            return _NOT_FOUND
        if order["intent"] != "CAPTURE":
            return _unprocessable("ACTION_DOES_NOT_MATCH_INTENT")
        if order["status"] == "COMPLETED":
            return _unprocessable("ORDER_ALREADY_CAPTURED")
        if order["status"] != "APPROVED":
            return _unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.")
        decline = self._declines.popleft() if self._declines else None
        if decline == "INSTRUMENT_DECLINED":
            return _unprocessable("INSTRUMENT_DECLINED", "The instrument presented was either declined or failed.")
        unit = order["purchase_units"][0]
        capture = self._new_capture(order, unit["amount"], "DECLINED" if decline else "COMPLETED", None)
        order["status"] = "COMPLETED"
        unit["payments"].setdefault("captures", []).append(capture)
        return 201, order

    def _authorize_order(self, order_id: str) -> tuple[int, Any]:
        order = self.orders.get(order_id)
        if order is None:
            return _NOT_FOUND
        if order["intent"] != "AUTHORIZE":
            return _unprocessable("ACTION_DOES_NOT_MATCH_INTENT")
        if order["status"] == "COMPLETED":
            return _unprocessable("ORDER_ALREADY_AUTHORIZED")
        if order["status"] != "APPROVED":
            return _unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.")
        unit = order["purchase_units"][0]
        auth_id = _new_id("AUTH")
        auth = {
            "id": auth_id, "status": "CREATED", "amount": dict(unit["amount"]),
            "custom_id": unit.get("custom_id"), "invoice_id": unit.get("invoice_id"),
            "expiration_time": "2099-01-01T00:00:00Z", "create_time": _now(), "update_time": _now(),
            "supplementary_data": {"related_ids": {"order_id": order_id}},
            "links": self._links("payments/authorizations", auth_id),
        }
        self.authorizations[auth_id] = auth
        order["status"] = "COMPLETED"
        unit["payments"].setdefault("authorizations", []).append(auth)
        return 201, order

    def _new_capture(
        self, order: dict[str, Any], amount: dict[str, str], status: str, auth_id: str | None,
    ) -> dict[str, Any]:
        unit = order["purchase_units"][0]
        capture_id = _new_id("CAP")
        related = {"order_id": order["id"], **({"authorization_id": auth_id} if auth_id else {})}
        capture = {
            "id": capture_id, "status": status, "amount": dict(amount), "final_capture": True,
            "custom_id": unit.get("custom_id"), "invoice_id": unit.get("invoice_id"),
            "create_time": _now(), "update_time": _now(),
            "supplementary_data": {"related_ids": related},
            "links": self._links("payments/captures", capture_id),
        }
        if status == "DECLINED":
            capture["status_details"] = {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"}
        self.captures[capture_id] = capture
        return capture

    def _order_of(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self.orders[resource["supplementary_data"]["related_ids"]["order_id"]]

    def _capture_authorization(self, auth_id: str, payload: dict[str, Any]) -> tuple[int, Any]:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return _NOT_FOUND
        if auth["status"] == "VOIDED":
            return _unprocessable("AUTHORIZATION_VOIDED")
        if auth["status"] == "CAPTURED":
            return _unprocessable("AUTHORIZATION_ALREADY_CAPTURED")
        amount = payload.get("amount") or auth["amount"]
        if amount["currency_code"] != auth["amount"]["currency_code"]:
            return _unprocessable("CURRENCY_MISMATCH")
        if Decimal(amount["value"]) > Decimal(auth["amount"]["value"]):
            return _unprocessable("MAX_CAPTURE_AMOUNT_EXCEEDED")
        if self._declines:
            self._declines.popleft()
            return _unprocessable("INSTRUMENT_DECLINED", "The instrument presented was either declined or failed.")
        order = self._order_of(auth)
        capture = self._new_capture(order, amount, "COMPLETED", auth_id)
        capture["final_capture"] = bool(payload.get("final_capture", False))
        auth["status"] = "CAPTURED" if capture["final_capture"] else "PARTIALLY_CAPTURED"
        auth["update_time"] = _now()
        order["purchase_units"][0]["payments"].setdefault("captures", []).append(capture)
        return 201, capture

    def _void(self, auth_id: str) -> tuple[int, Any]:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return _NOT_FOUND
        if auth["status"] in ("CAPTURED", "PARTIALLY_CAPTURED"):
            return _unprocessable("PREVIOUSLY_CAPTURED")
        if auth["status"] == "VOIDED":
            return _unprocessable("PREVIOUSLY_VOIDED")
        auth["status"] = "VOIDED"
        auth["update_time"] = _now()
        return 200, auth

    def _refund(self, capture_id: str, payload: dict[str, Any]) -> tuple[int, Any]:
        capture = self.captures.get(capture_id)
        if capture is None:
            return _NOT_FOUND
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return _unprocessable("CAPTURE_FULLY_REFUNDED" if capture["status"] == "REFUNDED" else "INVALID_STATUS")
        currency = capture["amount"]["currency_code"]
        refunded = self._refunded.get(capture_id, Decimal(0))
        remaining = Decimal(capture["amount"]["value"]) - refunded
        amount = payload.get("amount") or self._money(currency, remaining)
        if amount["currency_code"] != currency:
            return _unprocessable("REFUND_CAPTURE_CURRENCY_MISMATCH")
        if Decimal(amount["value"]) > remaining:
            return _unprocessable("REFUND_AMOUNT_EXCEEDED")
        total = refunded + Decimal(amount["value"])
        self._refunded[capture_id] = total
        capture["status"] = "REFUNDED" if total == Decimal(capture["amount"]["value"]) else "PARTIALLY_REFUNDED"
        refund_id = _new_id("REF")
        refund = {
            "id": refund_id, "status": "COMPLETED", "amount": dict(amount),
            "note_to_payer": payload.get("note_to_payer"), "create_time": _now(), "update_time": _now(),
            "links": [*self._links("payments/refunds", refund_id),
                      {"href": f"{self.base_url}/v2/payments/captures/{capture_id}", "rel": "up", "method": "GET"}],
        }
        self.refunds[refund_id] = refund
        self._order_of(capture)["purchase_units"][0]["payments"].setdefault("refunds", []).append(refund)
        return 201, refund

    def _provide_evidence(self, dispute_id: str, content_type: str, body: bytes) -> tuple[int, Any]:
        """PayPal's provide-evidence: multipart/form-data only, the evidences as JSON in the ``input`` part."""
        if dispute_id not in self.disputes:
            return _NOT_FOUND
        invalid = (400, {"name": "INVALID_REQUEST", "message": "Request is not well-formed",
                         "details": [{"issue": "INVALID_PARAMETER_SYNTAX"}]})
        if not content_type.lower().startswith("multipart/form-data"):
            return 415, {"name": "UNSUPPORTED_MEDIA_TYPE", "message": "The media type is not supported."}
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        if not message.is_multipart():
            return invalid
        parts: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                parts[str(name)] = part
        if "input" not in parts:
            return 400, {"name": "INVALID_REQUEST", "message": "Request is not well-formed",
                         "details": [{"issue": "MISSING_REQUIRED_PARAMETER", "field": "input"}]}
        try:
            data = json.loads(parts["input"].get_payload(decode=True))
        except ValueError:
            return invalid
        evidences = data.get("evidences") if isinstance(data, dict) else None
        if not isinstance(evidences, list) or not evidences:
            return invalid
        for evidence in evidences:
            if not isinstance(evidence, dict) or not evidence.get("evidence_type"):
                return invalid
            if len(str(evidence.get("notes") or "")) > 2000:
                return 400, {"name": "INVALID_REQUEST", "message": "Request is not well-formed",
                             "details": [{"issue": "INVALID_STRING_MAX_LENGTH", "field": "notes"}]}
            if evidence["evidence_type"] == "PROOF_OF_FULFILLMENT":
                tracking = (evidence.get("evidence_info") or {}).get("tracking_info") or []
                if not tracking or not all(t.get("carrier_name") and t.get("tracking_number") for t in tracking):
                    return _unprocessable("MISSING_TRACKING_INFO")
        self.evidence[dispute_id] = data
        self.evidence_parts[dispute_id] = {name: part.get_content_type() for name, part in parts.items()}
        self.disputes[dispute_id]["status"] = "UNDER_REVIEW"
        return 200, {"links": [{"href": f"{self.base_url}/v1/customer/disputes/{dispute_id}", "rel": "detail",
                                "method": "GET"}]}

    def _verify(self, payload: dict[str, Any]) -> tuple[int, Any]:
        required = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time",
                    "webhook_id", "webhook_event")
        if any(not payload.get(key) for key in required):
            return 400, {"name": "VALIDATION_ERROR", "message": "Invalid request - see details",
                         "details": [{"issue": "MISSING_REQUIRED_PARAMETER"}]}
        expected = self._sign(payload["transmission_id"], payload["transmission_time"], payload["webhook_id"],
                              payload["webhook_event"])
        good = payload["webhook_id"] == self.webhook_id and hmac.compare_digest(expected, payload["transmission_sig"])
        return 200, {"verification_status": "SUCCESS" if good else "FAILURE"}


class _Handler(BaseHTTPRequestHandler):
    paypal: FakePaypal
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.paypal._next_fault()
        if fault and fault[0] == "hang":
            time.sleep(fault[1])
        if fault and fault[0] == "fail":
            status, text = fault[1]
            self._send(status, text.encode(), "text/html")
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        path = self.path.split("?", 1)[0]
        status, answer = self.paypal.handle(self.command, path, headers, body)
        if answer is None:
            self._send(status, b"", None)
            return
        data = json.dumps(answer, default=str).encode()
        self._send(status, data, "application/json")

    def _send(self, status: int, data: bytes, content_type: str | None) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Paypal-Debug-Id", secrets.token_hex(6))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang test): nothing to tell it

    do_GET = _serve
    do_POST = _serve
    do_PATCH = _serve
