"""The auth proxy's faults (issues #27 and #28): a token in another letter case, an
upgrade's rehearsal behind the proxy, and a stack that must heal itself when any one of
its containers restarts or crashes, with no deploy in between."""

from __future__ import annotations

import json
import os
import secrets
import time

import chromadb
import httpx
import pytest
from conftest import base_data, converge, move_chroma, run_deploy, run_drift, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The docker healthcheck's own budget (templates/docker-compose.yml.j2): 20 retries, 3 s apart.
HEALTHCHECK_SECONDS = 60


def token_env(token: str) -> dict[str, str]:
    return {**os.environ, "CHROMA_AUTH_TOKEN": token}


def client(port: int, token: str | None) -> chromadb.api.ClientAPI:
    headers = {"X-Chroma-Token": token} if token else {}
    return chromadb.HttpClient(host="127.0.0.1", port=port, headers=headers)


def add_records(port: int, token: str | None, count: int) -> None:
    client(port, token).create_collection("kept", embedding_function=None).add(
        ids=[f"r{i:03d}" for i in range(count)],
        embeddings=[[float(i % 7), float(i % 11), 1.0] for i in range(count)],
    )


def count_records(port: int, token: str | None) -> int:
    return client(port, token).get_collection("kept", embedding_function=None).count()


def heartbeat(port: int, headers: dict[str, str]) -> int:
    try:
        return httpx.get(
            f"http://127.0.0.1:{port}/api/v2/heartbeat", headers=headers, timeout=3
        ).status_code
    except httpx.HTTPError:
        return 0


def test_the_token_matches_in_its_own_letter_case_only(project):
    """nginx's map compared the token without case: its upper-case form was let in."""
    project_dir, name = project
    token = "MixedCase-Token-AbCdEfGhIjKl"
    data = base_data(project_dir, name, chroma_auth_proxy=True)
    port = data["chroma_port"]
    converge(data, env=token_env(token))
    swapped = token[:-1] + token[-1].swapcase()
    for header, prefix in (("X-Chroma-Token", ""), ("Authorization", "Bearer ")):
        assert heartbeat(port, {header: prefix + token}) == 200, header
        for other in (token.upper(), token.lower(), swapped):
            assert heartbeat(port, {header: prefix + other}) == 401, (header, other)
    # The scheme is case-insensitive (RFC 9110 11.1), the token is not.
    assert heartbeat(port, {"Authorization": "bearer " + token}) == 200
    assert heartbeat(port, {"Authorization": "bearer " + token.upper()}) == 401


def container_pid(container: str) -> int:
    return int(sh(f"docker inspect -f '{{{{.State.Pid}}}}' {container}").stdout)


def started_at(container: str) -> str:
    return sh(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}").stdout.strip()


def move_and_time(name: str, port: int, headers: dict[str, str]) -> tuple[str, str, float]:
    """Chroma started again on a new address (conftest.move_chroma); seconds from its start
    until the published port answers again through the proxy. The old address and the new."""
    old, new, begun = move_chroma(name)
    while time.monotonic() - begun < HEALTHCHECK_SECONDS:
        if heartbeat(port, headers) == 200:
            return old, new, time.monotonic() - begun
        time.sleep(0.25)
    logs = sh(f"docker logs --tail 20 {name}-auth-proxy-1 2>&1").stdout
    raise AssertionError(f"Chroma moved {old} -> {new}: no heartbeat through the proxy for "
                         f"{HEALTHCHECK_SECONDS} s: {logs}")  # fmt: skip


def break_and_time(
    name: str, container: str, how: str, port: int, headers: dict[str, str]
) -> float:
    """Restart or crash ``container``; seconds until the published port answers again."""
    before = started_at(container)
    begun = time.monotonic()
    if how == "docker restart":
        sh(f"docker restart {container}")
    else:  # the main process dies as in a crash or an OOM kill; its restart policy acts
        sh(f"kill -9 {container_pid(container)}")
        while started_at(container) == before and time.monotonic() - begun < HEALTHCHECK_SECONDS:
            time.sleep(0.2)
    while time.monotonic() - begun < HEALTHCHECK_SECONDS:
        if heartbeat(port, headers) == 200:
            return time.monotonic() - begun
        time.sleep(0.25)
    states = sh(f"docker ps -a --filter name={name}- "
                "--format '{{.Names}} {{.Status}}'").stdout  # fmt: skip
    raise AssertionError(f"{how} {container}: no heartbeat for {HEALTHCHECK_SECONDS} s: {states}")


@pytest.mark.parametrize("proxy", [True, False], ids=["auth-proxy", "direct"])
def test_any_container_restarted_or_killed_comes_back_without_a_deploy(project, proxy):
    """Before: a restart of the proxy left Chroma in the proxy's old network namespace;
    every request got 502 while both containers said healthy, until a person acted."""
    project_dir, name = project
    token = secrets.token_urlsafe(24) if proxy else None
    env = token_env(token) if token else dict(os.environ)
    data = base_data(project_dir, name, chroma_auth_proxy=proxy)
    port = data["chroma_port"]
    converge(data, env=env)
    add_records(port, token, 50)
    headers = {"X-Chroma-Token": token} if token else {}
    containers = [f"{name}-chroma-1"] + ([f"{name}-auth-proxy-1"] if proxy else [])
    table = []
    for container in containers:
        for how in ("docker restart", "kill -9"):
            seconds = break_and_time(name, container, how, port, headers)
            table.append((container.removeprefix(f"{name}-"), how, round(seconds, 1),
                          count_records(port, token)))  # fmt: skip
    if proxy:
        # Chroma on a new address of the internal network: the proxy, which keeps its
        # connections to Chroma open (an nginx upstream with keepalive, which takes the
        # address once), follows it within its 5 s loop, in the same container (#25).
        proxy_started = started_at(f"{name}-auth-proxy-1")
        old, new, seconds = move_and_time(name, port, headers)
        table.append((f"chroma {old} -> {new}", "stop, start", round(seconds, 1),
                      count_records(port, token)))  # fmt: skip
        assert started_at(f"{name}-auth-proxy-1") == proxy_started
        logs = sh(f"docker logs {name}-auth-proxy-1 2>&1").stdout
        assert f"auth-proxy: Chroma moved from {old} to {new}" in logs, logs
    print(json.dumps(table))
    assert [row[3] for row in table] == [50] * len(table), table
    # No deploy in between; once the healthchecks have run again, nothing is drift.
    deadline = time.monotonic() + HEALTHCHECK_SECONDS
    while any(
        "(healthy)" not in status
        for status in sh(
            f"docker ps -a --filter name={name}- --format '{{{{.Status}}}}'"
        ).stdout.splitlines()
    ):
        assert time.monotonic() < deadline
        time.sleep(1)
    drift = run_drift(data, "--no-color", env=env)
    assert drift.returncode == 0, drift.output
    again = run_deploy(data, env=env)
    assert again.returncode == 0 and again.changed_operations == [], again.output
    if not proxy:
        return

    # Both containers run, but Chroma does not answer through the proxy: the proxy's
    # health says so (before, it said healthy: nginx ran), drift reports it, a deploy repairs.
    sh(f"docker network disconnect {name}_internal {name}-chroma-1")
    assert heartbeat(port, headers) != 200
    deadline = time.monotonic() + HEALTHCHECK_SECONDS + 30
    while "(unhealthy)" not in sh(f"docker ps --filter name={name}-auth-proxy-1 "
                                  "--format '{{.Status}}'").stdout:  # fmt: skip
        assert time.monotonic() < deadline, "the proxy never said unhealthy"
        time.sleep(2)
    drifted = run_drift(data, "--no-color", env=env)
    assert drifted.returncode == 2
    assert "heartbeat" in drifted.stdout and "container_health" in drifted.stdout, drifted.stdout
    repaired = converge(data, env=env)
    assert "Stack " + name + " up and healthy" in repaired.changed_operations
    assert heartbeat(port, headers) == 200 and count_records(port, token) == 50


def test_an_upgrade_behind_the_proxy_passes_its_rehearsal(project, tmp_path):
    """Before: the rehearsal's Chroma got the stack's CHROMA_LISTEN_ADDRESS=127.0.0.1, so
    nothing reached it and every upgrade behind the proxy failed ("did not start")."""
    project_dir, name = project
    token = secrets.token_urlsafe(24)
    env = token_env(token)
    data = base_data(project_dir, name, chroma_auth_proxy=True,
                     chroma_backup_dir=str(tmp_path / "backups"))  # fmt: skip
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"), env=env)
    add_records(port, token, 50)
    before = sorted(client(port, token).get_collection("kept").get(include=[])["ids"])

    upgraded = converge(dict(data, chroma_version="1.5.9"), env=env)
    assert "rehearsal passed: chromadb/chroma:1.5.9 serves the same 1 collections and 50 " \
        "records" in upgraded.output, upgraded.output  # fmt: skip
    after = sorted(client(port, token).get_collection("kept").get(include=[])["ids"])
    assert after == before and len(after) == 50
    assert run_drift(dict(data, chroma_version="1.5.9"), env=env).returncode == 0
