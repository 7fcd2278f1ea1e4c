"""``veix serve --workers 2`` for real: each worker listens on a socket of its
own (SO_REUSEPORT), so connections opened at once spread over the workers
instead of landing on whichever was awake (veix.http.server.PerWorkerListener).

Which worker holds a connection is read from the operating system: the
server-side end of every established connection to the port (/proc/net/tcp)
is a socket one worker process has open (/proc/<pid>/fd).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_DB_URL, TEST_REDIS_URL
from tests.integration.test_cli import TIMEOUT, Workspace, _free_port, stop_process, veix_command

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux /proc")]

CONNECTIONS = 32


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    ws = Workspace(tmp_path)
    port = _free_port()
    env = {**ws.env, "VEIX_DATABASE_URL": TEST_DB_URL, "VEIX_BROADCAST_URL": TEST_REDIS_URL,
           "VEIX_RUN_DISPATCHER": "false", "VEIX_LOG_LEVEL": "INFO"}
    err = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen([*veix_command(), "serve", "--workers", "2", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + TIMEOUT
        while _listening(port) < 2 or not _healthy(port):  # both workers up, each on its own socket
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.1)
        yield proc, port
    finally:
        stop_process(proc)
        err.close()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _workers(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def _sockets(port: int, state: str) -> set[str]:
    """Inodes of the sockets on local ``port`` in ``state`` (01 established, 0A listening)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    return inodes


def _listening(port: int) -> int:
    return len(_sockets(port, "0A"))


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def test_connections_opened_at_once_spread_over_both_workers(
    two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = two_workers
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CONNECTIONS)]
    try:
        for client in clients:  # one request each, so every connection has been accepted and answered
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: veix\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
        served = _sockets(port, "01")
        held = {pid: n for pid in _workers(proc.pid) if (n := len(_socket_inodes(pid) & served))}
    finally:
        for client in clients:
            client.close()

    assert len(held) == 2 and sum(held.values()) == CONNECTIONS, held  # (the third child: multiprocessing's)
    # A fair coin puts fewer than 4 of 32 on one side about once in 400,000 runs; one shared
    # socket often put all 32 on one worker.
    assert min(held.values()) >= 4, held


def test_serve_with_workers_on_a_taken_port_says_so(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*veix_command(), "serve", "--workers", "2", "--port", str(port)], cwd=tmp_path,
            env={**ws.env, "VEIX_DATABASE_URL": TEST_DB_URL, "VEIX_BROADCAST_URL": TEST_REDIS_URL},
            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2, result.stderr
    assert f"veix serve: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
