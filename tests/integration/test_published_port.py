"""After it starts the stack, the deploy checks Chroma answers where clients reach it (issue #28).

``docker compose up --wait`` waits for the containers' own healthchecks, which run
inside them: a firewall rule on the host, in front of the published port, leaves
every container healthy and every client refused. The deploy must not say it
succeeded then.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import chromadb
import pytest
from conftest import base_data, converge, run_deploy

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TOKEN = "published-port-test-token"


@contextmanager
def port_rejected(port: int) -> Iterator[None]:
    """A host firewall rule that resets connections to ``port`` on loopback, removed after."""
    if not shutil.which("iptables") or os.geteuid() != 0:
        pytest.skip("needs iptables and root to put a firewall rule in front of the port")
    rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "REJECT",
            "--reject-with", "tcp-reset"]  # fmt: skip
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)


def client(port: int) -> chromadb.api.ClientAPI:
    return chromadb.HttpClient(host="127.0.0.1", port=port, headers={"X-Chroma-Token": TOKEN})


def test_a_started_stack_clients_cannot_reach_fails_the_deploy(project):
    project_dir, name = project
    # Behind the auth proxy: the check sends the token from its 0600 file.
    data = base_data(project_dir, name, chroma_auth_proxy=True, chroma_wait_timeout=20)
    port = data["chroma_port"]
    env = {**os.environ, "CHROMA_AUTH_TOKEN": TOKEN}
    converge(data, env=env)
    kept = client(port).create_collection("kept", embedding_function=None)
    kept.add(ids=[f"r{i:02d}" for i in range(50)], embeddings=[[float(i), 1.0] for i in range(50)])
    before = kept.count()

    # A change that recreates the stack, while a firewall rule refuses the port: the
    # containers' healthchecks pass inside them, clients get a reset.
    changed = {**data, "chroma_log_max_size": "20m"}
    with port_rejected(port):
        run = run_deploy(changed, env=env)
        health = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Health.Status}}",
             f"{name}-chroma-1", f"{name}-auth-proxy-1"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    assert health == ["healthy", "healthy"], health
    assert run.returncode == 1, run.output
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    said = [line.strip() for line in run.output.splitlines() if "does not answer" in line]
    assert len(said) == 1, run.output
    assert said[0].startswith(
        f"@local: chroma_port: Chroma does not answer on {url} after this deploy started it ("
    ), said[0]
    assert str(project_dir) in said[0] and TOKEN not in run.output

    # The rule gone, nothing was lost and nothing is left to do.
    assert client(port).get_collection("kept", embedding_function=None).count() == before == 50
    again = run_deploy(changed, env=env)
    assert again.returncode == 0 and again.changed_operations == [], again.output
