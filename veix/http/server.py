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


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)
