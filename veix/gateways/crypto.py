"""The crypto gateway: BTCPay-style deposits of ETH or ERC-20 tokens, watch-only.

Each payment gets a fresh deposit address derived from the merchant's
extended PUBLIC key (BIP32 public derivation ``<xpub>/0/<index>``; with an
account xpub at ``m/44'/60'/0'`` that is ``m/44'/60'/0'/0/<index>``, the path
MetaMask and hardware wallets use). Veix never holds a private key: the
merchant's wallet controls the funds. An index is never reused, so an
address's balance is exactly what its payer sent.

:class:`CryptoGateway` creates the deposit; :class:`CryptoWatcher` reads the
chain and turns balances into :class:`WebhookEvent` values with deterministic
ids, which the processor handles like any provider's webhook. The watcher is
stateless: the integrator stores ``GatewayResult.details`` with the
transaction and rebuilds an :class:`OpenDeposit` with
:meth:`OpenDeposit.from_details` on every round.

Detection is by balance, at ``head - confirmations + 1`` (confirmed) and at
the head (seen). It assumes nobody moves funds out of a deposit address before
its payment settles. A transfer that is seen before the watcher marks the
payment expired is waited for and counts, even if it confirms after
``expires_at``; BTCPay's separate "paid late" state is out of scope.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, TypeVar

import aiohttp
from eth_keys.backends.native.jacobian import fast_add
from eth_keys.datatypes import PrivateKey, PublicKey
from eth_utils.exceptions import ValidationError as KeyValidationError
from web3 import AsyncWeb3
from web3.exceptions import (
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3Exception,
)

from veix.domain.events import utcnow
from veix.domain.transactions import Gateway
from veix.gateways.base import (
    GatewayCapabilities,
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayResult,
    GatewayUnavailable,
    PaymentMethodType,
    PaymentRequest,
    RefundResult,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)

__all__ = ["CryptoAsset", "CryptoGateway", "CryptoWatcher", "ExtendedPublicKey", "OpenDeposit"]

_ERC20_BALANCE_ABI: list[dict[str, Any]] = [{
    "name": "balanceOf", "type": "function", "stateMutability": "view",
    "inputs": [{"name": "owner", "type": "address"}],
    "outputs": [{"name": "", "type": "uint256"}],
}]
_T = TypeVar("_T")
# An RPC node that is down, slow or rate limiting us: the router may fail over.
_OUTAGES = (aiohttp.ClientError, TimeoutError, OSError, ProviderConnectionError, RequestTimedOut,
            TimeExhausted, TooManyRequests)


@dataclass(frozen=True)
class CryptoAsset:
    """An asset a payer can send; ``prices`` = fiat units one whole unit is worth."""

    symbol: str
    decimals: int
    token_address: str | None  # None = the chain's native ETH
    prices: Mapping[str, Decimal] = field(default_factory=dict)

    def expected_base_units(self, amount: Decimal, currency: str) -> int:
        """Fiat ``amount`` in the asset's base units (wei), rounded UP.

        Rounding up to the asset's smallest unit means a payer who sends the
        displayed amount never underpays by a fraction of a wei.
        """
        price = self.prices.get(currency)
        if price is None or price <= 0:
            raise GatewayFailure(f"{self.symbol} has no {currency} price configured")
        with localcontext() as ctx:
            ctx.prec = 80  # 18 decimals of a large amount must stay exact before rounding
            units = (amount / price).scaleb(self.decimals).to_integral_value(rounding=ROUND_CEILING)
        return int(units)

    def to_major(self, base_units: int) -> Decimal:
        return Decimal(base_units).scaleb(-self.decimals)


# --- BIP32 public derivation (watch-only) ---------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _b58check_decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58.find(char)
        if digit < 0:
            raise ValueError("extended key is not base58")
        number = number * 58 + digit
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(text) - len(text.lstrip("1"))) + raw
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise ValueError("extended key checksum mismatch")
    return payload


@dataclass(frozen=True)
class ExtendedPublicKey:
    public_key: PublicKey
    chain_code: bytes

    @classmethod
    def parse(cls, xpub: str) -> ExtendedPublicKey:
        """Read a serialized BIP32 extended public key (xpub/tpub); refuse private ones."""
        data = _b58check_decode(xpub.strip())
        if len(data) != 78:
            raise ValueError("not a BIP32 extended key")
        key = data[45:78]
        if key[0] == 0:
            raise ValueError("an extended PRIVATE key was given; Veix takes the extended public key only")
        try:
            public_key = PublicKey.from_compressed_bytes(key)
        except KeyValidationError as exc:
            raise ValueError("extended key holds no valid public key") from exc
        return cls(public_key, data[13:45])

    def child(self, index: int) -> ExtendedPublicKey:
        """CKDpub: the non-hardened child ``index``."""
        if not 0 <= index < 2**31:
            raise ValueError("public derivation needs a non-hardened index (0 <= index < 2**31)")
        digest = hmac.new(self.chain_code, self.public_key.to_compressed_bytes() + index.to_bytes(4, "big"),
                          hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        if not 0 < tweak < _SECP256K1_N:  # probability < 2**-127 (BIP32: skip to the next index)
            raise ValueError(f"index {index} yields an invalid key")
        tweak_point = PrivateKey(digest[:32]).public_key.to_bytes()
        point = fast_add(_point(self.public_key.to_bytes()), _point(tweak_point))
        raw = point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")
        return ExtendedPublicKey(PublicKey(raw), digest[32:])

    def address(self) -> str:
        """keccak(uncompressed public key)[-20:], EIP-55 checksummed."""
        return str(self.public_key.to_checksum_address())


def _point(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


# --- chain reads -----------------------------------------------------------

async def _rpc(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except _OUTAGES as exc:
        raise GatewayUnavailable(f"Ethereum RPC unavailable: {type(exc).__name__}") from exc
    except Web3Exception as exc:
        raise GatewayFailure(f"Ethereum RPC refused the call: {type(exc).__name__}") from exc


async def _balance(w3: AsyncWeb3[Any], asset: CryptoAsset, address: str, block: int) -> int:
    if asset.token_address is None:
        return int(await _rpc(w3.eth.get_balance(w3.to_checksum_address(address), block_identifier=block)))
    token = w3.eth.contract(address=w3.to_checksum_address(asset.token_address), abi=_ERC20_BALANCE_ABI)
    return int(await _rpc(token.functions.balanceOf(address).call(block_identifier=block)))


# --- the gateway -----------------------------------------------------------

class CryptoGateway:
    """Creates deposits; :class:`CryptoWatcher` (see :meth:`watcher`) settles them."""

    name = Gateway.CRYPTO

    def __init__(
        self,
        web3: AsyncWeb3[Any],
        *,
        xpub: str,
        assets: Mapping[str, CryptoAsset],
        allocate_index: Callable[[], Awaitable[int]],
        confirmations: int = 3,
        expiry: timedelta = timedelta(minutes=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self._w3 = web3
        # The receive chain <xpub>/0, derived once; each payment takes <xpub>/0/<index>.
        self._receive = ExtendedPublicKey.parse(xpub).child(0)
        self.assets = dict(assets)
        self._allocate_index = allocate_index
        self.confirmations = confirmations
        self._expiry = expiry
        self._clock = clock
        self._chain_id: int | None = None
        self.capabilities = GatewayCapabilities(
            methods=frozenset({PaymentMethodType.CRYPTO}),
            currencies=frozenset(c for asset in self.assets.values() for c in asset.prices),
            manual_capture=False,
            partial_capture=False,
            # Refunding means sending funds from the merchant's wallet to an address the payer
            # gives: Veix holds no key and learns no payer address, so the merchant refunds.
            refunds=False,
            partial_refunds=False,
        )

    @property
    def web3(self) -> AsyncWeb3[Any]:
        return self._w3

    def deposit_address(self, index: int) -> str:
        return self._receive.child(index).address()

    def watcher(self) -> CryptoWatcher:
        return CryptoWatcher(self._w3, assets=self.assets, confirmations=self.confirmations)

    async def _chain(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(await _rpc(self._w3.eth.chain_id))
        return self._chain_id

    async def authorize(self, request: PaymentRequest) -> GatewayResult:
        if request.method is not PaymentMethodType.CRYPTO:
            raise GatewayFailure(f"the crypto gateway cannot take {request.method.value} payments")
        asset = self.assets.get(request.crypto_asset or "")
        if asset is None:
            configured = ", ".join(sorted(self.assets))
            raise GatewayFailure(f"unknown crypto asset {request.crypto_asset!r} (configured: {configured})")
        if request.amount <= 0:
            raise GatewayFailure("a crypto payment needs a positive amount")
        expected = asset.expected_base_units(request.amount, request.currency)
        chain_id = await self._chain()
        start_block = int(await _rpc(self._w3.eth.block_number))
        index = await self._allocate_index()
        address = self.deposit_address(index)
        expires_at = (self._clock() + self._expiry).astimezone(UTC)
        amount = format(asset.to_major(expected), "f")
        return GatewayResult(
            status=GatewayPaymentStatus.REQUIRES_ACTION,
            reference=address,
            next_action={
                "type": "crypto_transfer", "address": address, "asset": asset.symbol, "amount": amount,
                "chainId": chain_id, "expiresAt": expires_at.isoformat(), "tokenAddress": asset.token_address,
            },
            display=f"{asset.symbol} {address[:6]}…{address[-4:]}",
            provider_status="awaiting_transfer",
            details={
                "address": address, "derivation_index": index, "asset": asset.symbol,
                "expected_base_units": str(expected), "expected_amount": amount,
                "fiat_amount": str(request.amount), "fiat_currency": request.currency,
                "start_block": start_block, "expires_at": expires_at.isoformat(), "chain_id": chain_id,
                "token_address": asset.token_address, "confirmations": self.confirmations,
            },
        )

    async def confirm(self, reference: str, params: Mapping[str, Any]) -> GatewayResult:
        raise GatewayFailure("crypto payments need no confirmation call; CryptoWatcher reports the transfer")

    async def retrieve(self, reference: str) -> GatewayResult:
        # The address alone says neither asset nor amount: the stored details do (OpenDeposit).
        raise GatewayFailure("crypto payments are tracked by CryptoWatcher.check from the stored details")

    async def capture(self, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        raise GatewayFailure("crypto payments settle when the transfer confirms; there is nothing to capture")

    async def cancel(self, reference: str, idempotency_key: str) -> GatewayResult:
        """Local only: the chain knows nothing of the payment. Funds sent anyway stay in the merchant's wallet."""
        return GatewayResult(status=GatewayPaymentStatus.CANCELED, reference=reference, provider_status="canceled")

    async def refund(
        self, reference: str, amount: Decimal, currency: str, idempotency_key: str, reason: str | None,
    ) -> RefundResult:
        raise GatewayFailure("crypto refunds are not supported: the merchant's wallet must send them")

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise WebhookRejected("the crypto gateway has no inbound webhooks; CryptoWatcher produces its events")


# --- the watcher -----------------------------------------------------------

@dataclass(frozen=True)
class OpenDeposit:
    """A payment the watcher still has to settle, rebuilt from its stored details."""

    reference: str              # the deposit address
    asset: str
    expected_base_units: int
    expires_at: datetime
    start_block: int
    fiat_amount: Decimal
    fiat_currency: str
    last_state: str | None = None  # the last state reported: None or "processing"

    @classmethod
    def from_details(cls, details: Mapping[str, Any], last_state: str | None = None) -> OpenDeposit:
        return cls(
            reference=str(details["address"]),
            asset=str(details["asset"]),
            expected_base_units=int(details["expected_base_units"]),
            expires_at=datetime.fromisoformat(str(details["expires_at"])),
            start_block=int(details["start_block"]),
            fiat_amount=Decimal(str(details["fiat_amount"])),
            fiat_currency=str(details["fiat_currency"]),
            last_state=last_state,
        )


class CryptoWatcher:
    """Reads deposit balances and reports what changed; keeps no state of its own."""

    def __init__(self, web3: AsyncWeb3[Any], *, assets: Mapping[str, CryptoAsset], confirmations: int = 3) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self._w3 = web3
        self._assets = dict(assets)
        self.confirmations = confirmations

    async def check(self, deposits: Sequence[OpenDeposit], now: datetime) -> list[WebhookEvent]:
        """One round: at most one event per deposit, none when nothing changed.

        Raises GatewayUnavailable when the node cannot be read; try again next round.
        """
        if not deposits:
            return []
        head = int(await _rpc(self._w3.eth.block_number))
        results = await asyncio.gather(*(self._check_one(d, head, now) for d in deposits))
        return [event for event in results if event is not None]

    async def _check_one(self, deposit: OpenDeposit, head: int, now: datetime) -> WebhookEvent | None:
        asset = self._assets.get(deposit.asset)
        if asset is None:
            raise GatewayFailure(f"deposit {deposit.reference} uses unconfigured asset {deposit.asset!r}")
        seen = await _balance(self._w3, asset, deposit.reference, head)
        confirmed_block = head - self.confirmations + 1
        confirmed = 0
        if seen and confirmed_block >= deposit.start_block:
            confirmed = seen if confirmed_block == head else await _balance(
                self._w3, asset, deposit.reference, confirmed_block)
        expected = deposit.expected_base_units
        payload: dict[str, Any] = {
            "address": deposit.reference, "asset": asset.symbol, "expected": str(expected),
            "received": str(confirmed), "seen": str(seen), "block": confirmed_block,
        }
        if confirmed >= expected:
            overpaid = confirmed - expected
            payload |= {"overpaid": overpaid > 0, "overpaid_base_units": str(overpaid)}
            return self._event(deposit, "succeeded", WebhookKind.PAYMENT_SUCCEEDED, now, payload,
                               amount=deposit.fiat_amount)
        if seen > confirmed or (seen and now < deposit.expires_at):
            # Money is on its way (or part of it arrived in time): wait, even past expiry.
            if deposit.last_state == "processing":
                return None
            return self._event(deposit, "processing", WebhookKind.PAYMENT_PROCESSING, now, payload)
        if now < deposit.expires_at:
            return None
        code = "underpaid" if confirmed else "expired"
        message = (f"received {asset.to_major(confirmed)} of {asset.to_major(expected)} {asset.symbol}"
                   if confirmed else "no transfer arrived before the payment expired")
        return self._event(deposit, code, WebhookKind.PAYMENT_FAILED, now, payload, decline_code=code,
                           decline_message=message)

    @staticmethod
    def _event(
        deposit: OpenDeposit, state: str, kind: WebhookKind, now: datetime, payload: Mapping[str, Any],
        *, amount: Decimal | None = None, decline_code: str | None = None, decline_message: str | None = None,
    ) -> WebhookEvent:
        return WebhookEvent(
            event_id=f"crypto:{deposit.reference}:{state}",
            kind=kind,
            provider_type=f"crypto.{state}",
            occurred_at=now.astimezone(UTC),
            reference=deposit.reference,
            amount=amount,
            currency=deposit.fiat_currency if amount is not None else None,
            decline_code=decline_code,
            decline_message=decline_message,
            payload=payload,
        )
