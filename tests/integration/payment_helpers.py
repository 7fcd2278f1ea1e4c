"""GraphQL documents and small helpers shared by the payment tests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

TXN_FIELDS = """id type status amount{ amount currency } capturedAmount{ amount }
  processingFee{ amount currency } refundedAmount{ amount } gateway gatewayReference errorCode errorMessage
  nextAction riskScore metadata gatewayDetails capturableAmount{ amount } paymentMethod{ id type display gateway }
  refunds{ id amount{ amount } status reason } dispute{ id status amount{ amount } reason evidenceDueBy evidence }
  routing{ gateway outcome detail }"""

CREATE = ("mutation($i: CreatePaymentInput!){ createPayment(input:$i){ transaction{ " + TXN_FIELDS
          + " } userErrors{ code field message } } }")
CAPTURE = ("mutation($i: CapturePaymentInput!){ capturePayment(input:$i){ transaction{ " + TXN_FIELDS
           + " } userErrors{ code field message } } }")
CANCEL = ("mutation($id: ID!){ cancelPayment(transactionId:$id){ transaction{ " + TXN_FIELDS
          + " } userErrors{ code field message } } }")
CONFIRM = ("mutation($id: ID!){ confirmPayment(transactionId:$id){ transaction{ " + TXN_FIELDS
           + " } userErrors{ code field message } } }")
REFUND = ("mutation($i: RefundInput!){ refundPayment(input:$i){ refund{ id amount{ amount currency } status reason }"
          " transaction{ " + TXN_FIELDS + " } userErrors{ code field message } } }")
EVIDENCE = ("mutation($i: SubmitDisputeEvidenceInput!){ submitDisputeEvidence(input:$i){ dispute{ id status evidence }"
            " userErrors{ code field message } } }")
TXN = "query($id: ID!){ transaction(id:$id){ " + TXN_FIELDS + " } }"
BALANCES = "query($id: ID!){ business(id:$id){ balances{ amount currency } } }"
SETTINGS = ("mutation($i: UpdatePaymentSettingsInput!){ updatePaymentSettings(input:$i){ settings{ routes stripeAccount }"
            " userErrors{ code field message } } }")

VISA = "4242424242424242"


def card(number: str = VISA, **overrides: Any) -> dict[str, Any]:
    return {"number": number, "expMonth": 12, "expYear": 2034, "cvc": "123", **overrides}


def payment_input(business_id: str, amount: str = "100.00", currency: str = "EUR", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"businessId": business_id, "amount": {"amount": amount, "currency": currency},
                            "method": "CARD", "card": card(), "idempotencyKey": uuid.uuid4().hex}
    base.update(overrides)
    return base


async def create(api: Any, token: str, business_id: str, **overrides: Any) -> dict[str, Any]:
    body = await api.gql(CREATE, {"i": payment_input(business_id, **overrides)}, token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["createPayment"]
    return payload


async def transaction(api: Any, token: str, txn_id: str) -> dict[str, Any]:
    data = await api.ok(TXN, {"id": txn_id}, token)
    result: dict[str, Any] = data["transaction"]
    return result


async def balances(api: Any, token: str, business_id: str) -> dict[str, str]:
    data = await api.ok(BALANCES, {"id": business_id}, token)
    return {b["currency"]: b["amount"] for b in data["business"]["balances"]}


async def eventually(check: Any, seconds: float = 10.0) -> Any:
    """Poll ``check()`` until it returns something truthy (events arrive asynchronously)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
