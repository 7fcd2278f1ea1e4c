"""uvicorn's httptools protocol, writing a response's head with its first body part.

uvicorn writes the status line and headers to the socket on
``http.response.start`` and the body on ``http.response.body``: two writes,
two packets, and often two wake-ups of the client, for every small JSON answer
(a card network's authorization, a GraphQL query). Here the head is kept until
the first body part and both go in one write. Nothing else changes: uvicorn
still formats and checks the head, handles keep-alive, flow control and
pipelining; a response whose body never comes is closed as before.

``veix serve`` passes this class to uvicorn (``http=``). It relies on two of
uvicorn's internals, ``HttpToolsProtocol._start_asgi_task`` and
``RequestResponseCycle.send`` writing through ``self.transport``;
tests/integration/test_http_server.py checks both against the installed
uvicorn (one write per small response; streams, empty bodies, HEAD, a response
broken after its head), and the multi-process tests run real ``veix serve``.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _Held:
    """A transport that keeps what is written (the head) and answers the rest."""

    __slots__ = ("data", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Prefixed:
    """A transport whose first write carries the kept head in front."""

    __slots__ = ("head", "real")

    def __init__(self, real: Any, head: bytes) -> None:
        self.real = real
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + data, None
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class OneWriteCycle(RequestResponseCycle):
    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            real = self.transport
            held = self.transport = _Held(real)  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            self._head = b"".join(held.data)
            return
        head, self._head = self._head, None
        if head is None or kind != "http.response.body":
            await super().send(message)
            return
        real = self.transport
        prefixed = self.transport = _Prefixed(real, head)  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = real
        if prefixed.head is not None:  # nothing was written (e.g. a disconnected client)
            if not real.is_closing():
                real.write(prefixed.head)


RECEIVED = "veix.received"  # scope key: time.monotonic() when the request's head was read


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        # When the head was read (a pipelined request waits for those before it): the
        # card network's deadline counts from here (veix.http.network.received_at).
        self.scope[RECEIVED] = time.monotonic()  # type: ignore[literal-required]
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)


def _bound(cls: Any, family: int, host: str, port: int) -> Any:
    """A ``cls`` socket bound to the address with SO_REUSEPORT (not listening yet)."""
    sock = cls(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _reuse_port_socket(family: int, host: str, port: int) -> socket.socket:
    sock: socket.socket = _bound(socket.socket, family, host, port)
    sock.set_inheritable(True)
    return sock


class PerWorkerListener(socket.socket):
    """The address ``veix serve --workers N`` listens on, one socket per worker.

    With uvicorn's workers sharing one listening socket, whichever worker is
    awake first accepts every connection queued at that moment (uvloop accepts
    in a loop): a client that opens its connections at once, as a card network
    or a load generator does, often lands all of them on one worker while the
    other idles (measured: 13 s of CPU against 2 s in a 15 s run, and a quarter
    fewer authorizations/s). Here the supervisor only binds the address (it
    never listens, so it receives nothing) and each worker, when uvicorn hands
    it this socket (pickled into the spawned process), binds a socket of its
    own to the same address with SO_REUSEPORT and listens on it: the kernel
    spreads new connections over the workers by their addresses' hash.
    """

    def __reduce__(self) -> tuple[Any, ...]:  # what a spawned worker receives: a socket of its own
        host, port = self.getsockname()[:2]
        return _reuse_port_socket, (self.family, host, port)

    @classmethod
    def bind_to(cls, host: str, port: int) -> PerWorkerListener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock: PerWorkerListener = _bound(cls, family, host, port)
        return sock


def run_workers(config: Any) -> None:
    """uvicorn's multi-process supervisor (worker health checks, restarts,
    signals) over a :class:`PerWorkerListener` instead of one shared socket."""
    import logging

    from uvicorn.supervisors.multiprocess import Multiprocess

    sock = PerWorkerListener.bind_to(config.host, config.port)
    logging.getLogger("uvicorn.error").info(
        "Listening on http://%s:%d with %d workers (one SO_REUSEPORT socket each)",
        config.host, sock.getsockname()[1], config.workers)
    Multiprocess(config, sockets=[sock]).run()
