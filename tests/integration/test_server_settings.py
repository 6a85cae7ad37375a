"""Server settings and container limits, on the real images, seen where users would look."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from conftest import base_data, chroma_client, converge, run_deploy, run_drift, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def inspect(container: str) -> dict:
    return json.loads(sh(f"docker inspect {container}").stdout)[0]


def preflight(port: int, origin: str) -> httpx.Response:
    return httpx.options(
        f"http://127.0.0.1:{port}/api/v2/heartbeat",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )


def test_1x_server_settings_limits_and_log_rotation(project):
    project_dir, name = project
    data = base_data(
        project_dir, name,
        chroma_cors_allow_origins="http://app.example",
        chroma_max_payload_bytes=200000,
        chroma_otel_endpoint="http://127.0.0.1:4317",
        chroma_otel_service_name="kb-chroma",
        chroma_mem_limit="512m",
        chroma_cpus="1.5",
        chroma_log_max_size="1m",
        chroma_log_max_files=3,
        chroma_env="CHROMA_ALLOW_RESET=true",
        chroma_stop_grace_seconds=37,
    )  # fmt: skip
    port = data["chroma_port"]
    converge(data)  # and a second run changes nothing

    allowed, other = preflight(port, "http://app.example"), preflight(port, "http://evil.example")
    assert allowed.headers.get("access-control-allow-origin") == "http://app.example"
    assert "access-control-allow-origin" not in other.headers

    base = f"http://127.0.0.1:{port}/api/v2/tenants/default_tenant/databases/default_database"
    small = httpx.post(f"{base}/collections", json={"name": "small-enough"}, timeout=10)
    assert small.status_code == 200
    big = {"name": "too-big", "metadata": {"filler": "x" * 250_000}}
    assert httpx.post(f"{base}/collections", json=big, timeout=10).status_code == 413

    found = inspect(f"{name}-chroma-1")
    env = dict(item.split("=", 1) for item in found["Config"]["Env"])
    assert env["CHROMA_OPEN_TELEMETRY__ENDPOINT"] == "http://127.0.0.1:4317"
    assert env["CHROMA_OPEN_TELEMETRY__SERVICE_NAME"] == "kb-chroma"
    assert env["CHROMA_ALLOW_RESET"] == "true"
    assert found["HostConfig"]["Memory"] == 512 * 1024 * 1024
    assert found["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert found["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-file": "3", "max-size": "1m"},
    }  # fmt: skip
    assert found["Config"]["StopTimeout"] == data["chroma_stop_grace_seconds"]
    chroma_client(port).reset()  # CHROMA_ALLOW_RESET reached the server

    # A key changed in the inventory is drift until the next deploy applies it: a limit,
    # and the stop grace (the compose file's stop_grace_period).
    changed = dict(data, chroma_cpus="1", chroma_stop_grace_seconds=41)
    result = run_drift(changed, "--json")
    assert result.returncode == 2, result.output
    kinds = {item["kind"] for item in json.loads(result.stdout)["hosts"]["@local"]["items"]}
    assert "compose_file" in kinds
    since = time.time()
    converge(changed)  # recreates Chroma: a real stop, made by chroma-deploy
    now = inspect(f"{name}-chroma-1")
    assert now["HostConfig"]["NanoCpus"] == 1_000_000_000
    assert now["Config"]["StopTimeout"] == changed["chroma_stop_grace_seconds"]
    assert run_drift(changed).returncode == 0
    # The old container was stopped by SIGTERM and exited on its own within its grace: no
    # SIGKILL (signal 9, exit code 137), which is what a server killed mid-flush gets.
    events = sh(
        f"docker events --since {since:.3f} --until {time.time():.3f} --format '{{{{json .}}}}' "
        f"--filter container={found['Id']} --filter event=kill --filter event=die"
    ).stdout.splitlines()
    said = [json.loads(event)["Actor"]["Attributes"] for event in events]
    actions = [json.loads(event)["Action"] for event in events]
    seen = [(a, s.get("signal"), s.get("exitCode")) for a, s in zip(actions, said, strict=True)]
    assert ("kill", "15", None) in seen, seen
    assert [action for action, signal, _ in seen if signal == "9"] == [], seen
    exits = [code for action, _, code in seen if action == "die"]
    assert len(exits) == 1 and exits[0] != "137", seen


def test_0x_cors_and_telemetry_off_by_default(project):
    project_dir, name = project
    data = base_data(
        project_dir, name, chroma_version="0.6.3", chroma_cors_allow_origins="http://app.example"
    )
    port = data["chroma_port"]
    converge(data)
    allowed, other = preflight(port, "http://app.example"), preflight(port, "http://evil.example")
    assert allowed.headers.get("access-control-allow-origin") == "http://app.example"
    assert "access-control-allow-origin" not in other.headers
    env = dict(item.split("=", 1) for item in inspect(f"{name}-chroma-1")["Config"]["Env"])
    assert env["ANONYMIZED_TELEMETRY"] == "False"
    assert json.loads(env["CHROMA_SERVER_CORS_ALLOW_ORIGINS"]) == ["http://app.example"]
    logs = inspect(f"{name}-chroma-1")["HostConfig"]["LogConfig"]
    assert logs == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}}  # defaults


def test_0x_log_file_recreated_by_the_deploy_is_the_one_the_server_writes(project):
    """The 0.x log file is bind-mounted as a file: a new file on the host reaches the
    container only when it starts again. Before, the deploy recreated a removed log file
    and drift went clean, while the server kept writing to the deleted one."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_version="0.6.3")
    converge(data)
    log = project_dir / "logs" / "chroma.log"
    (target,) = [
        mount["Destination"] for mount in inspect(f"{name}-chroma-1")["Mounts"]
        if mount["Source"] == str(log)
    ]  # fmt: skip

    def inode_inside() -> int:
        return int(sh(f"docker exec {name}-chroma-1 stat -c %i {target}").stdout)

    assert inode_inside() == log.stat().st_ino
    log.unlink()
    assert run_drift(data).returncode == 2
    repaired = run_deploy(data)
    assert repaired.returncode == 0, repaired.output
    # The server's file is the host's again. (The image built here from the wheel logs to
    # stdout, so the inode, not the file's growth, is what shows it.)
    assert inode_inside() == log.stat().st_ino
    assert run_drift(data).returncode == 0
    again = run_deploy(data)
    assert again.changed_operations == [], again.output
