"""Two faults an attacker found in the auth proxy's image :8 (#25 section 5), fixed in :9.

nginx's upstream block takes Chroma's address once, and the entrypoint's loop rewrites
it. In :8 the loop kept the last address while the name did not resolve (every request
went to whatever container Docker gave Chroma's freed address), and asked for ``chroma``
as a relative name (the host's DNS search domains then answered ``chroma.<domain>``).
:9 asks every second for the absolute name and points nginx nowhere (502) meanwhile."""

from __future__ import annotations

import os
import secrets
import time

import chromadb
import httpx
import pytest
from conftest import base_data, chroma_address, converge, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def collections(port: int, token: str) -> list[str] | int:
    """The collection names a client sees through the proxy, or the HTTP status (0: none)."""
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v2/tenants/default_tenant/databases/"
            "default_database/collections",
            headers={"X-Chroma-Token": token},
            timeout=3,
        )
    except httpx.HTTPError:
        return 0
    if answer.status_code != 200:
        return answer.status_code
    return sorted(c["name"] for c in answer.json())


def health(container: str) -> str:
    return sh(f"docker inspect -f '{{{{.State.Health.Status}}}}' {container}").stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One stack behind the proxy (as root) for both tests, holding collection ``kept``;
    each test leaves its Chroma running again. Its name, published port and token."""
    project_dir = tmp_path_factory.mktemp("attack") / "stack"
    name = f"cdtest{os.urandom(4).hex()}"
    token = secrets.token_urlsafe(24)
    data = base_data(project_dir, name, chroma_auth_proxy=True)
    port = data["chroma_port"]
    try:
        converge(data, env={**os.environ, "CHROMA_AUTH_TOKEN": token})
        client = chromadb.HttpClient(host="127.0.0.1", port=port,
                                     headers={"X-Chroma-Token": token})  # fmt: skip
        client.create_collection("kept", embedding_function=None).add(ids=["a"], embeddings=[[1.0]])
        yield name, port, token
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)


def test_a_stopped_chroma_s_address_taken_by_another_server_gets_no_request(stack):
    """Chroma is stopped; another Chroma (another project's, a rehearsal, anything started
    on the stack's internal network) gets the address Docker freed, the lowest one. Before
    :8, nginx asked Docker's DNS each 2 s and answered 502 (image :7: 32 of 32 in 8 s);
    :8 kept the last address while the name did not resolve, so every request went to
    the other server (45 of 46 in 12 s), for as long as Chroma stayed stopped, and again
    for up to 5 s after it started on a new address. :9 points nginx nowhere within its
    loop's second (and nginx's restart) of the name going: a request in those first 2 s
    may still reach the other server, as one in :7's 2 s DNS cache could; none after."""
    name, port, token = stack
    assert collections(port, token) == ["kept"]
    proxy, chroma = f"{name}-auth-proxy-1", f"{name}-chroma-1"
    old = chroma_address(name)
    other = f"{name}-other"
    sh(f"docker stop -t 10 {chroma}")
    window = time.monotonic() + 2  # the loop's second, and nginx's restart
    try:
        sh(f"docker run -d --name {other} --network {name}_internal chromadb/chroma:1.5.9")
        taken = sh(f"docker inspect -f '{{{{(index .NetworkSettings.Networks "
                   f"\"{name}_internal\").IPAddress}}}}' {other}").stdout.strip()  # fmt: skip
        if taken != old:
            pytest.skip(f"Docker gave the other server {taken}, not Chroma's old {old}")
        seen: dict[str, int] = {}
        wrong = early = 0
        deadline = time.monotonic() + 12  # many turns of the entrypoint's loop
        while time.monotonic() < deadline:
            got = collections(port, token)
            seen[str(got)] = seen.get(str(got), 0) + 1
            if got == []:  # the other server's empty database, through our token
                early += time.monotonic() < window
                wrong += time.monotonic() >= window
            time.sleep(0.2)
        stopped_health = health(proxy)
        # Chroma started again (on a new address: the old one is taken): until the loop
        # notices, requests still go to the other server.
        sh(f"docker start {chroma}")
        begun = time.monotonic()
        after = 0
        while time.monotonic() - begun < 15 and collections(port, token) != ["kept"]:
            after += collections(port, token) == []
            time.sleep(0.1)
        new = chroma_address(name)
        print(f"Chroma stopped, {other} on {old}: answers {seen} ({early} of them from "
              f"{other} in the first 2 s), proxy {stopped_health}; "
              f"after Chroma started on {new}: {after} more to {other}")  # fmt: skip
        logs = sh(f"docker logs {proxy} 2>&1 | grep -c 'auth-proxy: Chroma moved'",
                  check=False).stdout  # fmt: skip
        print(f"moves logged: {logs.strip()}")
    finally:
        sh(f"docker rm -f {other}", check=False)
    assert wrong == 0 and after == 0, (wrong, after, seen)


def test_a_host_named_chroma_in_the_search_domain_takes_no_request(stack):
    """Docker copies the host's ``search`` line into each container's resolv.conf. nginx's
    own resolver (before :8) asked for ``chroma`` as it is; getent (glibc) tries the name as
    it is (Docker's ndots:0) and, when that fails (Chroma stopped), in each search domain:
    ``chroma.<domain>``, a machine of the site's DNS (here: a container with that alias on
    the stack's default network, which Docker's DNS answers the same way), is then where
    the proxy moves and sends every request, until Chroma is started again."""
    name, port, token = stack
    proxy = f"{name}-auth-proxy-1"
    # A host whose /etc/resolv.conf says `search corp.example` (Docker copies it).
    resolv = sh(f"docker inspect -f '{{{{.ResolvConfPath}}}}' {proxy}").stdout.strip()
    sh(f"echo 'search corp.example' >> '{resolv}'")
    other = f"{name}-other"
    try:
        sh(f"docker run -d --name {other} --network {name}_default "
           "--network-alias chroma.corp.example chromadb/chroma:1.5.9")  # fmt: skip
        sh(f"docker stop -t 10 {name}-chroma-1")
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 10  # many turns of the entrypoint's loop
        while time.monotonic() < deadline:
            got = str(collections(port, token))
            seen[got] = seen.get(got, 0) + 1
            time.sleep(0.2)
        resolved = sh(f"docker exec {proxy} getent ahostsv4 chroma", check=False).stdout
        sh(f"docker start {name}-chroma-1")
        time.sleep(3)  # the loop's turn and nginx's reload
        again = collections(port, token)
        moved = sh(f"docker logs {proxy} 2>&1 | grep 'Chroma moved'", check=False).stdout
        print(f"Chroma stopped; getent: {resolved.split()[:1]}: {seen}; "
              f"started again on {chroma_address(name)}: {again}; {moved.strip()}")  # fmt: skip
    finally:
        sh(f"docker rm -f {other}", check=False)
    # No answer from the other server (its database is empty) while Chroma was stopped,
    # and Chroma's own once it runs again.
    assert "[]" not in seen and seen, seen
    assert again == ["kept"], again
