"""``veix bench authorize --rate``: an open load, latencies counted from each
request's due time. Driven against a real HTTP server on a socket that answers
after a set delay (a stand-in for an issuer of known speed)."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import pytest

from veix.bench import AUTHORIZATIONS_PATH, format_result, run_authorize_bench
from veix.simulator import CardRef

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
CARDS = [CardRef(pan="4242424242424242", expiry="2030-12", cvv="123")]
ANSWER = b'{"response_code": "00", "reason": "approved"}'


class Issuer:
    """Answers every POST after ``delay`` seconds, one request at a time per connection.
    With ``stall_at`` (a request number), that request's arrival stops every answer for
    ``stall`` seconds (a server that hangs for a while, then recovers)."""

    def __init__(self, delay: float, stall_at: int | None = None, stall: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        self.paths: set[bytes] = set()
        self.stall_at = stall_at
        self.stall = stall
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.hangs: list[asyncio.Task[None]] = []
        self.answers: list[bytes | tuple[bytes, float]] = [ANSWER]  # given in turn

    async def _hang(self) -> None:
        self.resumed.clear()
        await asyncio.sleep(self.stall)
        self.resumed.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.paths.add(head.split(b" ")[1])
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.requests += 1
                answer, extra = self.answers[self.requests % len(self.answers)], 0.0
                if isinstance(answer, tuple):  # (answer, seconds more to wait for it)
                    answer, extra = answer
                if self.requests == self.stall_at:
                    self.hangs.append(asyncio.ensure_future(self._hang()))
                await asyncio.sleep(self.delay + extra)
                await self.resumed.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(answer)).encode() + b"\r\n\r\n" + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def issuer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Issuer, str]]:
    param = request.param
    found = Issuer(*param) if isinstance(param, tuple) else Issuer(param)
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


# The 51st request (due at 1.0 s at 50/s) hangs the issuer for 0.6 s.
@pytest.mark.parametrize("issuer", [(0.0, 51, 0.6)], indirect=True)
async def test_the_timeline_shows_when_the_server_stalled(issuer: tuple[Issuer, str]) -> None:
    """An overall p99 says that something was slow; the timeline says when. The requests due
    while the issuer hung (1.0-1.6 s) wait for it; the slices before and after it are fast."""
    _, url = issuer
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=64, duration=3.0, rate=50, interval=0.5)
    assert [i.start for i in result.timeline] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [i.answers for i in result.timeline] == [25] * 6  # each answer in the slice it was due in
    worst = result.worst_interval()
    assert worst is not None and worst.start == 1.0
    assert 450 <= worst.p99_ms <= 900 and worst.max_ms >= worst.p99_ms
    for fast in (result.timeline[0], result.timeline[1], result.timeline[4], result.timeline[5]):
        assert fast.p99_ms < 150, result.timeline
    assert result.to_json()["timeline"][2] == {"t": 1.0, "answers": 25, "p50": round(worst.p50_ms, 2),
                                               "p99": round(worst.p99_ms, 2), "max": round(worst.max_ms, 2)}


@pytest.mark.parametrize("interval", [0.0, -1.0, float("inf"), float("nan")])
async def test_an_interval_must_be_a_positive_number(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        await run_authorize_bench("http://127.0.0.1:9", SECRET, CARDS, concurrency=1, duration=1.0,
                                  interval=interval)


@pytest.mark.parametrize("rate", [0.0, -5.0, float("inf"), float("nan")])
async def test_a_rate_must_be_a_positive_number(rate: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        await run_authorize_bench("http://127.0.0.1:9", SECRET, CARDS, concurrency=1, duration=1.0, rate=rate)


@pytest.mark.parametrize("issuer", [0.0], indirect=True)
async def test_answers_past_the_servers_deadline_are_reported_as_not_decided(issuer: tuple[Issuer, str]) -> None:
    """A server that sheds load answers 91 (issuer unavailable): those answers
    are fast, so the summary names them apart from the declines."""
    server, url = issuer
    server.answers = [ANSWER, (b'{"response_code": "91", "reason": "issuer_unavailable"}', 0.05)]
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=1, duration=0.6, warmup=0.1)
    assert result.completed > 10 and abs(result.codes["91"] - result.codes["00"]) <= 1
    text = format_result(result)
    declined_line = next(line for line in text.splitlines() if "decisions:" in line)
    assert f"declined 0 (0.0%), NOT decided {result.codes['91']}" in declined_line, text
    assert "waited past the server's deadline" in declined_line
    # The shed answers (here the slow ones) are kept out of the decisions' latencies.
    assert len(result.decided_ms) == result.codes["00"]
    assert result.percentile(99) >= 50 and result.decided_percentile(99) < 40
    assert f"(the {result.codes['00']} answers that were not 91)" in text
    assert f"risk:        0 of the {result.codes['00']} decisions (0.0%)" in text  # the 91s are no decisions
    assert result.to_json()["decided_latency_ms"]["p99"] == round(result.decided_percentile(99), 2)


@pytest.mark.parametrize("issuer", [0.0], indirect=True)
async def test_the_risk_scores_and_each_cards_rate_are_reported(issuer: tuple[Issuer, str]) -> None:
    """The answers' risk scores at or above the default review threshold are
    counted; a run that uses each card more often than the velocity rules
    allow says so (its decisions are a fraud storm, not an everyday mix)."""
    server, url = issuer
    server.answers = [b'{"response_code": "00", "reason": "approved", "risk_score": 0.74}',
                      b'{"response_code": "00", "reason": "approved", "risk_score": 0.15}',
                      b'{"response_code": "59", "reason": "suspected_fraud", "risk_score": 0.9}',
                      b'{"response_code": "00", "reason": "approved", "risk_score": 1e-3}']
    result = await run_authorize_bench(url, SECRET, CARDS, concurrency=1, duration=0.8, rate=100)
    assert result.completed == 80 and result.cards_used == 1
    assert result.flagged == 40  # 0.74 and 0.9 of every four
    text = format_result(result)
    assert "risk:        40 of the 80 decisions (50.0%) scored 0.5 or more" in text, text
    assert "1 cards used, each about 80 times per 10 minutes" in text
    assert result.to_json()["flagged"] == 40 and result.to_json()["per_card_per_10_minutes"] == 80.0

    many = [CardRef(pan=f"4000{n:012d}", expiry="2030-12", cvv="123") for n in range(500)]
    result = await run_authorize_bench(url, SECRET, many, concurrency=1, duration=0.5, rate=40)
    assert result.completed == 20 and result.cards_used == 500  # 2,000 bodies over 500 cards, in turn
    assert "cards used" not in format_result(result)  # each card about once: no note


@pytest.mark.parametrize("issuer", [0.0], indirect=True)
async def test_a_large_card_file_is_used_beyond_twenty_thousand_bodies(issuer: tuple[Issuer, str]) -> None:
    """Two bodies per card, every card in turn: 30,000 bodies over 15,000 cards
    name all of them (but for a few whose turn a fraud burst took twice; random
    picks named some 12,970, and 20,000, the old cap, about 11,050)."""
    _, url = issuer
    many = [CardRef(pan=f"4000{n:012d}", expiry="2030-12", cvv="123") for n in range(15_000)]
    result = await run_authorize_bench(url, SECRET, many, concurrency=1, duration=0.2, rate=10, seed=7)
    assert result.cards_used >= 14_900
