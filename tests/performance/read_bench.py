"""Seed a running Veix for the read benchmarks and run wrk against it.

Usage (server already running, e.g. `veix serve --port 8000` on PostgreSQL):

    python -m tests.performance.read_bench --url http://127.0.0.1:8000 \
        --businesses 10 --members 20 --duration 20 --connections 32

It signs up a user, creates the businesses with their members through the
API, then runs `wrk` (Debian package `wrk`) on `{ me { email } }` and on the
nested `businesses` query, and prints requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import uuid

import httpx

ME = "{ me { email } }"
NESTED = ("{ businesses(first: 50) { edges { node { members(first: 20) { edges { node { "
          "user { email } } } } } } } }")

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = %s
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%%.1f p50=%%.2fms p90=%%.2fms p99=%%.2fms errors=%%d non2xx=%%d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def gql(client: httpx.Client, query: str, variables: dict | None = None, token: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


def seed(url: str, businesses: int, members: int) -> str:
    with httpx.Client(base_url=url, timeout=30) as c:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        data = gql(c, "mutation($i: SignUpInput!){ signUp(input:$i){ accessToken } }",
                   {"i": {"email": email, "password": "benchmark password", "name": "Bench"}})
        token = data["signUp"]["accessToken"]
        for b in range(businesses):
            data = gql(c, "mutation($i: CreateBusinessInput!){ createBusiness(input:$i){ business{ id } } }",
                       {"i": {"name": f"Bench {b}", "type": "LLC", "defaultCurrency": "EUR",
                              "legalAddress": {"line1": "Main St 1", "city": "Berlin",
                                               "postalCode": "10115", "country": "DE"},
                              "contactInfo": {"email": "ops@bench.example"}}}, token)
            bid = data["createBusiness"]["business"]["id"]
            for m in range(members - 1):
                gql(c, "mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id } } }",
                    {"i": {"businessId": bid, "email": f"m{m}-{uuid.uuid4().hex[:6]}@example.com",
                           "role": "VIEWER"}}, token)
        return token


def run_wrk(url: str, token: str, query: str, duration: int, connections: int, threads: int) -> str:
    body = json.dumps(json.dumps({"query": query}))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % (token, body))
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
             "-s", script, f"{url}/graphql"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    return next(line for line in out.splitlines() if line.startswith("RESULT"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--businesses", type=int, default=10)
    p.add_argument("--members", type=int, default=20)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--token", help="reuse an already seeded user's access token")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    token = args.token or seed(args.url, args.businesses, args.members)
    for name, query in (("me", ME), ("nested businesses", NESTED)):
        result = run_wrk(args.url, token, query, args.duration, args.connections, args.threads)
        print(f"{name:18s} {result}")


if __name__ == "__main__":
    main()
