"""The crypto gateway on an in-process chain: watch-only deposit addresses, ETH and ERC-20
transfers, confirmations, over- and underpayment, expiry."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from veix.gateways.base import (
    GatewayFailure,
    GatewayPaymentStatus,
    PaymentMethodType,
    PaymentRequest,
    WebhookKind,
    WebhookRejected,
)
from veix.gateways.crypto import CryptoAsset, CryptoGateway, ExtendedPublicKey, OpenDeposit

from .chain import Chain, account_xprv, account_xpub, wallet_account

CONFIRMATIONS = 3
ETH = CryptoAsset("ETH", 18, None, {"USD": Decimal(3000), "EUR": Decimal(2760)})


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Setup:
    def __init__(self, chain: Chain, gateway: CryptoGateway, clock: Clock) -> None:
        self.chain, self.gateway, self.clock = chain, gateway, clock
        self.watcher = gateway.watcher()
        self.last_state: dict[str, str] = {}

    async def pay_request(self, amount: str, currency: str = "USD", asset: str | None = "ETH"):
        return await self.gateway.authorize(PaymentRequest(
            payment_id=uuid.uuid4(), business_id=uuid.uuid4(), amount=Decimal(amount), currency=currency,
            method=PaymentMethodType.CRYPTO, capture=True, idempotency_key=str(uuid.uuid4()),
            crypto_asset=asset))

    async def check(self, *results):
        """One watcher round, as the integrator runs it: details round-trip through JSON metadata."""
        deposits = [OpenDeposit.from_details(json.loads(json.dumps(r.details)), self.last_state.get(r.reference))
                    for r in results]
        events = await self.watcher.check(deposits, self.clock())
        for event in events:
            self.last_state[event.reference] = event.provider_type.removeprefix("crypto.")
        return events


@pytest.fixture
async def setup() -> Setup:
    chain = Chain()
    token = await chain.deploy_token()
    usdc = CryptoAsset("USDC", 6, token, {"USD": Decimal(1), "EUR": Decimal("0.92")})
    clock = Clock()
    counter = iter(range(1000))

    async def allocate_index() -> int:
        return next(counter)

    gateway = CryptoGateway(chain.w3, xpub=account_xpub(), assets={"ETH": ETH, "USDC": usdc},
                            allocate_index=allocate_index, confirmations=CONFIRMATIONS,
                            expiry=timedelta(minutes=30), clock=clock)
    return Setup(chain, gateway, clock)


def expected(result) -> int:
    return int(result.details["expected_base_units"])


async def test_each_payment_gets_a_fresh_address_of_the_merchants_wallet(setup: Setup) -> None:
    results = [await setup.pay_request("10.00") for _ in range(3)]

    addresses = [r.reference for r in results]
    assert len(set(addresses)) == 3
    # The wallet that holds the private keys (m/44'/60'/0'/0/i) controls every deposit address.
    assert addresses == [wallet_account(i).address for i in range(3)]
    assert addresses[0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # the well-known first account
    assert [r.details["derivation_index"] for r in results] == [0, 1, 2]


def test_refuses_an_extended_private_key() -> None:
    with pytest.raises(ValueError, match="PRIVATE"):
        ExtendedPublicKey.parse(account_xprv())


async def test_authorize_asks_for_a_transfer(setup: Setup) -> None:
    result = await setup.pay_request("30.00")

    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert result.next_action == {
        "type": "crypto_transfer", "address": result.reference, "asset": "ETH", "amount": "0.010000000000000000",
        "chainId": await setup.chain.w3.eth.chain_id, "expiresAt": "2026-11-26T12:30:00+00:00",
        "tokenAddress": None,
    }
    assert result.details["expected_base_units"] == str(10**16)
    assert result.details["start_block"] == await setup.chain.w3.eth.block_number


async def test_eth_payment_is_processing_until_confirmed_then_succeeds(setup: Setup) -> None:
    result = await setup.pay_request("30.00")
    assert await setup.check(result) == []

    await setup.chain.send_eth(result.reference, expected(result))
    [seen] = await setup.check(result)
    assert seen.kind is WebhookKind.PAYMENT_PROCESSING
    assert seen.event_id == f"crypto:{result.reference}:processing"
    assert seen.payload["seen"] == str(10**16)

    setup.chain.mine(CONFIRMATIONS - 2)
    assert await setup.check(result) == []  # still waiting; processing already reported

    setup.chain.mine(1)
    [settled] = await setup.check(result)
    assert settled.kind is WebhookKind.PAYMENT_SUCCEEDED
    assert settled.event_id == f"crypto:{result.reference}:succeeded"
    assert (settled.amount, settled.currency) == (Decimal("30.00"), "USD")
    assert settled.payload["received"] == str(10**16)
    assert settled.payload["overpaid"] is False


async def test_erc20_payment_succeeds(setup: Setup) -> None:
    result = await setup.pay_request("12.50", asset="USDC")
    assert result.next_action["tokenAddress"] == setup.chain.token_address
    assert result.next_action["amount"] == "12.500000"

    await setup.chain.send_token(result.reference, 12_500_000)
    assert [e.kind for e in await setup.check(result)] == [WebhookKind.PAYMENT_PROCESSING]
    setup.chain.mine(CONFIRMATIONS - 1)

    [settled] = await setup.check(result)
    assert settled.kind is WebhookKind.PAYMENT_SUCCEEDED
    assert settled.payload == {
        "address": result.reference, "asset": "USDC", "expected": "12500000", "received": "12500000",
        "seen": "12500000", "block": settled.payload["block"], "overpaid": False, "overpaid_base_units": "0",
    }


async def test_eth_sent_to_a_token_deposit_does_not_pay_it(setup: Setup) -> None:
    result = await setup.pay_request("12.50", asset="USDC")
    await setup.chain.send_eth(result.reference, 10**18)
    setup.chain.mine(CONFIRMATIONS)
    assert await setup.check(result) == []


async def test_overpayment_succeeds_and_reports_the_excess(setup: Setup) -> None:
    result = await setup.pay_request("30.00")
    await setup.chain.send_eth(result.reference, expected(result) + 123)
    setup.chain.mine(CONFIRMATIONS - 1)

    [settled] = await setup.check(result)
    assert settled.kind is WebhookKind.PAYMENT_SUCCEEDED
    assert settled.amount == Decimal("30.00")  # the payment's fiat amount, not the overpaid value
    assert settled.payload["overpaid"] is True
    assert settled.payload["overpaid_base_units"] == "123"
    assert settled.payload["received"] == str(expected(result) + 123)


async def test_two_partial_transfers_add_up(setup: Setup) -> None:
    result = await setup.pay_request("12.50", asset="USDC")
    await setup.chain.send_token(result.reference, 5_000_000)
    await setup.chain.send_token(result.reference, 7_500_000)
    setup.chain.mine(CONFIRMATIONS - 1)
    assert [e.kind for e in await setup.check(result)] == [WebhookKind.PAYMENT_SUCCEEDED]


async def test_underpayment_fails_as_underpaid_after_expiry(setup: Setup) -> None:
    result = await setup.pay_request("30.00")
    await setup.chain.send_eth(result.reference, expected(result) - 1)
    setup.chain.mine(CONFIRMATIONS)

    [seen] = await setup.check(result)
    assert seen.kind is WebhookKind.PAYMENT_PROCESSING  # the payer may still top up before expiry
    assert await setup.check(result) == []

    setup.clock.advance(timedelta(minutes=30))
    [failed] = await setup.check(result)
    assert failed.kind is WebhookKind.PAYMENT_FAILED
    assert failed.decline_code == "underpaid"
    assert failed.event_id == f"crypto:{result.reference}:underpaid"
    assert failed.payload["received"] == str(expected(result) - 1)
    assert failed.payload["expected"] == str(expected(result))


async def test_nothing_paid_by_expiry_fails_as_expired(setup: Setup) -> None:
    result = await setup.pay_request("30.00")
    setup.clock.advance(timedelta(minutes=29, seconds=59))
    assert await setup.check(result) == []

    setup.clock.advance(timedelta(seconds=1))
    [failed] = await setup.check(result)
    assert failed.kind is WebhookKind.PAYMENT_FAILED
    assert failed.decline_code == "expired"
    assert failed.event_id == f"crypto:{result.reference}:expired"


async def test_transfer_seen_before_the_watcher_expires_it_counts(setup: Setup) -> None:
    result = await setup.pay_request("30.00")
    setup.clock.advance(timedelta(minutes=31))
    await setup.chain.send_eth(result.reference, expected(result))

    assert [e.kind for e in await setup.check(result)] == [WebhookKind.PAYMENT_PROCESSING]
    setup.chain.mine(CONFIRMATIONS - 1)
    assert [e.kind for e in await setup.check(result)] == [WebhookKind.PAYMENT_SUCCEEDED]


async def test_watcher_checks_many_deposits_in_one_round(setup: Setup) -> None:
    paid, unpaid, token = (await setup.pay_request("30.00"), await setup.pay_request("30.00"),
                           await setup.pay_request("1.00", asset="USDC"))
    await setup.chain.send_eth(paid.reference, expected(paid))
    await setup.chain.send_token(token.reference, 1_000_000)
    setup.chain.mine(CONFIRMATIONS)

    events = await setup.check(paid, unpaid, token)
    assert {(e.reference, e.kind) for e in events} == {
        (paid.reference, WebhookKind.PAYMENT_SUCCEEDED), (token.reference, WebhookKind.PAYMENT_SUCCEEDED)}
    # Deterministic ids: a repeated round yields the same events, which the processor handles once.
    assert [e.event_id for e in await setup.check(paid, token)] == [e.event_id for e in events]


async def test_unknown_asset_is_refused(setup: Setup) -> None:
    with pytest.raises(GatewayFailure, match="unknown crypto asset 'DOGE'"):
        await setup.pay_request("10.00", asset="DOGE")
    with pytest.raises(GatewayFailure, match="unknown crypto asset None"):
        await setup.pay_request("10.00", asset=None)
    with pytest.raises(GatewayFailure, match="no GBP price"):
        await setup.pay_request("10.00", currency="GBP")


@pytest.mark.parametrize(("amount", "currency", "asset", "base_units", "shown"), [
    ("10.00", "USD", "ETH", 3_333_333_333_333_334, "0.003333333333333334"),  # 1/300 ETH, rounded up
    ("30.00", "USD", "ETH", 10**16, "0.010000000000000000"),                 # exact: no rounding
    ("1.00", "EUR", "USDC", 1_086_957, "1.086957"),                           # 1.0869565… rounded up
    ("0.01", "EUR", "ETH", 3_623_188_405_798, "0.000003623188405798"),       # 0.01/2760 = 3.6231884057971…e-6
])
async def test_expected_amount_is_rounded_up_to_the_assets_smallest_unit(
    setup: Setup, amount: str, currency: str, asset: str, base_units: int, shown: str,
) -> None:
    result = await setup.pay_request(amount, currency=currency, asset=asset)
    assert result.details["expected_base_units"] == str(base_units)
    assert result.next_action["amount"] == shown


async def test_capabilities_and_unsupported_operations(setup: Setup) -> None:
    caps = setup.gateway.capabilities
    assert caps.methods == {PaymentMethodType.CRYPTO}
    assert caps.currencies == {"USD", "EUR"}
    assert not (caps.manual_capture or caps.partial_capture or caps.refunds or caps.partial_refunds)

    result = await setup.pay_request("10.00")
    canceled = await setup.gateway.cancel(result.reference, "idem-1")
    assert canceled.status is GatewayPaymentStatus.CANCELED
    with pytest.raises(GatewayFailure, match="crypto refunds are not supported"):
        await setup.gateway.refund(result.reference, Decimal("10.00"), "USD", "idem-2", None)
    with pytest.raises(WebhookRejected):
        await setup.gateway.parse_webhook(b"{}", {})
