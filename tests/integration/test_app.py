"""The application service runs for real: the seed's knowledge-base-agent, played by a
small image built here (tests/harness/app), with and without the auth proxy.

One converge per variant (module fixture); the tests share it, in file order.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import pytest
from conftest import ROOT, base_data, converge, run_deploy, run_drift, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]

APP_IMAGE = "chroma-deploy-test/app:1"
APP_CONTEXT = ROOT / "tests" / "harness" / "app"
APP_COMMAND = ["/opt/chroma/bin/python3", "/opt/kb-app/app.py"]
COLLECTION = "kb-app-records"
OWNER = 1234  # not root: files the application writes show whose they are


@dataclass
class AppStack:
    project_dir: Path
    name: str
    data: dict[str, Any]
    env: dict[str, str]
    token: str | None
    fallback_ids: list[str]

    @property
    def app(self) -> str:
        return f"{self.name}-knowledge-base-agent-1"

    def http_ids(self) -> list[str]:
        """The application's records, read by the real client from the host."""
        headers = {"X-Chroma-Token": self.token} if self.token else {}
        port = self.data["chroma_port"]
        client = chromadb.HttpClient(host="127.0.0.1", port=port, headers=headers)
        collection = client.get_collection(COLLECTION, embedding_function=None)
        return sorted(collection.get(include=[])["ids"])

    def app_run(self, *args: str) -> Any:
        """The application's CLI inside its running container (as its user, with its mounts)."""
        return json.loads(sh(shlex.join(["docker", "exec", self.app, *APP_COMMAND, *args])).stdout)

    def inspect(self) -> dict[str, Any]:
        return json.loads(sh(f"docker inspect {self.app}").stdout)[0]


@pytest.fixture(scope="module")
def app_image() -> str:
    """Built once per session from the local Chroma image (layer cache: under a second)."""
    subprocess.run(["docker", "build", "--quiet", "-t", APP_IMAGE, str(APP_CONTEXT)],
                   env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    return APP_IMAGE


@pytest.fixture(scope="module", params=["direct", "auth-proxy"])
def stack(request, tmp_path_factory, app_image) -> Iterator[AppStack]:
    """A converged stack with the application on, and one batch it wrote to its fallback."""
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    project_dir = base / "stack"
    proxy = request.param == "auth-proxy"
    token = secrets.token_urlsafe(24) if proxy else None
    env = {**os.environ, "CHROMA_AUTH_TOKEN": token} if token else dict(os.environ)
    data = base_data(
        project_dir, name, chroma_owner=OWNER, chroma_group=OWNER, chroma_auth_proxy=proxy,
        chroma_app_enabled=True, chroma_app_image=app_image,
    )  # fmt: skip
    try:
        converge(data, env=env)
        app = AppStack(project_dir, name, data, env, token, [])
        app.fallback_ids = app.app_run("write", "--fallback")
        yield app
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
        sh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
           "2>/dev/null || true", check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def test_app_runs_hardened_as_the_owner_with_a_token_path_not_the_token(stack):
    config = stack.inspect()
    assert config["State"]["Status"] == "running"
    assert config["State"]["Health"]["Status"] == "healthy"  # wrote its batch, Chroma answers
    assert config["Config"]["User"] == f"{OWNER}:{OWNER}"
    assert config["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in config["HostConfig"]["SecurityOpt"]
    environment = dict(line.split("=", 1) for line in config["Config"]["Env"])
    if stack.token:
        assert environment["CHROMA_URL"] == "http://auth-proxy:8080"
        token_file = environment["CHROMA_AUTH_TOKEN_FILE"]
        owner_and_mode = sh(f"docker exec {stack.app} stat -c '%u %a' {token_file}").stdout
        assert owner_and_mode.split() == [str(OWNER), "600"]
        assert stack.token not in json.dumps(config)
    else:
        assert environment["CHROMA_URL"] == "http://chroma:8000"
        assert "CHROMA_AUTH_TOKEN_FILE" not in environment


def test_records_the_app_wrote_over_http_are_read_back_by_the_real_client(stack):
    ids = stack.http_ids()
    runs = {record_id.split("-")[0] for record_id in ids}
    assert len(runs) == 1 and ids  # one container, one batch
    log = (stack.project_dir / "logs" / "app.log").read_text()
    assert f"records as run {runs.pop()}" in log
    assert os.stat(stack.project_dir / "logs" / "app.log").st_uid == OWNER


def test_fallback_writes_into_chroma_db_as_the_owner(stack):
    fallback_dir = stack.project_dir / "chroma_db"
    assert (fallback_dir / "chroma.sqlite3").is_file()
    files = sh(f"find '{fallback_dir}' -printf '%u:%g %p\\n'").stdout.splitlines()
    assert len(files) > 2  # the dir, .gitkeep and what the client wrote
    assert all(line.startswith(f"{OWNER}:{OWNER} ") for line in files), files
    # Not in the server's data: the fallback is the application's own store.
    assert not set(stack.fallback_ids) & set(stack.http_ids())


def test_drift_finds_the_app_gone_after_down_and_its_records_survive_the_next_deploy(stack):
    before = stack.http_ids()
    sh(f"cd '{stack.project_dir}' && docker compose down --timeout 5")
    result = run_drift(stack.data, "--json", env=stack.env)
    assert result.returncode == 2, result.output
    items = json.loads(result.stdout)["hosts"]["@local"]["items"]
    assert ("container_missing", stack.app) in [(i["kind"], i["resource"]) for i in items]

    up = run_deploy(stack.data, env=stack.env)
    assert up.returncode == 0, up.output
    assert any(name.startswith("Stack ") for name in up.changed_operations), up.output
    after = stack.http_ids()
    assert set(before) < set(after)  # kept, and the new container added its own batch
    assert len({record_id.split("-")[0] for record_id in set(after) - set(before)}) == 1
    assert stack.app_run("ids", "--fallback") == sorted(stack.fallback_ids)


def test_a_second_deploy_changes_nothing_and_drift_is_clean(stack):
    again = run_deploy(stack.data, env=stack.env)
    assert again.returncode == 0, again.output
    assert again.changed_operations == [], again.output
    result = run_drift(stack.data, "--json", env=stack.env)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("stack", ["auth-proxy"], indirect=True)
def test_app_sees_a_new_token_file_and_keeps_working(stack):
    """Its own dir (secrets/app) is mounted, not the file: the deploy replaces the file (a
    new inode), and a file mount would keep showing the old one. The app reads it for every
    connection. A new token reaches the proxy by a reload of its clients file (#25), with
    no container recreated: the app keeps running and works on the new token.
    """
    token_file = stack.project_dir / "secrets" / "app" / "chroma-token.env"
    in_app = f"docker exec {stack.app} sha256sum /run/secrets/chroma-deploy/chroma-token.env"
    new_env = {**stack.env, "CHROMA_AUTH_TOKEN": secrets.token_urlsafe(24)}
    proxy_id = sh(f"docker inspect -f '{{{{.Id}}}}' {stack.name}-auth-proxy-1").stdout
    rotated = run_deploy(stack.data, env=new_env)
    assert rotated.returncode == 0, rotated.output
    # The token files are rewritten, and nginx reloads the new clients file.
    assert any("data dirs and files" in name for name in rotated.changed_operations)
    assert any("has loaded the clients" in name for name in rotated.changed_operations)
    assert sh(f"docker inspect -f '{{{{.Id}}}}' {stack.name}-auth-proxy-1").stdout == proxy_id
    host_digest = sh(f"sha256sum '{token_file}'").stdout.split()[0]
    assert sh(in_app).stdout.split()[0] == host_digest
    state = stack.inspect()["State"]
    assert (state["Status"], state["Health"]["Status"]) == ("running", "healthy")
