"""What the auth proxy costs a query: directly, through it in plain HTTP, and over TLS.

Run: `.venv/bin/python bench/proxy.py [--rounds 20] [--per-round 50]` (needs
scripts/test-env.sh done). Three throwaway @local stacks of Chroma 1.5.9 on loopback, each
holding the same 1,000 records of 128 floats: one without the proxy, one behind it with
chroma_tls=off, one behind it with chroma_tls=internal-ca (the proxies run as a non-root
owner, the recommended setup: nginx with a master process and one worker). Each is asked
the same 10-record query (``n_results=10``: ids, documents, metadatas, distances) over its
REST API with one kept-alive ``httpx.Client`` per path (a TLS handshake once, as a
long-lived client does). The paths take turns, ``--per-round`` queries each per round in
a rotating order, so load from others on the machine falls on all three alike.

Target (issue #25): on loopback the proxy adds at most 1 ms to the median. Prints one JSON
object and a Markdown table: p50 and p99 in ms, their ratios to the direct path, and the
median added by the proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from common import deploy, load_average, throwaway_project

RECORDS = 1000
DIMENSIONS = 128
API = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def vectors(count: int, seed: int) -> list[list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.random((count, DIMENSIONS), dtype=np.float32).tolist()


def fill(http: httpx.Client) -> str:
    """The same records in every stack; the collection's id."""
    made = http.post(API, json={"name": "bench", "get_or_create": True})
    made.raise_for_status()
    collection = made.json()["id"]
    embeddings = vectors(RECORDS, 25)
    for start in range(0, RECORDS, 250):
        ids = [f"r{i:05d}" for i in range(start, start + 250)]
        http.post(
            f"{API}/{collection}/add",
            json={
                "ids": ids,
                "embeddings": embeddings[start : start + 250],
                "documents": [f"record {i}" for i in ids],
                "metadatas": [{"n": i} for i in range(start, start + 250)],
            },
        ).raise_for_status()
    return collection


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=50)
    args = parser.parse_args()
    token = secrets.token_hex(24)
    os.environ["CHROMA_AUTH_TOKEN"] = token  # the deploys read it; never on a command line
    query = {"query_embeddings": vectors(1, 7), "n_results": 10,
             "include": ["documents", "metadatas", "distances"]}  # fmt: skip
    proxied = {"chroma_auth_proxy": True, "chroma_owner": 1234, "chroma_group": 1234}
    with ExitStack() as stacks, tempfile.TemporaryDirectory(prefix="chroma-bench-ca-") as ca:
        paths: dict[str, httpx.Client] = {}
        setups = (
            ("direct", {}),
            ("proxy, HTTP", proxied),
            ("proxy, TLS", {**proxied, "chroma_tls": "internal-ca", "chroma_tls_ca_dir": ca}),
        )
        for number, (label, extra) in enumerate(setups):
            port = free_port()
            _, data = stacks.enter_context(throwaway_project(f"benchproxy{number}", port))
            seconds, _ = deploy({**data, **extra})
            print(f"bench: {label}: deployed on port {port} in {seconds:.0f} s", flush=True)
            if "chroma_tls" in extra:
                http = httpx.Client(base_url=f"https://localhost:{port}",
                                    verify=str(Path(ca) / "ca.pem"))  # fmt: skip
            else:
                http = httpx.Client(base_url=f"http://127.0.0.1:{port}")
            if extra:
                http.headers["X-Chroma-Token"] = token
            stacks.enter_context(http)
            paths[label] = http
        collections = {label: fill(http) for label, http in paths.items()}
        samples: dict[str, list[float]] = {label: [] for label in paths}
        labels = list(paths)
        for label in labels:  # warm up each path (connections, caches)
            for _ in range(50):
                paths[label].post(f"{API}/{collections[label]}/query", json=query)
        for round_number in range(args.rounds):
            shift = round_number % len(labels)
            for label in labels[shift:] + labels[:shift]:
                http, url = paths[label], f"{API}/{collections[label]}/query"
                for _ in range(args.per_round):
                    start = time.perf_counter()
                    answer = http.post(url, json=query)
                    samples[label].append((time.perf_counter() - start) * 1000)
                    assert answer.status_code == 200, answer.text
                    assert len(answer.json()["ids"][0]) == 10
    result = {
        label: {"p50_ms": round(statistics.median(found), 3),
                "p99_ms": round(percentile(found, 0.99), 3), "queries": len(found)}
        for label, found in samples.items()
    }  # fmt: skip
    direct = result["direct"]
    for found in result.values():
        found["p50_ratio"] = round(found["p50_ms"] / direct["p50_ms"], 2)
        found["p99_ratio"] = round(found["p99_ms"] / direct["p99_ms"], 2)
        found["added_p50_ms"] = round(found["p50_ms"] - direct["p50_ms"], 3)
    print(json.dumps({"results": result, "load_average": load_average()}))
    print("\n| path | p50 ms | p99 ms | p50 / direct | p99 / direct | added to p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, found in result.items():
        print(f"| {label} | {found['p50_ms']:.2f} | {found['p99_ms']:.2f} | "
              f"{found['p50_ratio']:.2f} | {found['p99_ratio']:.2f} | "
              f"{found['added_p50_ms']:+.2f} ms |")  # fmt: skip
    worst = max(found["added_p50_ms"] for found in result.values())
    verdict = "met" if worst <= 1 else "MISSED"
    print(f"\ntarget: the proxy adds <= 1 ms to p50 on loopback: {verdict} ({worst:+.2f} ms)")


if __name__ == "__main__":
    main()
