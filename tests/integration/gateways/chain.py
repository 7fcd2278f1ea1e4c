"""An in-process Ethereum chain (eth-tester + py-evm) and a test wallet for the crypto gateway tests."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

import vyper
from Crypto.Hash import RIPEMD160
from eth_account import Account
from eth_account.hdaccount import seed_from_mnemonic
from eth_account.hdaccount.deterministic import HDPath, derive_child_key
from eth_keys import keys
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

# Hardhat's well-known test mnemonic: never holds real funds.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
ACCOUNT_PATH = "m/44'/60'/0'"

# A minimal ERC-20 (transfer + balanceOf), compiled offline by vyper: solc cannot be downloaded here.
TOKEN_SOURCE = """
# pragma version ~=0.4.3
event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])

@deploy
def __init__(supply: uint256):
    self.name = "Test USD Coin"
    self.symbol = "TUSDC"
    self.decimals = 6
    self.totalSupply = supply
    self.balanceOf[msg.sender] = supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=supply)

@external
def transfer(receiver: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)
    return True
"""


@functools.cache
def compiled_token() -> dict[str, Any]:
    return vyper.compile_code(TOKEN_SOURCE, output_formats=["abi", "bytecode"])


# --- the merchant's wallet (private side, test only) ----------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _B58[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + text


def _extended_key(mnemonic: str, path: str, *, private: bool) -> str:
    """Serialize the BIP32 extended key at ``path`` (xpub, or xprv when ``private``)."""
    main = hmac.new(b"Bitcoin seed", seed_from_mnemonic(mnemonic, ""), hashlib.sha512).digest()
    key, chain_code, parent_key = main[:32], main[32:], b""
    nodes = HDPath(path)._path
    for node in nodes:
        parent_key = key
        key, chain_code = derive_child_key(key, chain_code, node)
    fingerprint = b"\x00" * 4
    if parent_key:
        parent_pub = keys.PrivateKey(parent_key).public_key.to_compressed_bytes()
        fingerprint = RIPEMD160.new(hashlib.sha256(parent_pub).digest()).digest()[:4]
    child_number = nodes[-1].serialize() if nodes else b"\x00" * 4
    version, key_data = ((bytes.fromhex("0488ADE4"), b"\x00" + key) if private
                         else (bytes.fromhex("0488B21E"), keys.PrivateKey(key).public_key.to_compressed_bytes()))
    return _b58check(version + bytes([len(nodes)]) + fingerprint + child_number + chain_code + key_data)


def account_xpub(mnemonic: str = TEST_MNEMONIC) -> str:
    return _extended_key(mnemonic, ACCOUNT_PATH, private=False)


def account_xprv(mnemonic: str = TEST_MNEMONIC) -> str:
    return _extended_key(mnemonic, ACCOUNT_PATH, private=True)


def wallet_account(index: int, mnemonic: str = TEST_MNEMONIC) -> Any:
    """The merchant wallet's account for deposit ``index`` (derived from the private side)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(mnemonic, account_path=f"{ACCOUNT_PATH}/0/{index}")


# --- the chain ------------------------------------------------------------

class Chain:
    """A fresh in-process chain; every transaction is mined in its own block."""

    def __init__(self) -> None:
        self.provider = AsyncEthereumTesterProvider()
        self.w3 = AsyncWeb3(self.provider)
        self.token_address: str | None = None

    async def payer(self) -> str:
        return (await self.w3.eth.accounts)[1]

    async def deploy_token(self, supply: int = 10**15) -> str:
        out = compiled_token()
        owner = await self.payer()
        factory = self.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
        tx = await factory.constructor(supply).transact({"from": owner})
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx)
        self.token_address = receipt["contractAddress"]
        return self.token_address

    async def send_eth(self, to: str, wei: int) -> int:
        tx = await self.w3.eth.send_transaction({"from": await self.payer(), "to": to, "value": wei})
        return (await self.w3.eth.wait_for_transaction_receipt(tx))["blockNumber"]

    async def send_token(self, to: str, units: int) -> int:
        assert self.token_address is not None
        token = self.w3.eth.contract(address=self.token_address, abi=compiled_token()["abi"])
        tx = await token.functions.transfer(to, units).transact({"from": await self.payer()})
        return (await self.w3.eth.wait_for_transaction_receipt(tx))["blockNumber"]

    def mine(self, blocks: int = 1) -> None:
        self.provider.ethereum_tester.mine_blocks(blocks)
