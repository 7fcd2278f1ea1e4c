"""Load generator for ``POST /v1/network/authorizations`` (``veix bench authorize``).

It starts no server: it drives signed authorizations at a running one with
``concurrency`` asyncio workers, each over its own HTTP/1.1 keep-alive
connection, so ``concurrency`` connections in all. By default each worker
sends its next request when its answer came (closed loop: the server sets the
pace, and a slow answer delays the requests behind it, which the latencies
then do not show). With ``rate`` the load is open: the n-th request is due at
``start + n / rate`` whatever the answers do, a worker sends it at that time or
as soon as it is free, and its latency counts from the time it was due, so
time spent waiting for a free connection counts too (what a card network
sees when the issuer falls behind: the correction wrk2 makes for "coordinated
omission"). ``rate`` is how "N authorizations per second sustained with p99
under X ms" is checked: offer N per second and read the throughput and p99.

The default client is :class:`RawConnection` (a few lines of HTTP/1.1 on
asyncio streams); ``client="httpx"`` runs the same over ``httpx.AsyncClient`` to
cross-check it, at about 15 times the client CPU.

The generator shares the machine's cores with the server, so it does as little
per request as it can: the simulator's bodies are serialised before the run
as ``head + network id + tail`` byte templates; per request it only joins the
fresh id in, signs (the signature covers the timestamp, so it cannot be made
earlier), sends, and picks the response code out of the answer bytes without
parsing the JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import re
import secrets
import ssl
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from veix.domain.risk import RiskPolicy, RulesConfig
from veix.security.signatures import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from veix.simulator import DEFAULT_FRAUD_SHARE, CardRef, Simulator

AUTHORIZATIONS_PATH = "/v1/network/authorizations"
# Two bodies per card (every card in turn, in a shuffled order), for files of up to 125,000
# cards (about 0.4 kB per body in the generator's memory). With 20,000 a larger file was
# used only in part: each card then authorized more often than its size suggested.
MAX_TEMPLATES = 250_000
_CODE_RE = re.compile(rb'"response_code":\s*"([0-9]{2})"')
_REASON_RE = re.compile(rb'"reason":\s*"([^"]*)"')
_RISK_RE = re.compile(rb'"risk_score":\s*([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')
# The default review threshold (VEIX_RISK_REVIEW_THRESHOLD): an answer scored at or
# above it raised a fraud alert on a server with the default thresholds.
FLAGGED_AT = RiskPolicy().review_threshold
# The rules scorer's velocity limit: a card used more often than this in 10 minutes is
# flagged, so a run that uses each card more often measures a fraud storm.
VELOCITY_PER_10_MINUTES = RulesConfig().max_count_10m
NOT_DECIDED = "91"  # the server's answer to a request that waited past its deadline (shed load)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


SUMMARY = (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of sorted ``values`` (ms), rounded to 0.01."""
    return {name: round(nearest_rank(values, q), 2) for name, q in SUMMARY}


def summary_text(values: Sequence[float]) -> str:
    return "  ".join(f"{name} {nearest_rank(values, q):.2f}" for name, q in SUMMARY)


@dataclass(frozen=True, slots=True)
class Interval:
    """The answers to the requests due (closed loop: sent) within one slice of the
    measured window: a stall shows as the slices whose latencies jump."""

    start: float  # seconds after the measured window began
    answers: int  # 200 answers
    p50_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.start, 3), "answers": self.answers, "p50": round(self.p50_ms, 2),
                "p99": round(self.p99_ms, 2), "max": round(self.max_ms, 2)}


def build_timeline(due: Sequence[float], latency_ms: Sequence[float], interval: float,
                   duration: float) -> list[Interval]:
    """Slices of ``interval`` seconds over ``duration``: each answer counted in the slice
    in which its request was due (``due``: seconds after the window began)."""
    slices: list[list[float]] = [[] for _ in range(max(1, math.ceil(duration / interval - 1e-9)))]
    for at, ms in zip(due, latency_ms, strict=True):
        slices[min(int(at / interval), len(slices) - 1)].append(ms)
    out = []
    for i, values in enumerate(slices):
        values.sort()
        out.append(Interval(i * interval, len(values), nearest_rank(values, 50), nearest_rank(values, 99),
                            values[-1] if values else 0.0))
    return out


@dataclass(slots=True)
class BenchResult:
    url: str
    concurrency: int
    cards: int
    warmup: float
    client: str = "raw"
    rate: float | None = None  # offered requests per second (open loop), None: closed loop
    elapsed: float = 0.0  # seconds of the measured window
    latencies_ms: list[float] = field(default_factory=list)  # of every 200 answer, sorted
    decided_ms: list[float] = field(default_factory=list)  # of the answers that were decisions (not 91), sorted
    codes: Counter[str] = field(default_factory=Counter)  # ISO 8583 response code -> answers
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, reason) -> answers
    statuses: Counter[int] = field(default_factory=Counter)  # non-200 HTTP status -> answers
    timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # transport error class -> count
    client_cpu: float = 0.0  # CPU seconds this process spent during the run (load generator cost)
    sent: int = 0  # requests sent during the run, warm-up included
    cards_used: int = 0  # distinct cards the request bodies name (every card in turn, bursts aside)
    flagged: int = 0  # decisions (answers but 91) whose risk score is at least FLAGGED_AT
    interval: float = 1.0  # seconds per slice of the timeline
    timeline: list[Interval] = field(default_factory=list)  # the measured window, slice by slice

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def non_200(self) -> int:
        return sum(self.statuses.values())

    @property
    def failures(self) -> int:
        return self.non_200 + self.timeouts + sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Authentic answers (200) per second of the measured window."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def client_cpu_ms_per_request(self) -> float:
        return 1000 * self.client_cpu / self.sent if self.sent else 0.0

    @property
    def approved(self) -> int:
        return self.codes.get("00", 0)

    @property
    def per_card_per_10_minutes(self) -> float:
        """How often the run used each card, scaled to 10 minutes (the velocity rule's window)."""
        seconds = self.warmup + self.elapsed
        if not self.cards_used or seconds <= 0:
            return 0.0
        return self.sent / self.cards_used * min(1.0, 600 / seconds)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in ms (0 when nothing completed)."""
        return nearest_rank(self.latencies_ms, q)

    def decided_percentile(self, q: float) -> float:
        """As ``percentile``, over the answers that were decisions (a server
        shedding load answers the rest 91 at its deadline)."""
        return nearest_rank(self.decided_ms, q)

    def worst_interval(self) -> Interval | None:
        """The slice with the highest p99 (None without answers)."""
        answered = [i for i in self.timeline if i.answers]
        return max(answered, key=lambda i: i.p99_ms) if answered else None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url, "client": self.client, "concurrency": self.concurrency, "cards": self.cards,
            "offered_rps": self.rate,
            "warmup_s": self.warmup, "elapsed_s": round(self.elapsed, 3), "completed": self.completed,
            "throughput_rps": round(self.throughput, 1),
            "latency_ms": summary_ms(self.latencies_ms),
            "decided_latency_ms": summary_ms(self.decided_ms),
            "response_codes": dict(self.codes),
            "reasons": {f"{c} {r}": n for (c, r), n in self.reasons.items()},
            "non_200": {str(k): v for k, v in self.statuses.items()},
            "timeouts": self.timeouts, "errors": dict(self.errors),
            "client_cpu_ms_per_request": round(self.client_cpu_ms_per_request, 3),
            "cards_used": self.cards_used, "per_card_per_10_minutes": round(self.per_card_per_10_minutes, 1),
            "flagged": self.flagged,
            "timeline": [i.to_json() for i in self.timeline],
        }


def _cheap_missing_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` fail fast when sniffio is absent.

    httpcore 1.x imports sniffio each time it creates a lock (several times per request); recent
    anyio no longer installs it, and a failed import is not cached, so each attempt scans
    ``sys.path`` again: measured 3-5 ms of CPU per request. ``sys.modules[name] = None`` is the
    import system's documented way to make an import fail at once; httpcore then assumes asyncio,
    which is what runs here.
    """
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def build_templates(cards: Sequence[CardRef], *, seed: int | None, fraud_share: float, at: datetime,
                    count: int, used: set[str] | None = None) -> list[tuple[bytes, bytes]]:
    """Serialised bodies split around the network id: ``head + id + tail``.
    ``used`` collects the keys of the cards they name."""
    sim = Simulator(seed, fraud_share=fraud_share, run_id="")
    deck = list(cards)
    sim.rng.shuffle(deck)  # every card in turn, in a random order (random picks left 14 % unused)
    templates = []
    for turn in range(count):
        card = sim.pick_card(deck, turn=turn)
        if used is not None:
            used.add(card.key)
        body = sim.next_request(card, at)
        del body["id"]
        rest = json.dumps(body, separators=(",", ":")).encode()
        templates.append((b'{"id":"', b'",' + rest[1:]))
    return templates


class TransportFailure(Exception):
    """A request that got no HTTP answer: ``kind`` is "timeout" or the error's class name."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class RawConnection:
    """One HTTP/1.1 keep-alive connection that speaks only what the benchmark needs.

    Why not httpx here: measured on this machine, an ``httpx.AsyncClient`` request costs about
    1.4 ms of client CPU and this one about 0.09 ms. The load generator shares two cores with
    the server, so at 1,000 req/s httpx alone would take more than a core from the server under
    test. The request head is fixed bytes; the answer is read by ``Content-Length`` (or chunks).
    A failed or timed-out request closes the connection; the next request opens a new one.
    """

    def __init__(self, url: str, path: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.timeout = timeout
        target = (parts.path.rstrip("/") + path).encode()
        host_header = parts.netloc.rpartition("@")[2].encode()
        self.head = (b"POST " + target + b" HTTP/1.1\r\nHost: " + host_header
                     + b"\r\nContent-Type: application/json\r\n")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, msg_id: str, timestamp: str, signature: str, body: bytes) -> tuple[int, bytes]:
        request = b"".join((
            self.head, b"webhook-id: ", msg_id.encode(), b"\r\nwebhook-timestamp: ", timestamp.encode(),
            b"\r\nwebhook-signature: ", signature.encode(), b"\r\nContent-Length: ",
            str(len(body)).encode(), b"\r\n\r\n", body))
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            await self.close()
            raise TransportFailure("timeout") from None
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise TransportFailure(type(exc).__name__) from None

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(lowered[at + 17:lowered.index(b"\r\n", at + 2)])
            content = await self.reader.readexactly(length)
        elif b"transfer-encoding: chunked" in lowered:
            content = await self._chunks()
        else:
            raise ValueError("an answer without Content-Length or chunks")
        if b"\r\nconnection: close" in lowered:
            await self.close()
        return status, content

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        pieces: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(pieces)
            pieces.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxConnection:
    """The same over ``httpx.AsyncClient`` (``client="httpx"``): slower, for cross-checking.

    One client per worker with a single keep-alive connection: httpcore's pool scans every
    connection (and polls each socket) on each request, so one pool of C connections costs
    O(C) per request (measured: 8 ms of CPU per request with 32).
    """

    def __init__(self, url: str, path: str, timeout: float) -> None:
        _cheap_missing_sniffio()
        tls: ssl.SSLContext | bool = ssl.create_default_context() if url.startswith("https") else False
        self.url = httpx.URL(url.rstrip("/") + path)
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                        timeout=timeout, verify=tls, trust_env=False)

    async def post(self, msg_id: str, timestamp: str, signature: str, body: bytes) -> tuple[int, bytes]:
        headers = {"content-type": "application/json", ID_HEADER: msg_id, TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature}
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise TransportFailure("timeout") from None
        except httpx.TransportError as exc:
            raise TransportFailure(type(exc).__name__) from None
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


CLIENTS: dict[str, type[RawConnection] | type[HttpxConnection]] = {"raw": RawConnection, "httpx": HttpxConnection}


async def run_authorize_bench(
    url: str, secret: str, cards: Sequence[CardRef], concurrency: int, duration: float, *,
    warmup: float = 0.0, seed: int | None = None, fraud_share: float = DEFAULT_FRAUD_SHARE,
    request_timeout: float = 10.0, templates: int | None = None, client: str = "raw",
    rate: float | None = None, interval: float = 1.0,
) -> BenchResult:
    """Drive signed authorizations at ``url`` for ``warmup + duration`` seconds.

    Only answers to requests sent (with ``rate``: due) after the warm-up count;
    requests in flight when the time is up are awaited and counted. With
    ``rate``, every request due before the end is sent, late or not. The
    result's timeline cuts the window into slices of ``interval`` seconds.
    """
    if concurrency < 1 or duration <= 0 or warmup < 0:
        raise ValueError("concurrency >= 1, duration > 0 and warmup >= 0 are needed")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError("the rate is a positive number of requests per second")
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError("the interval is a positive number of seconds")
    if not cards:
        raise ValueError("the benchmark needs cards")
    if client not in CLIENTS:
        raise ValueError(f"client is one of {sorted(CLIENTS)}")
    sign(secret, "probe", 0, b"")  # a malformed secret fails here, not in every worker
    connections = [CLIENTS[client](url, AUTHORIZATIONS_PATH, request_timeout) for _ in range(concurrency)]
    count = templates or min(MAX_TEMPLATES, max(2_000, 2 * len(cards)))
    used: set[str] = set()
    bodies = build_templates(cards, seed=seed, fraud_share=fraud_share, at=datetime.now(UTC),
                             count=count, used=used)
    result = BenchResult(url=url, concurrency=concurrency, cards=len(cards), warmup=warmup, client=client,
                         rate=rate, interval=interval, cards_used=len(used))
    del used
    prefix = f"auth_b{secrets.token_hex(5)}"
    counter = itertools.count()
    latencies: list[float] = []
    decided: list[float] = []  # the latencies of the answers that were not 91
    due: list[float] = []  # when each answered request was due (closed loop: sent), from measure_from
    # Long-lived objects (templates, cards) out of the collector's way during the run.
    gc.collect()
    gc.freeze()

    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    measure_from = start + warmup
    stop_at = measure_from + duration
    last_done = measure_from
    requests = 0

    async def worker(connection: RawConnection | HttpxConnection) -> None:
        nonlocal last_done, requests
        post = connection.post
        while True:
            if rate is None:  # closed loop: the next request goes now
                if (sent := clock()) >= stop_at:
                    break
                n = next(counter)
            else:  # open loop: the n-th goes when it is due, or as soon as this worker is free
                n = next(counter)
                if (sent := start + n / rate) >= stop_at:
                    break
                if (wait := sent - clock()) > 0:
                    await asyncio.sleep(wait)
            requests += 1
            head, tail = bodies[n % count]
            msg_id = f"{prefix}{n:08x}"
            body = head + msg_id.encode() + tail
            ts = int(time.time())  # the signature covers it: made per request
            try:
                status, content = await post(msg_id, str(ts), sign(secret, msg_id, ts, body), body)
            except TransportFailure as failure:
                if sent >= measure_from:
                    if failure.kind == "timeout":
                        result.timeouts += 1
                    else:
                        result.errors[failure.kind] += 1
                if failure.kind != "timeout":
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                continue
            done = clock()
            if sent < measure_from:
                continue
            last_done = max(last_done, done)
            if status != 200:
                result.statuses[status] += 1
                continue
            latencies.append(done - sent)
            due.append(sent - measure_from)
            code_match = _CODE_RE.search(content)
            code = code_match.group(1).decode() if code_match else "??"
            reason_match = _REASON_RE.search(content)
            result.codes[code] += 1
            result.reasons[(code, reason_match.group(1).decode() if reason_match else "")] += 1
            if code != NOT_DECIDED:
                decided.append(done - sent)
                risk_match = _RISK_RE.search(content)
                if risk_match and float(risk_match.group(1)) >= FLAGGED_AT:
                    result.flagged += 1

    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            await connection.close()
        gc.unfreeze()
    result.elapsed = max(last_done, stop_at) - measure_from
    result.client_cpu = time.process_time() - cpu_start
    result.sent = requests
    result.latencies_ms = sorted(x * 1000 for x in latencies)
    result.decided_ms = sorted(x * 1000 for x in decided)
    result.timeline = build_timeline(due, [x * 1000 for x in latencies], interval, duration)
    return result


def format_result(result: BenchResult, *, show_timeline: bool = False) -> str:
    r = result
    lines = [
        f"authorize benchmark against {r.url}: {r.concurrency} concurrent workers ({r.client} client), "
        + (f"{r.rate:g} requests/s offered (open loop, latency from each request's due time), "
           if r.rate else "closed loop, ")
        + f"{r.cards} cards, {r.elapsed:.1f} s measured after {r.warmup:g} s warm-up",
        f"  throughput:  {r.throughput:.1f} req/s ({r.completed} answers)",
        f"  latency ms:  {summary_text(r.latencies_ms)}",
    ]
    if r.codes.get(NOT_DECIDED):
        lines.append(f"  decisions ms: {summary_text(r.decided_ms)}  "
                     f"(the {len(r.decided_ms)} answers that were not 91)")
    worst = r.worst_interval()
    if worst is not None and len(r.timeline) > 1:
        lines.append(f"  worst {r.interval:g} s:  from {worst.start:g} s, p99 {worst.p99_ms:.2f} ms, "
                     f"max {worst.max_ms:.2f} ms ({worst.answers} answers)")
    if show_timeline:
        lines.append("  timeline (by due time):  from s  answers  p50 ms  p99 ms  max ms")
        lines.extend(f"    {i.start:>22g}  {i.answers:>7}  {i.p50_ms:>6.1f}  {i.p99_ms:>6.1f}  {i.max_ms:>6.1f}"
                     for i in r.timeline)
    if r.completed:
        undecided = r.codes.get(NOT_DECIDED, 0)
        declined = r.completed - r.approved - undecided
        lines.append(f"  decisions:   approved {r.approved} ({100 * r.approved / r.completed:.1f}%), "
                     f"declined {declined} ({100 * declined / r.completed:.1f}%)"
                     + (f", NOT decided {undecided} ({100 * undecided / r.completed:.1f}%: 91, "
                        "they waited past the server's deadline)" if undecided else ""))
        for code, n in sorted(r.codes.items()):
            why = ", ".join(f"{reason or '-'} {m}" for (c, reason), m in r.reasons.most_common()
                            if c == code and code != "00")
            lines.append(f"    {code}  {n:>8}  {100 * n / r.completed:5.1f}%" + (f"  ({why})" if why else ""))
        if r.decided_ms:  # (a 91 is no decision and carries no score)
            lines.append(f"  risk:        {r.flagged} of the {len(r.decided_ms)} decisions "
                         f"({100 * r.flagged / len(r.decided_ms):.1f}%) scored {FLAGGED_AT:g} or more "
                         "(with the default thresholds each raised a fraud alert)")
    if r.per_card_per_10_minutes > VELOCITY_PER_10_MINUTES:
        lines.append(f"  note:        {r.cards_used} cards used, each about {r.per_card_per_10_minutes:.0f} times "
                     f"per 10 minutes: more than the velocity rules allow ({VELOCITY_PER_10_MINUTES}), so most "
                     "answers are flagged or declined as fraud; give more cards (veix bench setup-cards "
                     "--cards) for an everyday mix")
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(r.statuses.items()))
    errors = ", ".join(f"{name}: {n}" for name, n in r.errors.most_common())
    lines.append(f"  errors:      {r.non_200} non-200{f' ({statuses})' if statuses else ''}, "
                 f"{r.timeouts} timeouts, {sum(r.errors.values())} connection errors"
                 f"{f' ({errors})' if errors else ''}")
    lines.append(f"  load generator: {r.client_cpu_ms_per_request:.3f} ms CPU per request "
                 f"({r.sent} sent, warm-up included)")
    return "\n".join(lines)
