"""What the recorded host output must mean, written by hand.

The fixture runner (tests/unit/test_fact_fixtures.py) compares each fact with
the value stored next to the recorded output. These tests state, independently
of those stored values, what a person reading the recorded output sees in it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.exceptions import FactProcessError

from facts.accounts import Accounts
from facts.chroma import ChromaHealth
from facts.compose import ComposeStack, ContainerMounts
from facts.datadirs import DataDirs
from facts.docker import DockerEngine
from facts.project import ProjectFiles
from facts.volumes import LegacyVolumes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def read(fact_cls: type, case: str) -> Any:
    """Process the recorded output of ``case`` with a fresh fact, as pyinfra would."""
    module = fact_cls.__module__.removeprefix("facts.")
    fixture = json.loads((FIXTURES / f"{module}.{fact_cls.__name__}" / f"{case}.json").read_text())
    fact = fact_cls()
    fact.command(**fixture["args"])
    return fact.process(fixture["output"])


def test_docker_engine_decides_by_the_engine_not_the_cli():
    # No docker, no dockerd: nothing there.
    assert read(DockerEngine, "absent")["state"] == "absent"
    # A docker CLI 28.2.2 in /usr/local/bin, no dockerd, no unit: not an engine.
    cli_only = read(DockerEngine, "cli_only")
    assert cli_only["state"] == "cli_only"
    assert (cli_only["cli"], cli_only["cli_version"]) == (True, "28.2.2")
    assert cli_only["dockerd"] is None and cli_only["service_unit"] is None


def test_docker_engine_installed_but_not_answering():
    stopped = read(DockerEngine, "stopped")
    assert stopped["state"] == "stopped"
    assert stopped["dockerd"] == "/usr/sbin/dockerd"
    assert stopped["engine_version"] == "20.10.24+dfsg1"
    assert stopped["pid_file"] is None and stopped["dockerd_pids"] == []
    # The pid file names pid 7, which is sshd now: dockerd would refuse it.
    stale = read(DockerEngine, "stale_pid")
    assert stale["state"] == "stale_pid"
    assert stale["pid_file"] == {"pid": 7, "process": "sshd"}
    assert stale["dockerd_pids"] == []
    garbled = read(DockerEngine, "stale_pid_not_a_number")
    assert garbled["state"] == "stale_pid"
    assert garbled["pid_file"] == {"pid": None, "process": None}
    # A dockerd launched an instant before: its process and pid file exist, no answer yet.
    starting = read(DockerEngine, "starting")
    assert starting["state"] == "starting"
    assert starting["server_running"] is False
    (pid,) = starting["dockerd_pids"]
    assert starting["pid_file"] == {"pid": pid, "process": "dockerd"}


def test_docker_engine_running_with_a_newer_cli_and_compose_v1_or_v2():
    running = read(DockerEngine, "running")
    assert running["state"] == "running"
    # The 28.x CLI first on PATH talks to Debian's 20.10 engine.
    assert (running["cli_version"], running["server_version"]) == ("28.2.2", "20.10.24+dfsg1")
    # The plugin is found by its file (no Go program started); the engine's version
    # is the server's own answer, so `dockerd --version` is not run either.
    assert running["compose_v2"] == "/usr/local/lib/docker/cli-plugins/docker-compose"
    assert running["engine_version"] == running["server_version"]
    recorded = json.loads((FIXTURES / "docker.DockerEngine" / "running.json").read_text())
    assert not any(line.startswith("Docker version") for line in recorded["output"])
    assert read(DockerEngine, "stopped")["engine_version"] == "20.10.24+dfsg1"  # dockerd's answer
    v1_only = read(DockerEngine, "compose_v1_only")
    assert v1_only["state"] == "running"
    assert (v1_only["compose_v1"], v1_only["compose_v2"]) == ("1.29.2", None)
    both = read(DockerEngine, "legacy_v1_beside_v2")
    assert (both["compose_v1"], both["compose_v2"]) == (
        "1.29.2", "/usr/local/lib/docker/cli-plugins/docker-compose"
    )  # fmt: skip
    # A v2 binary called docker-compose is not a legacy v1.
    assert read(DockerEngine, "standalone_v2_is_not_v1")["compose_v1"] is None


def test_compose_stack_running_is_converged():
    stack = read(ComposeStack, "running_own_stack")
    (chroma,) = stack["containers"]
    assert chroma["name"] == "chroma-facts-fixture-chroma-1"
    assert (chroma["state"], chroma["health"]) == ("running", "healthy")
    assert chroma["config_hash"] == stack["declared_hashes"]["chroma"]
    assert chroma["image_id"] == stack["image_id"]
    assert chroma["ports"] == [
        {"container_port": "8000/tcp", "host_ip": "127.0.0.1", "host_port": "18999"}
    ]
    assert chroma["env"]["CHROMA_PERSIST_PATH"] == "/data"
    assert chroma["user"] == "0:0"
    assert stack["verdict"] == "compose"  # recorded before the verdict record existed


def test_compose_stack_answers_a_noop_from_the_recorded_verdict():
    """Recorded on a stack the deploy brought up: compose itself never ran for this read."""
    stack = read(ComposeStack, "converged_verdict_recorded")
    assert stack["verdict"] == "recorded"
    assert stack["would_recreate"] == []
    (chroma,) = stack["containers"]
    assert chroma["config_hash"] == stack["declared_hashes"]["chroma"]
    recorded = json.loads(
        (FIXTURES / "compose.ComposeStack" / "converged_verdict_recorded.json").read_text()
    )
    assert "@@recreate" not in recorded["output"]  # no `up --dry-run`, no `config --hash`


def test_compose_stack_stopped_created_down_and_invalid():
    (stopped,) = read(ComposeStack, "stopped_named_volume")["containers"]
    assert (stopped["state"], stopped["health"], stopped["ports"]) == ("exited", None, [])
    assert stopped["mounts"][0]["type"] == "volume"
    assert stopped["mounts"][0]["name"] == "chroma-facts-fixture-legacy_chroma-data"
    (created,) = read(ComposeStack, "created_seed_mistake")["containers"]
    assert created["state"] == "created"
    assert {m["type"] for m in created["mounts"]} == {"bind", "tmpfs"}
    # compose answers without the daemon, but hashes then mean nothing: dropped.
    down = read(ComposeStack, "daemon_down")
    assert (down["docker"], down["file_exists"], down["declared_hashes"]) == (False, True, {})
    invalid = read(ComposeStack, "invalid_file")
    assert invalid["declared_hashes"] == {}
    assert "did not find expected" in invalid["config_error"]


def test_container_mounts_problems():
    assert read(ContainerMounts, "bind_at_persist_path")["problems"] == []
    seed = read(ContainerMounts, "seed_mistake")["problems"]
    assert seed[0].startswith("nothing is mounted at the persist path /data")
    assert "/chroma/chroma" in seed[1]
    named = read(ContainerMounts, "named_volume")
    assert named["mounts"][0]["named_volume"] and named["mounts"][0]["is_persist_path"]
    assert named["problems"][0].startswith("named volume 'chroma-facts-fixture-legacy_chroma-")
    assert read(ContainerMounts, "other_service") is None


def test_chroma_health_versions_and_fallback():
    healthy = read(ChromaHealth, "healthy")
    assert (healthy["status"], healthy["reachable"], healthy["error"]) == (200, True, None)
    assert healthy["heartbeat"] > 10**18
    # The API says 1.0.0 for every 1.x: the image tag says which release runs.
    assert (healthy["api_version"], healthy["image_version"]) == ("1.0.0", "1.5.9")
    assert read(ChromaHealth, "not_found")["status"] == 410
    down = read(ChromaHealth, "down")
    assert down["reachable"] is False and "Failed to connect" in down["error"]
    raw = read(ChromaHealth, "no_curl_healthy")
    assert (raw["status"], raw["seconds"], raw["api_version"]) == (200, None, None)
    assert raw["heartbeat"] > 10**18
    assert "Connection refused" in read(ChromaHealth, "no_curl_down")["error"]


def test_data_dirs_numeric_ids_symlink_and_file():
    dirs = read(DataDirs, "symlink_and_file")
    base = "/tmp/chroma-facts-fixture/stack"
    assert dirs[f"{base}/chroma_data"]["has_sqlite"] is True
    assert dirs[f"{base}/chroma_data"]["gitkeep"] == {"uid": 0, "gid": 0, "mode": "640", "size": 0}
    numeric = dirs[f"{base}/numeric"]
    assert (numeric["uid"], numeric["gid"], numeric["user"], numeric["group"]) == (
        4242, 4343, None, None,
    )  # fmt: skip
    assert dirs[f"{base}/missing"] is None
    assert dirs[f"{base}/dangling"]["type"] == "symbolic link"
    assert dirs[f"{base}/afile"]["type"] == "regular file"


def test_project_files_bytes_and_gitignore_lines():
    files = read(ProjectFiles, "crlf_gitignore_unicode")
    fixture = json.loads(
        (FIXTURES / "project.ProjectFiles" / "crlf_gitignore_unicode.json").read_text()
    )
    raw = base64.b64decode(fixture["output"][3])
    assert files["compose"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert files["compose"]["content"].startswith("# données — ünïcode")
    # "chroma_data/\r\n" is a CRLF line; a blank line stays; no newline at the end.
    assert files["gitignore"][1:4] == ["chroma_data/", "*.log", ""]
    assert files["gitignore"][-1] == "logs/"
    assert files["gitignore_ends_with_newline"] is False
    empty = read(ProjectFiles, "dir_only_empty_gitignore")
    assert (empty["compose"], empty["gitignore"]) == (None, [])


def test_accounts_numeric_and_missing():
    numeric = read(Accounts, "numeric_without_account")
    assert numeric["owner"] == {"name": None, "uid": 4242, "gid": -1}
    assert numeric["group"] == {"name": None, "gid": 4343}
    named = read(Accounts, "named_and_numeric")
    assert named["owner"]["name"] == "chromatest"
    missing = read(Accounts, "no_such_owner")
    assert (missing["owner"], missing["group"]) == (None, None)


def test_legacy_volumes_with_and_without_data():
    plain, prefixed = read(LegacyVolumes, "one_with_data")
    assert (plain["name"], plain["has_chroma_data"]) == ("fxlegacy", True)
    assert (prefixed["name"], prefixed["has_chroma_data"]) == ("otherproj_fxlegacy", False)


def test_legacy_volume_of_a_compose_project_in_use():
    (volume,) = read(LegacyVolumes, "volume_in_use")
    assert volume["compose_project"] == "chroma-facts-fixture-legacy"
    assert volume["has_chroma_data"] is True
    assert volume["users"] == [
        {"name": "chroma-facts-fixture-legacy-chroma-1", "project": "chroma-facts-fixture-legacy"}
    ]
    assert volume["contents"] == "1 collections, 3 records"
    assert volume["size_bytes"] > 0


@pytest.mark.parametrize(
    ("fact_cls", "args", "output"),
    [
        (ComposeStack, {"project_dir": "/p", "project_name": "p"},
         ["@@file", "@@hashes", "chroma abc extra", "@@docker", "yes", "@@containers", ""]),
        (LegacyVolumes, {"names": ["v"]}, ["@@volume", '{"Name": "v"}', "size=lots"]),
        (LegacyVolumes, {"names": ["v"]}, ["@@volume", "[]"]),
        (ProjectFiles, {"project_dir": "/p"}, ["@@dir"]),
        (Accounts, {}, ["@@login", "root", "0"]),
    ],
    ids=["hash_line", "volume_size", "volume_not_object", "no_stat", "short_id"],
)  # fmt: skip
def test_damaged_output_raises_fact_process_error(
    fact_cls: type, args: dict[str, Any], output: list[str]
):
    fact = fact_cls()
    fact.command(**args)
    with pytest.raises(FactProcessError):
        fact.process(output)
