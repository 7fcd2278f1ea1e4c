"""Compare two checkouts' authorization path side by side, at the same time.

Usage (PostgreSQL and Redis on this host; each checkout with its own ``.venv``;
a template database prepared with ``veix migrate`` and ``veix bench setup-cards``):

    python -m tests.performance.paired_ab --a /tmp/base --b . --template veix_perf_clean \\
        --cards-file /tmp/cards.json --rate 120 --duration 30 --runs 4

Runs one after the other on this shared machine differ by up to a fifth within
minutes (and by 2.5 times between days), far more than most changes. Here both
checkouts serve at once, each on a fresh copy of the template database, each
offered the same open load (``veix bench authorize --rate``), so both see the
same machine; the figure compared is the CPU per decision of each server's
processes and of its own PostgreSQL backends (read from /proc; the backends
found by database name), at the same throughput. Every other run swaps the
ports and Redis databases of the two sides. This checkout's ``veix bench
authorize`` drives both, from the current directory (its secrets file: both
checkouts need the same one, the template's cards are sealed with its vault key).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SOCKET = "/var/run/postgresql"


def _psql(sql: str) -> list[str]:
    out = subprocess.run(["psql", "-h", SOCKET, "-U", "postgres", "-d", "postgres", "-Atc", sql],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def _ticks(pids: list[str]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _session(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()


def _wait_healthy(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server on port {port} did not become healthy")


def run_once(args: argparse.Namespace, sides: dict[str, Path], swap: bool) -> dict[str, tuple[float, str, float, float]]:
    servers: dict[str, subprocess.Popen[bytes]] = {}
    benches: dict[str, subprocess.Popen[str]] = {}
    ports = {"A": 8301, "B": 8302} if not swap else {"A": 8302, "B": 8301}
    redis = {"A": 12, "B": 13} if not swap else {"A": 13, "B": 12}
    try:
        for side, repo in sides.items():
            db = f"veix_pab_{side.lower()}"
            subprocess.run(["dropdb", "-h", SOCKET, "-U", "postgres", "--if-exists", db], check=True)
            template = args.template_b if side == "B" and args.template_b else args.template
            subprocess.run(["createdb", "-h", SOCKET, "-U", "postgres", "-T", template, db], check=True)
            subprocess.run(["redis-cli", "-n", str(redis[side]), "flushdb"], check=True, capture_output=True)
            env = {**os.environ, "VEIX_DATABASE_URL": f"postgresql+asyncpg://postgres@/{db}?host={SOCKET}",
                   "VEIX_LOG_LEVEL": "warning", "VEIX_MAX_AUTHORIZATIONS_PER_HOUR": "100000",
                   "VEIX_BROADCAST_URL": f"redis://127.0.0.1:6379/{redis[side]}"}
            servers[side] = subprocess.Popen(
                [str(repo / ".venv/bin/veix"), "serve", "--port", str(ports[side]), "--workers", str(args.workers)],
                cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for side in sides:
            _wait_healthy(ports[side])
        bench = str(Path(sys.executable).parent / "veix")  # this checkout's
        for side in sides:
            benches[side] = subprocess.Popen(
                [bench, "bench", "authorize", "--url", f"http://127.0.0.1:{ports[side]}", "--cards-file",
                 args.cards_file, "--concurrency", str(args.concurrency), "--duration", str(args.duration),
                 "--warmup", "3", "--rate", str(args.rate)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(4)
        groups = {side: (_session(servers[side].pid),
                         _psql(f"SELECT pid FROM pg_stat_activity WHERE datname = 'veix_pab_{side.lower()}'"))
                  for side in sides}
        before = {side: (_ticks(s), _ticks(p)) for side, (s, p) in groups.items()}
        window = max(1.0, args.duration - 2)
        time.sleep(window)
        after = {side: (_ticks(s), _ticks(p)) for side, (s, p) in groups.items()}
        found = {}
        hz = os.sysconf("SC_CLK_TCK")
        for side, proc in benches.items():
            out, _ = proc.communicate(timeout=args.duration + 120)
            rate = re.search(r"throughput:\s+([\d.]+)", out)
            p99 = re.search(r"p99 ([\d.]+)", out)
            if rate is None or p99 is None:
                raise SystemExit(f"side {side}: no result\n{out}")
            throughput = float(rate.group(1))
            server = (after[side][0] - before[side][0]) / hz / window / throughput * 1000
            pg = (after[side][1] - before[side][1]) / hz / window / throughput * 1000
            found[side] = (throughput, p99.group(1), server, pg)
        return found
    finally:
        for bench_proc in benches.values():
            if bench_proc.poll() is None:
                bench_proc.kill()
                bench_proc.wait()
        for proc in servers.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in servers.values():
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, type=Path, help="checkout A (with .venv)")
    parser.add_argument("--b", required=True, type=Path, help="checkout B (with .venv)")
    parser.add_argument("--template", required=True, help="database to copy for each side and run")
    parser.add_argument("--template-b", help="B's own template (default --template): compares two databases, "
                        "a schema change say, with --a and --b the same checkout")
    parser.add_argument("--cards-file", required=True)
    parser.add_argument("--rate", type=float, default=120, help="offered authorizations/s per side")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    sides = {"A": args.a.resolve(), "B": args.b.resolve()}
    diffs = []
    for n in range(args.runs):
        found = run_once(args, sides, swap=bool(n % 2))
        for side in sides:
            throughput, p99, server, pg = found[side]
            print(f"run {n + 1} {side}: {throughput:.1f}/s p99 {p99} ms  CPU per decision: server {server:.3f} "
                  f"+ PostgreSQL {pg:.3f} = {server + pg:.3f} ms", flush=True)
        a, b = found["A"], found["B"]
        diffs.append((b[2] + b[3]) / (a[2] + a[3]) - 1)
    print(f"B against A, CPU per decision: {', '.join(f'{100 * d:+.1f} %' for d in diffs)} "
          f"(mean {100 * sum(diffs) / len(diffs):+.1f} %)")
    sys.exit(0)


if __name__ == "__main__":
    main()
