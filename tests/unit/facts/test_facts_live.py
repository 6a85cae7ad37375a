"""The facts' own commands, run for real on this machine and read by the facts.

Needs a running Docker engine (``-m docker``). Values are checked against what
other commands or Python's own os.stat report, never against the facts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fact_runs import run_fact

from facts.accounts import Accounts
from facts.chroma import ChromaHealth
from facts.compose import ComposeStack, ContainerMounts
from facts.datadirs import DataDirs
from facts.datahomes import DataSchema, OpenedDataDir
from facts.docker import DockerEngine, DockerImage
from facts.project import ProjectFiles
from facts.volumes import LegacyVolumes

pytestmark = pytest.mark.docker


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_docker_engine_reports_the_running_daemon_and_the_compose_plugin():
    run = run_fact(DockerEngine)
    assert run.returncode == 0
    assert run.value["cli"] is True
    assert run.value["server_running"] is True
    assert run.value["server_version"] == _out(
        "docker", "version", "--format", "{{.Server.Version}}"
    )
    # The plugin docker itself runs for `docker compose`, found by the fact without running it.
    plugins = '{{range .ClientInfo.Plugins}}{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}'
    assert run.value["compose_v2"] == _out("docker", "info", "--format", plugins)
    assert run.value["systemd"] is Path("/run/systemd/system").is_dir()
    assert run.value["state"] == "running"
    sbin = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"
    assert run.value["dockerd"] == shutil.which("dockerd", path=sbin)
    assert run.value["engine_version"] in _out(run.value["dockerd"], "--version")
    pid = int(Path("/var/run/docker.pid").read_text())
    assert run.value["pid_file"] == {"pid": pid, "process": "dockerd"}
    assert pid in run.value["dockerd_pids"]


def test_docker_image_absent_is_none_and_present_has_the_engines_id():
    assert run_fact(DockerImage, ref=f"chroma-facts-fixture/none:{uuid.uuid4().hex}").value is None
    image_ids = _out("docker", "images", "-q", "--no-trunc")
    if not image_ids:
        pytest.skip("no image on this engine")
    image_id = image_ids.splitlines()[0]
    found = run_fact(DockerImage, ref=image_id).value
    assert found is not None
    assert found["id"] == image_id


def test_data_dirs_reads_modes_ids_and_a_uid_without_account(tmp_path: Path):
    data = tmp_path / "chroma_data"
    data.mkdir()
    data.chmod(0o750)
    (data / "chroma.sqlite3").write_bytes(b"x" * 1000)
    (data / ".gitkeep").touch(mode=0o640)
    numeric = tmp_path / "numeric"
    numeric.mkdir()
    numeric.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(numeric, 4242, 4343)  # ids with no account on this machine (checked below)
    missing = tmp_path / "missing"
    run = run_fact(DataDirs, paths=[str(data), str(numeric), str(missing)])
    assert run.returncode == 0
    found = run.value
    assert found[str(missing)] is None
    real = os.stat(data)
    assert found[str(data)]["type"] == "directory"
    assert (found[str(data)]["uid"], found[str(data)]["gid"]) == (real.st_uid, real.st_gid)
    assert found[str(data)]["mode"] == "750"
    assert found[str(data)]["has_sqlite"] is True
    assert found[str(data)]["size_bytes"] >= 1000
    gitkeep = os.stat(data / ".gitkeep")
    assert found[str(data)]["gitkeep"] == {
        "uid": gitkeep.st_uid, "gid": gitkeep.st_gid, "mode": oct(gitkeep.st_mode & 0o777)[2:],
        "size": 0,
    }  # fmt: skip
    assert found[str(numeric)]["mode"] == "700"
    if os.geteuid() == 0:
        if subprocess.run(["getent", "passwd", "4242"], capture_output=True).returncode == 0:
            pytest.skip("uid 4242 has an account here")
        assert found[str(numeric)]["uid"] == 4242
        assert found[str(numeric)]["gid"] == 4343
        assert found[str(numeric)]["user"] is None


def test_compose_stack_of_an_unknown_project_is_empty_but_docker_answers(tmp_path: Path):
    name = f"chroma-facts-fixture-{uuid.uuid4().hex[:8]}"
    found = run_fact(ComposeStack, project_dir=str(tmp_path), project_name=name).value
    assert found["docker"] is True
    assert found["file_exists"] is False
    assert found["containers"] == []
    assert found["declared_hashes"] == {}
    assert (
        run_fact(ContainerMounts, project_name=name, service="chroma", persist_path="/data").value
        is None
    )


def test_compose_stack_reads_declared_hashes_of_a_valid_file(tmp_path: Path):
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  chroma:\n    image: chromadb/chroma:1.5.9\n  other:\n    image: busybox\n"
    )
    name = f"chroma-facts-fixture-{uuid.uuid4().hex[:8]}"
    found = run_fact(ComposeStack, project_dir=str(tmp_path), project_name=name).value
    assert sorted(found["declared_hashes"]) == ["chroma", "other"]
    assert all(len(value) == 64 for value in found["declared_hashes"].values())
    (tmp_path / "docker-compose.yml").write_text("services: [\n")
    broken = run_fact(ComposeStack, project_dir=str(tmp_path), project_name=name).value
    assert broken["declared_hashes"] == {}
    assert broken["config_error"]


# Every fact, with the daemon not answering and with no docker command at all:
# the command still exits 0 and the fact says "absent" instead of failing.
EVERY_FACT: list[tuple[type, dict[str, Any]]] = [
    (DockerEngine, {}),
    (DockerImage, {"ref": "chromadb/chroma:1.5.9"}),
    (ComposeStack, {"project_dir": "/nonexistent", "project_name": "chroma-facts-fixture-x"}),
    (ContainerMounts, {"project_name": "chroma-facts-fixture-x", "service": "chroma",
                       "persist_path": "/data"}),
    (ChromaHealth, {"url": "http://127.0.0.1:1", "heartbeat_path": "/api/v2/heartbeat",
                    "container": "chroma-facts-fixture-x"}),
    (DataDirs, {"paths": ["/nonexistent/chroma_data"]}),
    (ProjectFiles, {"project_dir": "/nonexistent"}),
    (Accounts, {"owner": "4242", "group": None}),
    (LegacyVolumes, {"names": ["chroma-data"]}),
    (DataSchema, {"data_dir": "/nonexistent/chroma_data"}),
    (OpenedDataDir, {"container": "chroma-facts-fixture-x", "targets": ["/data"]}),
]  # fmt: skip

ABSENT: dict[type, Callable[[Any], bool]] = {
    DockerEngine: lambda v: v["server_running"] is False and v["server_version"] is None,
    DockerImage: lambda v: v is None,
    ComposeStack: lambda v: v["docker"] is False and v["containers"] == [],
    ContainerMounts: lambda v: v is None,
    ChromaHealth: lambda v: v["reachable"] is False and v["image"] is None and v["error"],
    DataDirs: lambda v: v == {"/nonexistent/chroma_data": None},
    ProjectFiles: lambda v: v["dir"] is None and v["compose"] is None,
    Accounts: lambda v: v["owner"] == {"name": None, "uid": 4242, "gid": -1},
    LegacyVolumes: lambda v: v == [],
    DataSchema: lambda v: v == DataSchema.default(),
    OpenedDataDir: lambda v: v == {"inodes": {}},
}


@pytest.mark.parametrize("how", ["daemon_down", "docker_absent"])
@pytest.mark.parametrize(("fact_cls", "args"), EVERY_FACT, ids=[c.__name__ for c, _ in EVERY_FACT])
def test_every_fact_exits_0_and_reads_absent(
    fact_cls: type, args: dict[str, Any], how: str, path_without: Callable[..., dict[str, str]]
):
    if how == "daemon_down":
        env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    else:
        env = path_without("docker", "docker-compose")
    run = run_fact(fact_cls, env=env, **args)
    assert run.returncode == 0
    assert ABSENT[fact_cls](run.value), run.value
    if fact_cls is DockerEngine:
        assert run.value["cli"] is (how == "daemon_down")


def test_legacy_volumes_leave_out_a_volume_removed_after_it_was_listed(tmp_path: Path):
    """Another project's ``down -v`` between our ``volume ls`` and ``volume inspect``.

    A ``docker`` first on PATH lists the volumes as the real one does, then removes
    one of them before it answers: the read must leave that volume out, not fail
    (it failed with "volume inspect: JSONDecodeError" before), and still report
    the volume that stays.
    """
    real = shutil.which("docker")
    assert real
    gone, kept = (
        f"cdgone{uuid.uuid4().hex[:8]}_chroma_data",
        f"cdkept{uuid.uuid4().hex[:8]}_chroma_data",
    )
    for name in (gone, kept):
        subprocess.run([real, "volume", "create", name], capture_output=True, check=True)
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "volume ls" ]; then\n'
        f'  out=$("{real}" "$@") || exit $?\n'
        f'  "{real}" volume rm {gone} >/dev/null 2>&1\n'
        '  printf "%s\\n" "$out"; exit 0\n'
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}
    try:
        run = run_fact(LegacyVolumes, env=env, names=["chroma_data"])
        names = [volume["name"] for volume in run.value]
        assert kept in names
        assert gone not in names
        assert subprocess.run([real, "volume", "inspect", gone], capture_output=True).returncode
    finally:
        subprocess.run([real, "volume", "rm", gone, kept], capture_output=True, check=False)
