"""The disaster drill: a lost host's data restored from the off-host repository with one command.

Host A is a converged stack with ``chroma_backup_repository`` set (an sftp:
repository on tests/harness/sftp_repository.py's sshd, created by the deploy),
holding 1,000 records with list, bool and float metadata in two databases;
backup.py takes its snapshot with the real backup program
(files/chroma_offsite.py). Host A is then lost: its stack is removed and its
project dir never read again. Host B is a fresh project dir on this engine that
the stack never ran on; one restore.py command (the repository keys and
``chroma_restore_snapshot=latest``) ships restic's files, converges without a
server, restores and verifies. Counts, ids and a checksum of every record's
document, metadata and embedding, read with the real client, are equal; a
second run changes nothing. The drill and the refusal of an unknown snapshot
then run on host B's stack; a bare Debian SSH host is restored the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PYINFRA,
    ROOT,
    DeployRun,
    base_data,
    compose_down,
    converge,
    free_port,
    run_deploy,
    sh,
)
from harness.ssh_hosts import SshHost, private_host, remove_host

from declaration.offsite import METRICS_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DATABASES = {"default_database": {"manuals": 300, "tickets": 200}, "archive": {"old": 500}}


def client(port: int, database: str, create: bool = False):
    import chromadb
    from chromadb.config import Settings

    if create and database != "default_database":
        settings = Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=port,
        )
        chromadb.AdminClient(settings).create_database(database)
    return chromadb.HttpClient(host="127.0.0.1", port=port, database=database)


def write_thousand(port: int) -> None:
    """1,000 records in two databases: list, bool and float metadata, documents, embeddings."""
    for database, collections in DATABASES.items():
        chroma = client(port, database, create=True)
        for name, count in collections.items():
            collection = chroma.create_collection(name, embedding_function=None)
            for start in range(0, count, 250):
                chunk = range(start, min(start + 250, count))
                collection.add(
                    ids=[f"{name}-{i:04d}" for i in chunk],
                    embeddings=[[i / 7, (i % 11) / 3, float(i % 5), 0.5] for i in chunk],
                    metadatas=[
                        {"tags": [name, f"t{i % 3}"], "ok": i % 2 == 0, "weight": i / 8, "n": i}
                        for i in chunk
                    ],
                    documents=[f"{database}/{name} record {i}" for i in chunk],
                )


def checksums(port: int) -> dict[str, tuple[int, str, str]]:
    """Per database/collection: count, sha256 of the ids, sha256 of every record's content."""
    found = {}
    for database in DATABASES:
        chroma = client(port, database)
        for listed in chroma.list_collections():
            got = chroma.get_collection(listed.name, embedding_function=None).get(
                include=["documents", "metadatas", "embeddings"]
            )
            rows = sorted(
                zip(got["ids"], got["documents"], got["metadatas"],
                    [[round(float(x), 5) for x in e] for e in got["embeddings"]], strict=True),
            )  # fmt: skip
            ids = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()
            content = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
            found[f"{database}/{listed.name}"] = (len(rows), ids, content)
    return found


def container_id(name: str) -> str:
    return sh(f"docker ps -q --no-trunc --filter name=^{name}-chroma-1$").stdout.strip()


@dataclass
class Disaster:
    name: str
    before: dict[str, tuple[int, str, str]]
    host_b: Path
    data_b: dict
    repository: Any  # harness.sftp_repository.SftpRepository
    snapshot: str
    first: DeployRun
    second: DeployRun
    seconds: tuple[float, float]


@pytest.fixture(scope="module")
def disaster(sftp_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Disaster]:
    from harness.sftp_repository import new_repository

    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    host_a, host_b = base / "host-a", base / "host-b"
    repository = new_repository(sftp_server)
    control = base / "control"
    control.mkdir(mode=0o700)
    password = control / "restic-password"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    password.chmod(0o600)
    offsite = repository.settings(password)
    try:
        data_a = base_data(host_a, name, chroma_backup_schedule="off", **offsite)
        converge(data_a)  # creates the repository, ships restic's files
        write_thousand(data_a["chroma_port"])
        before = checksums(data_a["chroma_port"])
        backup = run_deploy(data_a, deploy_file="backup.py", timeout=600)
        assert backup.returncode == 0, backup.output
        [taken] = json.loads(repository.restic(password, "snapshots", "--json").stdout)
        # Named by the machine, not by @local (declaration/offsite.py snapshot_host).
        assert taken["hostname"] == socket.gethostname()
        said = f"{taken['hostname']}: snapshot {taken['short_id']} of {name} written: 1000 records"
        assert said in backup.output
        compose_down(host_a)  # host A is lost: nothing of it is read again
        data_b = base_data(host_b, name, chroma_restore_snapshot="latest", **offsite)
        started = time.perf_counter()
        first = run_deploy(data_b, deploy_file="restore.py")
        middle = time.perf_counter()
        second = run_deploy(data_b, deploy_file="restore.py")
        seconds = (middle - started, time.perf_counter() - middle)
        print(f"restore onto a new project dir: {seconds[0]:.1f} s, second run {seconds[1]:.1f} s")
        yield Disaster(
            name, before, host_b, data_b, repository, taken["id"], first, second, seconds
        )
    finally:
        for project_dir in (host_a, host_b, base / "host-c"):
            if (project_dir / "docker-compose.yml").exists():
                compose_down(project_dir)
        sh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
           "2>/dev/null", check=False)  # fmt: skip
        repository.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_one_command_restores_a_lost_host_onto_one_the_stack_never_ran_on(disaster: Disaster):
    first, second = disaster.first, disaster.second
    assert first.returncode == 0, first.output
    assert second.returncode == 0, second.output
    assert second.changed_operations == [], second.output
    assert sum(count for count, _, _ in disaster.before.values()) == 1000
    assert checksums(disaster.data_b["chroma_port"]) == disaster.before
    # The empty data dir the project was converged with is moved aside, never deleted.
    [aside] = disaster.host_b.glob("chroma_data.before-restore-*")
    assert sorted(p.name for p in aside.iterdir()) == [".gitkeep"]
    assert f"snapshot {disaster.snapshot[:8]} (taken on {socket.gethostname()} at " in first.output
    assert "Chroma 1.5.9) restored and checked against its manifest: 3 collections, 1000 " in (
        first.output
    )
    assert "verified against its manifest" in first.output
    assert not (disaster.host_b / ".chroma-deploy" / "restore-pending.json").exists()
    assert second.result["totals"]["success"] == 0


def test_the_host_tool_asked_again_for_the_snapshot_it_restored_moves_nothing(
    disaster: Disaster,
):
    """As a run that could not read the repository while it planned calls it (another
    chroma-deploy's host tools on the host): the server still holds the snapshot."""
    host_b, live = disaster.host_b, container_id(disaster.name)
    asides = sorted(host_b.glob("chroma_data.before-restore-*"))
    state = host_b / ".chroma-deploy"
    done = subprocess.run(
        [sys.executable, str(ROOT / "files" / "chroma_offsite_restore.py"), "restore",
         "--config", str(state / "offsite.json"), "--snapshot", "latest",
         "--url", f"http://127.0.0.1:{disaster.data_b['chroma_port']}",
         "--marker", str(state / "restored-snapshot"), "--data-dir", "chroma_data",
         "--uid", str(os.getuid()), "--gid", str(os.getgid()), "--mode", "750",
         "--pending", str(state / "restore-pending.json"),
         "--manifest-out", str(state / "restored-snapshot.json"), "--project-dir", str(host_b),
         "--project-name", disaster.name, "--compose-file", str(host_b / "docker-compose.yml"),
         "--wait-timeout", "60"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(
        "was restored here and the server still holds what its manifest says: nothing was changed"
    )
    assert sorted(host_b.glob("chroma_data.before-restore-*")) == asides
    assert container_id(disaster.name) == live


def test_the_drill_restores_into_a_throwaway_server_and_never_touches_the_live_stack(
    disaster: Disaster,
):
    live = container_id(disaster.name)
    drill = run_deploy({**disaster.data_b, "chroma_restore_drill": "true"}, deploy_file="prove.py")
    assert drill.returncode == 0, drill.output
    passed = (
        f"restore drill: pass: snapshot {disaster.snapshot[:8]} (taken on {socket.gethostname()} "
    )
    assert passed in drill.output
    assert "3 collections, 1000 records equal to its manifest" in drill.output
    text = (Path(METRICS_DIR) / f"{disaster.name}-drill.prom").read_text()
    assert f'chroma_deploy_restore_drill_success{{project="{disaster.name}"}} 1\n' in text
    assert "chroma_deploy_restore_drill_timestamp_seconds{" in text
    assert container_id(disaster.name) == live
    assert sh("docker ps -aq --filter label=chroma-deploy.restore-drill").stdout.strip() == ""
    assert not (disaster.host_b / ".chroma-deploy" / "restore-drill").exists()
    assert checksums(disaster.data_b["chroma_port"]) == disaster.before


def test_an_unknown_snapshot_is_refused_with_one_line_and_the_stack_keeps_serving(
    disaster: Disaster,
):
    live = container_id(disaster.name)
    refused = run_deploy({**disaster.data_b, "chroma_restore_snapshot": "0123abcd"},
                         deploy_file="restore.py")  # fmt: skip
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if "chroma_restore_snapshot" in line]
    assert len(lines) == 1, refused.output
    line = lines[0].strip()
    assert line.startswith(
        f"@local: chroma_restore_snapshot: 0123abcd names no snapshot of project "
        f"{disaster.name} (1 in the repository, the newest {disaster.snapshot[:8]} of "
    )
    assert line.endswith(
        f"Z): nothing was changed; name one of them (restic snapshots --tag "
        f"project={disaster.name}), or latest"
    )
    assert container_id(disaster.name) == live
    assert checksums(disaster.data_b["chroma_port"]) == disaster.before
    assert not list(disaster.host_b.glob(".chroma_data.restore-staging*"))


def test_a_restore_killed_in_its_restore_step_resumes_and_never_serves_an_empty_database(
    disaster: Disaster,
):
    """SIGKILL the whole run (one process group) a moment into the restore of a third host."""
    host_c = disaster.host_b.parent / "host-c"
    data_c = {**disaster.data_b, "chroma_project_dir": str(host_c), "chroma_port": free_port(),
              "chroma_compose_project": disaster.name}  # fmt: skip
    compose_down(disaster.host_b)  # host B is lost in its turn: one server per compose project
    args = [PYINFRA, "-y", "@local", "restore.py"]
    for key, value in data_c.items():
        args += ["--data", f"{key}={value}"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "Starting operation: Restore snapshot" in line:
            time.sleep(1.0)  # restic is reading the repository
            break
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.stderr.close()
    process.wait()
    assert killed, "the run ended before its restore step"
    assert container_id(disaster.name) == ""  # nothing serves the empty data dir
    finished = run_deploy(data_c, deploy_file="restore.py")
    assert finished.returncode == 0, finished.output
    assert checksums(data_c["chroma_port"]) == disaster.before
    # Whatever the killed run had moved is kept beside the data dir, never deleted.
    for aside in host_c.glob("chroma_data.before-restore-*"):
        assert sorted(p.name for p in aside.iterdir()) in ([".gitkeep"], [])
    assert not (host_c / ".chroma_data.restore-staging").exists()
    again = run_deploy(data_c, deploy_file="restore.py")
    assert again.returncode == 0 and again.changed_operations == [], again.output


BARE = SshHost("cdrestore1", 22231, "root", kind="bare")


def test_a_bare_debian_host_is_restored_with_one_command(disaster: Disaster, tmp_path: Path):
    """A fresh SSH host with nothing of the stack (tests/harness/ssh_hosts.py, kind "bare").

    No Docker, no restic, no image, no project dir: the one restore.py command with the
    repository's keys (the sftp: repository host A backed up to, its key and pinned host
    key shipped from this control machine) does all of it; the test touches nothing on
    the host but to read the restored data through an SSH tunnel.
    """
    fleet = private_host(BARE, tmp_path)
    try:
        inventory = fleet.write_inventory(tmp_path / "inventory.py",
                                          shared={"chroma_image_source": "ship"})  # fmt: skip
        data = {
            "chroma_compose_project": disaster.name,
            "chroma_restore_snapshot": "latest",
            **disaster.repository.settings(disaster.data_b["chroma_backup_password_file"]),
        }
        started = time.perf_counter()
        first = run_deploy(data, inventory=str(inventory), deploy_file="restore.py")
        middle = time.perf_counter()
        second = run_deploy(data, inventory=str(inventory), deploy_file="restore.py")
        print(f"bare host: restore {middle - started:.1f} s, second run "
              f"{time.perf_counter() - middle:.1f} s")  # fmt: skip
        assert first.returncode == 0, first.output
        assert (
            f"snapshot {disaster.snapshot[:8]} (taken on {socket.gethostname()} at " in first.output
        )
        assert "verified against its manifest" in first.output
        assert second.returncode == 0, second.output
        assert second.changed_operations == [], second.output
        with fleet.forward(BARE, free_port(), 8000) as port:
            assert checksums(port) == disaster.before
    finally:
        remove_host(BARE)
