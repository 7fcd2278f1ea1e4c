"""``veix bench authorize --rate``: an open load, latencies counted from each
request's due time. Driven against a real HTTP server on a socket that answers
after a set delay (a stand-in for an issuer of known speed)."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import pytest

from veix.bench import AUTHORIZATIONS_PATH, run_authorize_bench
from veix.simulator import CardRef

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
CARDS = [CardRef(pan="4242424242424242", expiry="2030-12", cvv="123")]
ANSWER = b'{"response_code": "00", "reason": "approved"}'


class Issuer:
    """Answers every POST after ``delay`` seconds, one request at a time per connection."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.paths: set[bytes] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.paths.add(head.split(b" ")[1])
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.requests += 1
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def issuer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Issuer, str]]:
    found = Issuer(request.param)
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield found, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("issuer", [0.0], indirect=True)
async def test_the_offered_rate_is_kept_when_the_server_keeps_up(issuer: tuple[Issuer, str]) -> None:
    server, url = issuer
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=4, duration=1.0, warmup=0.5, rate=40)
    # 60 due in 1.5 s (warm-up included), 40 of them in the measured second: no more, no fewer.
    assert result.sent == server.requests == 60
    assert result.completed == 40 and result.codes == {"00": 40}
    assert 35 <= result.throughput <= 41
    assert result.percentile(99) < 500
    assert server.paths == {AUTHORIZATIONS_PATH.encode()}
    assert result.to_json()["offered_rps"] == 40


@pytest.mark.parametrize("issuer", [0.1], indirect=True)
async def test_a_slow_server_shows_in_the_latencies_of_an_open_load(issuer: tuple[Issuer, str]) -> None:
    """One connection to an issuer that needs 100 ms per answer (10/s), offered 40/s for a second:
    the requests queue, and each latency counts from when the request was due (what the network
    sees), so the last ones wait seconds. The throughput is what the issuer managed."""
    _, url = issuer
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=1, duration=1.0, rate=40)
    assert result.completed == 40  # every request due within the second is sent, late or not
    assert result.percentile(99) > 2500 and result.percentile(50) > 1000
    assert 8 <= result.throughput <= 11


@pytest.mark.parametrize("issuer", [0.1], indirect=True)
async def test_a_closed_loop_hides_the_queue(issuer: tuple[Issuer, str]) -> None:
    """The same issuer without a rate: the worker waits for each answer before sending the next,
    so every latency is about the service time and the load adapts to the server."""
    _, url = issuer
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=1, duration=1.0)
    assert 8 <= result.completed <= 11
    assert result.percentile(99) < 500


@pytest.mark.parametrize("rate", [0.0, -5.0, float("inf"), float("nan")])
async def test_a_rate_must_be_a_positive_number(rate: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        await run_authorize_bench("http://127.0.0.1:9", SECRET, CARDS, concurrency=1, duration=1.0, rate=rate)
