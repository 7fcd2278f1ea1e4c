"""Live-event fan-out benchmark (``veix bench fanout``).

It starts no server. It opens ``subscribers`` websockets (``graphql-transport-ws``)
on ``/graphql`` of running servers (spread round-robin over ``urls``), each subscribed to ``cardTransactions`` of
one business, then sends ``authorizations`` signed authorizations for that
business's cards (round-robin to ``auth_urls``, by default ``urls``) and
measures, per subscriber, the delivery latency of each ``card_transaction.created``
event: from the moment the authorization's HTTP answer arrived (the answer is
sent after the COMMIT, so it stands for the commit) to the moment the
subscriber's socket delivered the event. A few probe authorizations sent before
the measured ones make sure every subscription is live; they are not counted.

An event is *lost* when a subscriber has not received it ``wait`` seconds after
the last authorization was answered, and *duplicated* each time a subscriber
receives the same card transaction's ``created`` event again. Only authorizations
that produced a card transaction (``card_transaction_id`` in the answer) are
expected.

Two subscriber clients: ``raw`` (the default), a minimal ``graphql-transport-ws``
client on an asyncio protocol that handles each frame in ``data_received`` (no task
or coroutine step per message, the receipt time taken when the bytes arrive), and
``websockets``, the ``websockets`` package's client (``pip install websockets``, imported
only here, so the server does not need it) with one task per socket. The load
generator shares the machine with the servers: the raw client costs a fraction of the
other's CPU, so less of the measured latency is the load generator's own queueing.
Figures of the two clients are not interchangeable; the report says which was used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from veix.bench import AUTHORIZATIONS_PATH, RawConnection, TransportFailure, build_templates, nearest_rank
from veix.security.signatures import sign
from veix.simulator import CardRef

CREATED = "card_transaction.created"
SUBSCRIPTION = ("subscription($b: ID!){ cardTransactions(businessId: $b){ cursor kind "
                "cardTransaction{ id } } }")
PROBES = 5
ATTEMPTS = 3
CLIENTS = ("raw", "websockets")


def websocket_url(url: str) -> str:
    """``http(s)://host:port[/prefix]`` -> ``ws(s)://host:port[/prefix]/graphql``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/graphql"):
        path += "/graphql"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


@dataclass
class FanoutResult:
    urls: list[str]  # the subscribers' servers, round-robin
    auth_urls: list[str]
    subscribers: int  # asked for
    client: str = "raw"  # the subscriber client (CLIENTS)
    connected: int = 0  # subscribed and live (received a probe)
    authorizations: int = 0  # sent (measured ones)
    expected: int = 0  # answered with a card transaction
    failed_authorizations: Counter[str] = field(default_factory=Counter)  # non-200 / transport failures
    latencies_ms: list[float] = field(default_factory=list)  # sorted, one per (subscriber, event) received
    lost: int = 0
    duplicated: int = 0
    connect_errors: Counter[str] = field(default_factory=Counter)
    closed_early: Counter[str] = field(default_factory=Counter)  # subscriber sockets that ended early
    send_seconds: float = 0.0
    retried: Counter[str] = field(default_factory=Counter)  # authorizations sent again after no answer
    event_errors: Counter[str] = field(default_factory=Counter)  # `next` with errors, by first message

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "urls": self.urls, "auth_urls": self.auth_urls, "subscribers": self.subscribers,
            "client": self.client,
            "connected": self.connected, "authorizations": self.authorizations, "expected_events": self.expected,
            "failed_authorizations": dict(self.failed_authorizations),
            "deliveries": self.delivered, "expected_deliveries": self.expected * self.connected,
            "latency_ms": {name: round(nearest_rank(self.latencies_ms, q), 2)
                           for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
            "lost": self.lost, "duplicated": self.duplicated,
            "connect_errors": dict(self.connect_errors), "closed_early": dict(self.closed_early),
            "send_seconds": round(self.send_seconds, 3), "retried": dict(self.retried),
            "event_errors": dict(self.event_errors),
        }


class Subscriber:
    """One websocket subscribed to the business's card transactions."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.received: dict[str, float] = {}  # card transaction id -> first receipt (perf_counter)
        self.duplicates = 0
        self.errors = 0  # `next` messages carrying errors instead of an event
        self.first_error: str | None = None
        self.live = asyncio.Event()  # a probe arrived: the subscription reaches the broadcaster
        self.ended: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.opened = False
        self.probes: set[str] = set()

    def handle(self, msg: dict[str, Any], at: float, probes: set[str]) -> str | None:
        """One server message received at ``at``; returns why the stream ended, if it did."""
        kind = msg.get("type")
        if kind != "next":
            return f"{kind}: {json.dumps(msg.get('payload'))[:200]}"
        payload = msg.get("payload") or {}
        if payload.get("errors"):  # one event failed to resolve; the stream goes on
            self.errors += 1
            self.first_error = self.first_error or json.dumps(payload["errors"])[:200]
            return None
        event = (payload.get("data") or {}).get("cardTransactions") or {}
        if event.get("kind") != CREATED:
            return None
        ct_id = event["cardTransaction"]["id"]
        if ct_id in probes:
            self.live.set()
        elif ct_id in self.received:
            self.duplicates += 1
        else:
            self.received[ct_id] = at
        return None

    async def run(self, ws: Any, probes: set[str]) -> None:
        """The ``websockets`` client's receive loop."""
        clock = time.perf_counter
        try:
            async for raw in ws:
                at = clock()
                msg = json.loads(raw)
                if msg.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                ended = self.handle(msg, at, probes)
                if ended is not None:
                    self.ended = ended
                    return
            self.ended = f"closed {ws.close_code} {ws.close_reason or ''}".strip()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, _ws_errors()) as exc:  # reported
            self.ended = f"{type(exc).__name__}: {exc}"[:200]


class RawSocket(asyncio.Protocol):
    """The ``raw`` client: one graphql-transport-ws subscription on a bare asyncio protocol.
    Server frames (unmasked, RFC 6455) are parsed in ``data_received``; every complete text
    message is handed to :meth:`Subscriber.handle` with the time its bytes arrived."""

    def __init__(self, sub: Subscriber, probes: set[str]) -> None:
        self.sub = sub
        self.probes = probes
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.switched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.key = base64.b64encode(os.urandom(16)).decode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sub.ended is None:
            self.sub.ended = f"closed: {type(exc).__name__}" if exc else "closed"
        for future in (self.switched, self.acked):
            if not future.done():
                future.set_exception(ConnectionError(self.sub.ended))
                future.exception()  # retrieved: the opener may await the other one only
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))  # a few small messages only
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            del buf[:end + 4]
            if b" 101 " not in status + b" ":
                self._fail(f"handshake: {status.decode(errors='replace')[:200]}")
                return
            self.upgraded = True
            self.switched.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, start = b1 & 0x7F, pos + 2
            if n == 126:
                if size - start < 2:
                    break
                n, start = struct.unpack_from("!H", buf, start)[0], start + 2
            elif n == 127:
                if size - start < 8:
                    break
                n, start = struct.unpack_from("!Q", buf, start)[0], start + 8
            if b1 & 0x80:  # a masked server frame is a protocol error
                self._fail("masked frame from the server")
                return
            if size - start < n:
                break
            payload = bytes(buf[start:start + n])
            pos = start + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload, at)
            if self.transport is None or self.transport.is_closing():
                return
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, at: float) -> None:
        if opcode == 0x9:  # ping
            self._send(0xA, payload)
            return
        if opcode == 0x8:  # close
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if self.sub.ended is None:
                self.sub.ended = f"closed {code} {payload[2:].decode(errors='replace')}".strip()
            assert self.transport is not None
            self.transport.close()
            return
        if opcode in (0x1, 0x2):
            self.fragments = [payload]
        elif opcode == 0x0:
            self.fragments.append(payload)
        else:
            return  # pong, reserved
        if not fin:
            return
        text = b"".join(self.fragments)
        self.fragments = []
        try:
            msg = json.loads(text)
            kind = msg.get("type")
            if kind == "ping":
                self.send_text('{"type":"pong"}')
            elif kind == "connection_ack" and not self.acked.done():
                self.acked.set_result(None)
            elif not self.acked.done():
                self._fail(f"refused: {text[:200].decode(errors='replace')}")
            else:
                ended = self.sub.handle(msg, at, self.probes)
                if ended is not None:
                    self._fail(ended)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # reported
            self._fail(f"{type(exc).__name__}: {exc}"[:200])

    def _fail(self, why: str) -> None:
        if self.sub.ended is None:
            self.sub.ended = why
        for future in (self.switched, self.acked):
            if not future.done():
                future.set_exception(ConnectionError(why))
                future.exception()  # retrieved: the opener may await the other one only
        if self.transport is not None:
            self.transport.close()

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self._send(0x8, struct.pack("!H", 1000))
            self.transport.close()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.closed), 2)


async def _open_raw(sub: Subscriber, probes: set[str], ws_url: str, token: str, business_id: str,
                    open_timeout: float) -> RawSocket:
    parts = urlsplit(ws_url)
    if parts.scheme != "ws":
        raise ValueError(f"the raw client speaks ws:// only (use --client websockets): {ws_url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(open_timeout):
        _, proto = await loop.create_connection(lambda: RawSocket(sub, probes), host, port)
    try:
        async with asyncio.timeout(open_timeout):
            assert proto.transport is not None
            proto.transport.write(
                (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {proto.key}\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
            await proto.switched  # (a frame sent with the request would be dropped)
            proto.send_text(json.dumps({"type": "connection_init",
                                        "payload": {"authorization": f"Bearer {token}"}}))
            await proto.acked
            proto.send_text(json.dumps({"id": "1", "type": "subscribe",
                                        "payload": {"query": SUBSCRIPTION, "variables": {"b": business_id}}}))
    except BaseException:
        await proto.close()
        raise
    return proto


def _ws_errors() -> type[Exception]:
    from websockets.exceptions import WebSocketException

    return WebSocketException


async def _open(ws_url: str, token: str, business_id: str, open_timeout: float) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                       open_timeout=open_timeout, ping_interval=None, compression=None,
                       max_queue=None, close_timeout=2)
    try:
        async with asyncio.timeout(open_timeout):
            await ws.send(json.dumps({"type": "connection_init",
                                      "payload": {"authorization": f"Bearer {token}"}}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise ConnectionError(f"refused: {json.dumps(ack)[:200]}")
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": SUBSCRIPTION, "variables": {"b": business_id}}}))
    except BaseException:
        await ws.close()
        raise
    return ws


class Sender:
    """Signed authorizations over one keep-alive connection per server URL, round-robin."""

    def __init__(self, urls: Sequence[str], secret: str, cards: Sequence[CardRef], count: int,
                 timeout: float, seed: int | None) -> None:
        self.connections = [RawConnection(url, AUTHORIZATIONS_PATH, timeout) for url in urls]
        self.secret = secret
        self.bodies = build_templates(cards, seed=seed, fraud_share=0.0, at=datetime.now(UTC),
                                      count=max(count, 1))
        self.prefix = f"auth_f{secrets.token_hex(5)}"
        self.counter = itertools.count()
        self.retries: Counter[str] = Counter()  # requests sent again after no answer, by failure

    async def send(self) -> tuple[str | None, float, str | None]:
        """One authorization: (card transaction id or None, answer time, failure or None).

        A request that got no answer is sent again (up to ``ATTEMPTS`` times, on a new
        connection) with the same network id: the server answers a repeated id with its first
        decision, so a retry never authorizes twice."""
        n = next(self.counter)
        connection = self.connections[n % len(self.connections)]
        head, tail = self.bodies[n % len(self.bodies)]
        msg_id = f"{self.prefix}{n:08x}"
        body = head + msg_id.encode() + tail
        for attempt in range(ATTEMPTS):
            ts = int(time.time())
            try:
                status, content = await connection.post(msg_id, str(ts), sign(self.secret, msg_id, ts, body), body)
            except TransportFailure as failure:
                if attempt + 1 == ATTEMPTS:
                    return None, time.perf_counter(), failure.kind
                self.retries[failure.kind] += 1
                await asyncio.sleep(0.1)
                continue
            answered = time.perf_counter()
            if status != 200:
                return None, answered, f"HTTP {status}"
            ct = json.loads(content).get("card_transaction_id")
            return (_card_transaction_gid(ct) if ct else None), answered, None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()


def _card_transaction_gid(raw: str) -> str:
    import uuid

    from veix.resolvers.ids import to_global_id

    return to_global_id("CardTransaction", uuid.UUID(raw))


async def run_fanout_bench(
    urls: Sequence[str], token: str, business_id: str, cards: Sequence[CardRef], secret: str, *,
    subscribers: int, authorizations: int, auth_urls: Sequence[str] | None = None,
    rate: float | None = 10.0, wait: float = 10.0, connect_timeout: float = 30.0,
    connect_concurrency: int = 50, request_timeout: float = 10.0, seed: int | None = None,
    progress: Any = None, client: str = "raw",
) -> FanoutResult:
    """Open the subscribers, prove them live with probes, send the authorizations, measure."""
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {', '.join(CLIENTS)}")
    if client == "websockets":
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise ValueError("the websockets client needs the websockets package: pip install websockets") from None
    if subscribers < 1 or authorizations < 1:
        raise ValueError("subscribers and authorizations must be at least 1")
    if rate is not None and not rate > 0:
        raise ValueError("rate must be a positive number per second")
    if not cards:
        raise ValueError("the benchmark needs cards of the business")
    sign(secret, "probe", 0, b"")  # a malformed secret fails here
    say = progress or (lambda _text: None)
    if not urls:
        raise ValueError("the benchmark needs a server URL")
    ws_urls = [websocket_url(url) for url in urls]
    targets = list(auth_urls or urls)
    result = FanoutResult(urls=list(urls), auth_urls=targets, subscribers=subscribers, client=client)
    sender = Sender(targets, secret, cards, authorizations + PROBES, request_timeout, seed)
    probes: set[str] = set()
    subs = [Subscriber(n) for n in range(subscribers)]
    sockets: list[Any] = []
    gate = asyncio.Semaphore(connect_concurrency)

    raw_sockets: list[RawSocket] = []
    failures: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)
    if client == "websockets":
        failures += (_ws_errors(),)

    async def open_one(sub: Subscriber) -> None:
        url = ws_urls[sub.n % len(ws_urls)]
        async with gate:
            try:
                if client == "raw":
                    raw_sockets.append(await _open_raw(sub, probes, url, token, business_id, connect_timeout))
                    sub.opened = True
                    return
                ws = await _open(url, token, business_id, connect_timeout)
            except failures as exc:  # counted; the others go on
                result.connect_errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                sub.ended = f"connect: {type(exc).__name__}"
                return
        sockets.append(ws)
        sub.opened = True
        sub.task = asyncio.create_task(sub.run(ws, probes))

    try:
        say(f"opening {subscribers} subscriber(s) on {', '.join(ws_urls)} ...")
        started = time.perf_counter()
        await asyncio.gather(*(open_one(sub) for sub in subs))
        opened = [sub for sub in subs if sub.opened]
        say(f"{len(opened)} subscribed in {time.perf_counter() - started:.1f} s; probing ...")
        if not opened:
            return result
        # Probes until every open subscriber has seen one (its subscription is live), bounded.
        deadline = time.monotonic() + connect_timeout
        for _ in range(PROBES):
            ct, _, failure = await sender.send()
            if failure:
                raise ValueError(f"a probe authorization failed: {failure}")
            if ct is None:
                raise ValueError("a probe authorization produced no card transaction (declined before it?)")
            probes.add(ct)
            pending = [sub.live.wait() for sub in opened if not sub.live.is_set() and sub.ended is None]
            if pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*pending), timeout=min(
                        5.0, max(deadline - time.monotonic(), 0.1)))
            if all(sub.live.is_set() or sub.ended is not None for sub in opened):
                break
        live = [sub for sub in opened if sub.live.is_set()]
        result.connected = len(live)
        say(f"{len(live)} subscriber(s) live; sending {authorizations} authorization(s) ...")

        sent: dict[str, float] = {}
        start = time.perf_counter()
        for i in range(authorizations):
            if rate is not None:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            ct, answered, failure = await sender.send()
            result.authorizations += 1
            if failure:
                result.failed_authorizations[failure] += 1
            elif ct is not None:
                sent[ct] = answered
        result.send_seconds = time.perf_counter() - start
        result.expected = len(sent)

        # Bounded wait for every live subscriber to have every expected event.
        until = time.monotonic() + wait
        while time.monotonic() < until:
            if all(sub.ended is not None or (len(sub.received) >= len(sent)
                                             and len(sub.received.keys() & sent.keys()) == len(sent))
                   for sub in live):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # a late duplicate still counts

        latencies: list[float] = []
        for sub in live:
            for ct, answered in sent.items():
                at = sub.received.get(ct)
                if at is None:
                    result.lost += 1
                else:
                    latencies.append(max(at - answered, 0.0) * 1000)
            result.duplicated += sub.duplicates
            if sub.errors:
                result.event_errors[sub.first_error or "?"] += sub.errors
            if sub.ended is not None:
                result.closed_early[sub.ended] += 1
        result.latencies_ms = sorted(latencies)
        return result
    finally:
        result.retried = sender.retries
        await sender.close()
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), *(raw.close() for raw in raw_sockets),
                             return_exceptions=True)
        await asyncio.gather(*(sub.task for sub in subs if sub.task is not None), return_exceptions=True)


def format_fanout(r: FanoutResult) -> str:
    lat = r.latencies_ms
    failed = sum(r.failed_authorizations.values())
    lines = [
        f"fan-out benchmark ({r.client} client): {r.connected} of {r.subscribers} subscriber(s) live on "
        f"{', '.join(r.urls)}; "
        f"authorizations to {', '.join(r.auth_urls)}",
        f"  authorizations: {r.authorizations} sent in {r.send_seconds:.1f} s, {r.expected} with a card "
        f"transaction, {failed} failed"
        + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(r.failed_authorizations.items()))})" if failed else ""),
        f"  deliveries:     {r.delivered} of {r.expected * r.connected} expected",
        f"  latency ms (HTTP answer -> subscriber): p50 {nearest_rank(lat, 50):.2f}  p90 {nearest_rank(lat, 90):.2f}  "
        f"p99 {nearest_rank(lat, 99):.2f}  max {nearest_rank(lat, 100):.2f}",
        f"  lost: {r.lost}  duplicated: {r.duplicated}",
    ]
    if r.event_errors:
        lines.append(f"  events answered with errors: {sum(r.event_errors.values())} (first: "
                     + "; ".join(f"{k} x{n}" for k, n in r.event_errors.most_common(3)) + ")")
    if r.retried:
        lines.append("  sent again after no answer (same network id): "
                     + ", ".join(f"{k}: {n}" for k, n in r.retried.most_common()))
    if r.connect_errors:
        lines.append("  connect errors: " + ", ".join(f"{k}: {n}" for k, n in r.connect_errors.most_common()))
    if r.closed_early:
        lines.append("  subscribers ended early: "
                     + ", ".join(f"{k} ({n})" for k, n in r.closed_early.most_common(5)))
    return "\n".join(lines)
