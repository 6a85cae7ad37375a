"""The auth proxy in front of Chroma, and the token that must never be printed."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import chromadb
import httpx
import pytest
from chromadb.config import Settings
from conftest import base_data, converge, run_deploy, run_drift, sh, stat

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def token_env() -> tuple[str, dict[str, str]]:
    token = secrets.token_urlsafe(24)
    return token, {**os.environ, "CHROMA_AUTH_TOKEN": token}


def test_proxy_lets_the_token_in_and_keeps_everyone_else_out(project, token_env):
    project_dir, name = project
    token, env = token_env
    data = base_data(project_dir, name, chroma_auth_proxy=True)
    port = data["chroma_port"]
    converge(data, env=env)

    # The real client, with the header the proxy checks, and with a bearer token.
    client = chromadb.HttpClient(host="127.0.0.1", port=port, headers={"X-Chroma-Token": token})
    client.heartbeat()
    client.create_collection("secured", embedding_function=None).add(
        ids=["a", "b"], embeddings=[[1.0, 2.0], [2.0, 1.0]]
    )
    bearer = chromadb.HttpClient(
        host="127.0.0.1", port=port,
        settings=Settings(
            chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
            chroma_client_auth_credentials=token,
        ),
    )  # fmt: skip
    assert bearer.get_collection("secured", embedding_function=None).count() == 2

    # Without the token, or with another one: refused.
    with pytest.raises(Exception, match=r"(?i)unauthorized|401|token"):
        chromadb.HttpClient(host="127.0.0.1", port=port).list_collections()
    wrong = httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat",
                      headers={"X-Chroma-Token": "x" * 32}, timeout=5)  # fmt: skip
    assert wrong.status_code == 401

    # Chroma itself has no host port; the token lives in one 0600 file.
    ports = sh(f"docker port {name}-chroma-1").stdout.strip()
    assert ports == ""
    assert stat(project_dir / "secrets")[2] == "700"
    assert stat(project_dir / "secrets" / "chroma-token.env")[2] == "600"
    assert run_drift(data, env=env).returncode == 0

    sh(f"chmod 0644 '{project_dir}/secrets/chroma-token.env'")
    drifted = run_drift(data, "--no-color", env=env)
    assert drifted.returncode == 2
    assert f"{project_dir}/secrets/chroma-token.env: 600 -> 644" in drifted.stdout
    converge(data, env=env)


def test_token_appears_in_no_output_and_no_other_file(project, token_env):
    project_dir, name = project
    token, env = token_env
    data = base_data(project_dir, name, chroma_auth_proxy=True)
    runs = [
        run_deploy(data, "-vvv", env=env),
        run_deploy(data, "-vvv", env=env),
        run_drift(data, "--json", env=env),
        run_drift(data, env=env),
        run_deploy(dict(data, chroma_owner="nosuchuser"), "-vvv", env=env),
    ]
    assert [run.returncode for run in runs] == [0, 0, 0, 0, 1], runs[0].output
    outputs = [run.output for run in runs]
    assert "pyinfra error" in outputs[-1]  # the failing run did fail
    for output in outputs:
        assert token not in output
    holders = subprocess.run(
        ["grep", "-rlF", "-e", token, str(project_dir)], capture_output=True, text=True
    ).stdout.split()
    # The host's checks' file, and the proxy's clients file (0600 in a 0700 dir, #25).
    assert sorted(holders) == [str(project_dir / "secrets" / "chroma-token.env"),
                               str(project_dir / "secrets" / "proxy" / "clients.conf")]  # fmt: skip
    inspected = sh(
        f"docker inspect $(docker ps -aq --filter label=com.docker.compose.project={name})"
    )
    assert token not in inspected.stdout


def test_deploy_without_a_token_is_refused_before_anything_changes(project):
    project_dir, name = project
    env = {k: v for k, v in os.environ.items() if k != "CHROMA_AUTH_TOKEN"}
    result = run_deploy(base_data(project_dir, name, chroma_auth_proxy=True), env=env)
    assert result.returncode != 0
    assert "chroma_auth_proxy: true needs a token" in result.output
    assert not project_dir.exists()


def container_addresses(container: str, network: str = "") -> list[str]:
    """The container's addresses, on every network or on ``network`` alone."""
    networks = json.loads(
        sh("docker inspect -f '{{json .NetworkSettings.Networks}}' " + container).stdout
    )
    return [
        value["IPAddress"]
        for key, value in networks.items()
        if value["IPAddress"] and network in ("", key)
    ]


def chroma_answers(url: str) -> bool:
    """Chroma's own heartbeat came back (not an error, nor another server's answer)."""
    try:
        answer = httpx.get(url, timeout=3)
    except httpx.TransportError:
        return False
    return answer.status_code == 200 and "nanosecond heartbeat" in answer.text


def inspect(container: str) -> dict:
    return json.loads(sh(f"docker inspect {container}").stdout)[0]


UNTOKENED_PATHS = (
    "/", "/api/v2/heartbeat", "/api/v1/heartbeat", "/api/v2/version", "/docs",
    "/openapi.json", "/api/v2/tenants/default_tenant/databases/default_database/collections",
    "/api/v2/auth/identity", "/proxy-health/../api/v2/heartbeat",
)  # fmt: skip


def test_the_proxy_is_the_only_way_in_and_every_container_is_hardened(project, token_env):
    """Before: any process on the host reached Chroma at its bridge address, no token."""
    project_dir, name = project
    token, env = token_env
    data = base_data(
        project_dir, name, chroma_auth_proxy=True, chroma_owner=1234, chroma_group=1234
    )
    port = data["chroma_port"]
    converge(data, env=env)

    stack = [f"{name}-chroma-1", f"{name}-auth-proxy-1"]
    addresses = [address for container in stack for address in container_addresses(container)]
    assert len(addresses) == 3  # Chroma's on the internal network; the proxy's on both
    for address in addresses:
        for port_there in (8000, 8080):
            assert not chroma_answers(f"http://{address}:{port_there}/api/v2/heartbeat")
    # Chroma's network gives the host no address, so the host has no route to Chroma: a
    # packet to it leaves by the default route, never by that network's bridge.
    internal = json.loads(sh(f"docker network inspect {name}_internal").stdout)[0]
    bridge = f"br-{internal['Id'][:12]}"
    assert "inet " not in sh(f"ip -4 addr show dev {bridge}").stdout
    for address in container_addresses(f"{name}-chroma-1"):
        assert bridge not in sh(f"ip -4 route get {address}").stdout
    # The proxy, on the stack's default network: no port 8000, and 401 without the token.
    for address in container_addresses(f"{name}-auth-proxy-1", f"{name}_default"):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{address}:8000/api/v2/heartbeat", timeout=3)
        assert httpx.get(f"http://{address}:8080/api/v2/heartbeat", timeout=5).status_code == 401
    for path in UNTOKENED_PATHS:
        assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 401, path
    client = chromadb.HttpClient(host="127.0.0.1", port=port, headers={"X-Chroma-Token": token})
    client.create_collection("through-the-proxy", embedding_function=None).add(
        ids=["a"], embeddings=[[1.0, 2.0]]
    )

    for container in stack:
        config = inspect(container)
        assert config["HostConfig"]["CapDrop"] == ["ALL"], container
        assert "no-new-privileges:true" in config["HostConfig"]["SecurityOpt"], container
        assert config["Config"]["User"] == "1234:1234", container
    proxy = inspect(f"{name}-auth-proxy-1")["HostConfig"]
    assert proxy["ReadonlyRootfs"] is True
    assert run_drift(data, env=env).returncode == 0

    # A container recreated by hand without the hardening is drift, and repaired.
    sh(
        f"cd '{project_dir}' && cp docker-compose.yml /tmp/{name}.yml && "
        "sed -i '/cap_drop:/,+1d; /no-new-privileges/d; /security_opt:/d' docker-compose.yml && "
        f"docker compose up -d --wait auth-proxy && cp /tmp/{name}.yml docker-compose.yml"
    )
    drifted = run_drift(data, "--no-color", env=env)
    assert drifted.returncode == 2
    assert "hardening" in drifted.stdout
    converge(data, env=env)
    assert inspect(f"{name}-auth-proxy-1")["HostConfig"]["CapDrop"] == ["ALL"]


def test_long_tokens_work_up_to_the_limit_and_a_longer_one_is_refused(project):
    """A 64-character token (``openssl rand -hex 32``) crash-looped the proxy: nginx's
    map hash had no bucket for it, and Chroma, in the proxy's namespace, never started."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_auth_proxy=True, chroma_upgrade_rehearsal=False)
    port = data["chroma_port"]
    for token in (secrets.token_hex(32), "t" * 256):
        env = {**os.environ, "CHROMA_AUTH_TOKEN": token}
        converge(data, env=env)
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
        assert answer.status_code == 200, (len(token), answer.text)
        refused = httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=10)
        assert refused.status_code == 401
        assert run_drift(data, env=env).returncode == 0

    too_long = run_deploy(data, env={**os.environ, "CHROMA_AUTH_TOKEN": "t" * 257})
    assert too_long.returncode == 1
    assert "chroma_auth_proxy: the token from the environment variable" in too_long.output
    assert "16 to 256 characters" in too_long.output
    assert "t" * 257 not in too_long.output
    last = httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat",
                     headers={"X-Chroma-Token": "t" * 256}, timeout=10)  # fmt: skip
    assert last.status_code == 200  # the refusal changed nothing
