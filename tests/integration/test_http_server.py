"""The HTTP protocol ``veix serve`` gives uvicorn (veix.http.server): one write
per small response, and every other kind of response as uvicorn sends it.

A real uvicorn server on a loopback port, a real HTTP client; the protocol is
subclassed only to count the writes reaching its socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from veix.http.server import RECEIVED, OneWriteHttpToolsProtocol

WRITES: list[bytes] = []


class _Counting:
    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CountingProtocol(OneWriteHttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    if path == "/json":
        body = json.dumps({"approved": True, "response_code": "00"}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path in ("/received", "/slow"):
        if path == "/slow":
            await asyncio.sleep(0.3)
        body = json.dumps({"age": time.monotonic() - scope[RECEIVED]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/boom":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise RuntimeError("broken after the head")
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=CountingProtocol, lifespan="off",
                            log_level="critical")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(1000):  # uvicorn's Server exposes a flag, not an event
        if srv.started:
            break
        await asyncio.sleep(0.01)
    assert srv.started
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await task


async def test_a_small_response_is_one_write_with_its_head(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for _ in range(3):  # keep-alive: each response of the connection
            WRITES.clear()
            r = await client.post("/json", json={"amount": "10.00"})
            assert r.status_code == 200 and r.json() == {"approved": True, "response_code": "00"}
            assert len(WRITES) == 1, WRITES
            assert WRITES[0].startswith(b"HTTP/1.1 200 OK\r\n") and WRITES[0].endswith(b'"00"}')


async def test_streams_empty_bodies_and_head_requests_are_answered_as_before(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        WRITES.clear()
        r = await client.get("/stream")
        assert r.status_code == 200 and r.text == "one two three"
        assert r.headers["transfer-encoding"] == "chunked"
        assert len(WRITES) == 4  # the head with the first part, two parts, the end
        r = await client.get("/empty")
        assert r.status_code == 204 and r.content == b""
        r = await client.head("/json")
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "41"
        r = await client.get("/missing")
        assert r.status_code == 404


async def test_a_response_that_breaks_after_its_head_closes_the_connection(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get("/boom")
        r = await client.post("/json", json={})  # the server goes on
        assert r.status_code == 200


async def test_each_request_is_stamped_when_its_head_was_read(server: str) -> None:
    """The card network's deadline counts from ``scope[RECEIVED]``: when
    the server read the request, not when its handler got to run. Two
    requests pipelined in one write: the second waits for the first's 0.3 s,
    and its stamp says so."""
    async with httpx.AsyncClient(base_url=server) as client:
        age = (await client.get("/received")).json()["age"]
        assert 0 <= age < 0.2
    host, port = server.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\nGET /received HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        ages = []
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            ages.append(json.loads(await reader.readuntil(b"}"))["age"])
    finally:
        writer.close()
    assert ages[0] >= 0.3
    assert ages[1] >= 0.25, ages  # read with the first; run after it
