"""Data safety, third pass (#27): where the data is and which version wrote it come from
the host, not from the configuration.

Each test is a way an ordinary configuration change, or a takeover, served an empty
database, put two servers on one data dir or opened data with the wrong version, with
exit 0 and drift clean; records are counted before and after, through the real client.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    base_data,
    compose_down,
    converge,
    free_port,
    read_records,
    run_deploy,
    run_drift,
    sh,
    wait_for_heartbeat,
    write_records,
)

from declaration.versions import SCHEMA_LEVELS
from facts.datahomes import DataSchema

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PER_COLLECTION = 150  # two collections: 300 records, as the issue counted


def count(port: int) -> int:
    return sum(len(ids) for ids in read_records(port).values())


def drift_items(data: dict) -> tuple[int, list[dict]]:
    result = run_drift(data, "--json")
    found = json.loads(result.stdout)
    return result.returncode, found["hosts"]["@local"]["items"]


def schema_of(data_dir: Path) -> dict | None:
    from conftest import read_fact

    return read_fact(DataSchema, data_dir=str(data_dir))["levels"]


def error_line(run) -> str:
    """The one line a refusal printed (pyinfra's error line, or the failed op's)."""
    lines = [line for line in run.output.splitlines() if "chroma_" in line and ":" in line]
    assert lines, run.output
    return lines[-1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tuple[Path, str], dict]]:
    """One converged 1.5.9 stack with 300 records, shared by the tests whose deploys are
    refused: each checks that it still serves them from the same container, never
    restarted, and puts back what it removed, so the next one starts from the same stack."""
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    project_dir = tmp_path_factory.mktemp(name) / "stack"
    data = base_data(project_dir, name)
    try:
        converge(data)
        write_records(data["chroma_port"], per_collection=PER_COLLECTION)
        yield (project_dir, name), data
    finally:
        if (project_dir / "docker-compose.yml").exists():
            compose_down(project_dir)
        sh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
           "2>/dev/null", check=False)  # fmt: skip


def test_a_changed_project_dir_takes_the_old_data_over(project, tmp_path):
    """#27.1: chroma_project_dir changed, same compose project and port: the data comes along."""
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    port = data["chroma_port"]
    write_records(port, per_collection=PER_COLLECTION)
    assert count(port) == 300
    assert schema_of(project_dir / "chroma_data") == SCHEMA_LEVELS["1.5.9"]

    moved = {**data, "chroma_project_dir": str(tmp_path / "moved")}
    code, items = drift_items(moved)
    assert code == 2, items
    assert "data_elsewhere" in {item["kind"] for item in items}

    first = converge(moved)
    assert "taking over" in first.output, first.output
    assert count(port) == 300
    assert (tmp_path / "moved" / "chroma_data" / "chroma.sqlite3").exists()
    assert (project_dir / "chroma_data" / "chroma.sqlite3").exists()  # the old copy is kept
    assert run_drift(moved).returncode == 0
    compose_down(tmp_path / "moved")


def test_a_changed_data_dir_takes_the_old_data_over(project):
    """#27.2: chroma_data_dir chroma_data -> vectors: the data comes along, the old dir kept."""
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    port = data["chroma_port"]
    write_records(port, per_collection=PER_COLLECTION)

    renamed = {**data, "chroma_data_dir": "vectors"}
    converge(renamed)
    assert count(port) == 300
    assert (project_dir / "vectors" / "chroma.sqlite3").exists()
    assert (project_dir / "chroma_data" / "chroma.sqlite3").exists()
    assert run_drift(renamed).returncode == 0


USER_STACK = """\
name: {name}
services:
  chroma:
    image: chromadb/chroma:1.5.9
    ports: ['127.0.0.1:{port}:8000']
    volumes: ['{source}:/data']
{volumes}"""


@pytest.mark.parametrize("source", ["chroma-storage", "./data"])
def test_a_taken_over_stack_keeps_data_of_any_name(project, source):
    """#27.3: a user's 1.5.9 stack with its data in a volume or a dir of another name."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    project_dir.mkdir(parents=True)
    volumes = "volumes:\n  chroma-storage: {}\n" if not source.startswith(".") else ""
    (project_dir / "docker-compose.yml").write_text(
        USER_STACK.format(name=name, port=port, source=source, volumes=volumes)
    )
    sh(f"cd '{project_dir}' && docker compose up -d")
    wait_for_heartbeat(port)
    write_records(port, per_collection=PER_COLLECTION)
    try:
        first = converge(data)
        assert "taking over" in first.output, first.output
        assert count(port) == 300
        assert run_drift(data).returncode == 0
    finally:
        if not source.startswith("."):
            compose_down(project_dir)
            sh(f"docker volume rm {name}_chroma-storage", check=False)


def test_a_second_server_on_one_data_dir_is_refused(served, tmp_path):
    """#27.4: chroma_compose_project renamed with a new port; and another project dir that is
    a symlink to this one: either would start a second server on the data dir."""
    (project_dir, name), data = served
    port = data["chroma_port"]
    started = _started(served[0])

    renamed = {**data, "chroma_compose_project": f"{name}b", "chroma_port": free_port()}
    code, items = drift_items(renamed)
    assert code == 2, items
    refused = run_deploy(renamed)
    assert refused.returncode != 0
    line = error_line(refused)
    assert "chroma_compose_project:" in line and "two servers" in line, line
    assert count(port) == 300

    # The project dir reached through a symlinked parent (a symlink at the project dir
    # itself is refused as not a dir): the same data dir under another path.
    link = tmp_path / "linked"
    os.symlink(project_dir.parent, link)
    other = {**renamed, "chroma_project_dir": str(link / project_dir.name)}
    refused = run_deploy(other)
    assert refused.returncode != 0
    line = error_line(refused)
    assert "chroma_data_dir:" in line and "two servers" in line, line
    ours = sh(f"docker ps -aq --filter label=com.docker.compose.project={name}b").stdout
    assert ours.strip() == ""  # no second server was ever made
    _still_serving(served[0], port, started)


def test_a_server_older_than_the_data_is_refused_without_a_compose_file(served):
    """#27.6: the compose file removed, then chroma_version lowered: the host says 1.5.9 (the
    server that serves the data, read from its container; the data's level where none runs:
    tests/fixtures/operations/upgrade.version_change/refused_data_newer_without_compose_file)."""
    (project_dir, _), data = served
    port = data["chroma_port"]
    started = _started(served[0])
    compose_file = project_dir / "docker-compose.yml"
    aside = project_dir.parent / "docker-compose.yml.aside"
    compose_file.rename(aside)  # removed from the project dir; the same file is put back
    try:
        refused = run_deploy({**data, "chroma_version": "0.6.3"})
        assert refused.returncode != 0
        line = error_line(refused)
        assert "chroma_version: 0.6.3 is older than the 1.5.9 deployed" in line, line
        _still_serving(served[0], port, started)  # never stopped
        assert schema_of(project_dir / "chroma_data") == SCHEMA_LEVELS["1.5.9"]
    finally:
        aside.rename(compose_file)  # the shared stack as the next test expects it


SEED_UNPINNED = """\
name: {name}
services:
  chroma:
    image: {image}
    ports: ['127.0.0.1:{port}:8000']
    volumes: ['./chroma_data:/chroma/chroma']
"""


def test_an_unpinned_image_on_existing_data_takes_the_upgrade_path(project, tmp_path):
    """#27.7: the seed's unpinned image (a 0.6.3 server): backup, rehearsal, verification."""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    image = f"cdtest-unpinned-{name}:latest"
    sh(f"docker tag chromadb/chroma:0.6.3 {image}")
    try:
        (project_dir / "chroma_data").mkdir(parents=True)
        (project_dir / "docker-compose.yml").write_text(
            SEED_UNPINNED.format(name=name, image=image, port=port)
        )
        sh(f"cd '{project_dir}' && docker compose up -d")
        wait_for_heartbeat(port)
        write_records(port, per_collection=PER_COLLECTION)
        assert schema_of(project_dir / "chroma_data") == SCHEMA_LEVELS["0.6.3"]

        first = converge(data)
        assert count(port) == 300
        state = os.listdir(project_dir / ".chroma-deploy")
        assert "upgraded-0.6.3-to-1.5.9.json" in state, (state, first.output)
        assert any(name.endswith(".tar.gz") for name in os.listdir(tmp_path / "backups"))
        assert schema_of(project_dir / "chroma_data") == SCHEMA_LEVELS["1.5.9"]
    finally:
        compose_down(project_dir)
        sh(f"docker rmi {image}", check=False)


# --- What an attack on the first version of this found (each failed before its fix).


def _moved_from(project, tmp_path) -> tuple[dict, dict, int]:
    """A converged 1.5.9 stack with 300 records, and its data keys moved to another dir."""
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    port = data["chroma_port"]
    write_records(port, per_collection=PER_COLLECTION)
    return data, {**data, "chroma_project_dir": str(tmp_path / "moved")}, port


def _still_serving(project, port: int, started: str) -> None:
    """The stack was never stopped: the same container, started at the same time, 300 records."""
    _, name = project
    assert count(port) == 300
    now = sh(f"docker inspect --format '{{{{.State.StartedAt}}}}' {name}-chroma-1").stdout
    assert now == started


def _started(project) -> str:
    return sh(f"docker inspect --format '{{{{.State.StartedAt}}}}' {project[1]}-chroma-1").stdout


def test_a_takeover_that_cannot_finish_is_refused_before_the_stack_stops(served, tmp_path):
    """A project dir change with a lowered version (the data is 1.5.9's), then into a data
    dir that holds another file: each was refused only after the stack was stopped."""
    project, data = served
    moved, port = {**data, "chroma_project_dir": str(tmp_path / "moved")}, data["chroma_port"]
    started = _started(project)
    refused = run_deploy({**moved, "chroma_version": "0.6.3"})
    assert refused.returncode != 0
    line = error_line(refused)
    assert "chroma_version:" in line and "written by Chroma 1.5.9" in line, line
    _still_serving(project, port, started)

    target = tmp_path / "moved" / "chroma_data"
    target.mkdir(parents=True)
    (target / "README").write_text("vectors live here\n")
    refused = run_deploy(moved)
    assert refused.returncode != 0
    line = error_line(refused)
    assert "chroma_data_dir:" in line and "holds 1 file(s) that are not Chroma data" in line
    _still_serving(project, port, started)
    assert sorted(os.listdir(target)) == ["README"]


def test_a_killed_takeover_resumes_and_never_serves_an_empty_database(project, tmp_path):
    """Killed the moment its pending record exists (before the copy): the next run copies."""
    import signal
    import subprocess
    import time

    from conftest import PYINFRA, ROOT

    _, moved, port = _moved_from(project, tmp_path)
    record = tmp_path / "moved" / ".chroma-deploy" / "migration-pending.json"
    args = [PYINFRA, "-y", "@local", "deploy.py"]
    for key, value in moved.items():
        args += ["--data", f"{key}={value}"]
    run = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    while run.poll() is None and not record.exists():
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before it wrote its pending record"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (tmp_path / "moved" / "chroma_data" / "chroma.sqlite3").exists()

    converge(moved)
    assert count(port) == 300
    assert run_drift(moved).returncode == 0


def test_an_unusual_persist_path_and_a_paused_user_of_the_volume(project):
    """A user's stack persisting to a volume at CHROMA_PERSIST_PATH=/chroma-data is taken
    over (an empty server was started); while a paused container of another project uses
    that volume, the takeover is refused instead of stopping it."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    project_dir.mkdir(parents=True)
    volume = f"{name}-storage"
    sh(f"docker volume create {volume}")
    (project_dir / "docker-compose.yml").write_text(
        f"name: {name}\nservices:\n  chroma:\n    image: chromadb/chroma:1.5.9\n"
        "    environment: ['CHROMA_PERSIST_PATH=/chroma-data']\n"
        f"    ports: ['127.0.0.1:{port}:8000']\n    volumes: ['{volume}:/chroma-data']\n"
        f"volumes:\n  {volume}: {{external: true}}\n"
    )
    other = f"{name}-other"
    try:
        sh(f"cd '{project_dir}' && docker compose up -d")
        wait_for_heartbeat(port)
        write_records(port, per_collection=PER_COLLECTION)
        sh(f"docker run -d --name {other} -v {volume}:/chroma-data:ro chromadb/chroma:1.5.9 "
           f"&& docker pause {other}")  # fmt: skip
        refused = run_deploy(data)
        assert refused.returncode != 0
        line = error_line(refused)
        assert f"also used by {other}" in line and "paused" in line, line
        assert sh(f"docker inspect --format '{{{{.State.Status}}}}' {other}").stdout.strip() == (
            "paused"
        )
        assert count(port) == 300

        sh(f"docker rm -f {other}")
        first = converge(data)
        assert "taking over" in first.output, first.output
        assert count(port) == 300
        assert run_drift(data).returncode == 0
    finally:
        sh(f"docker rm -f {other}", check=False)
        compose_down(project_dir)
        sh(f"docker volume rm {volume}", check=False)


def test_a_second_server_through_a_parent_mount_is_refused(project, tmp_path):
    """Another project's Chroma mounts the project dir's parent at /srv and persists to
    /srv/chroma_data (CHROMA_PERSIST_PATH): it serves the data dir though no mount is it."""
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    port = data["chroma_port"]
    write_records(port, per_collection=PER_COLLECTION)
    other = f"{name}-parent"
    try:
        sh(f"docker run -d --name {other} -e CHROMA_PERSIST_PATH=/srv/chroma_data "
           f"-v '{project_dir}':/srv chromadb/chroma:1.5.9")  # fmt: skip
        code, items = drift_items(data)
        assert code == 2 and "data_dir_shared" in {item["kind"] for item in items}, items
        refused = run_deploy({**data, "chroma_port": free_port()})
        assert refused.returncode != 0
        assert "two servers" in error_line(refused)
    finally:
        sh(f"docker rm -f {other}", check=False)
    assert count(port) == 300


def test_data_no_server_of_the_declared_version_opened_takes_the_upgrade_path(project, tmp_path):
    """chroma_data_dir named at a dir a 0.6.3 server wrote, while the compose file names
    1.5.9 already: it was migrated by 1.5.9 with no backup. (No rehearsal: the backup and
    the upgrade record are the point; test_upgrade.py rehearses.)"""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"),
                     chroma_upgrade_rehearsal="false")  # fmt: skip
    converge(data)
    old = project_dir / "old063"
    old.mkdir()
    uid = os.stat(project_dir / "chroma_data").st_uid
    os.chown(old, uid, os.stat(project_dir / "chroma_data").st_gid)
    port = free_port()
    hand = f"{name}-by-hand"
    try:
        sh(f"docker run -d --name {hand} --user {uid} -p 127.0.0.1:{port}:8000 "
           f"-v '{old}':/chroma/chroma chromadb/chroma:0.6.3")  # fmt: skip
        wait_for_heartbeat(port)
        write_records(port, per_collection=PER_COLLECTION)
    finally:
        sh(f"docker rm -f {hand}", check=False)
    assert schema_of(old) == SCHEMA_LEVELS["0.6.3"]
    compose_down(project_dir)

    moved = {**data, "chroma_data_dir": "old063"}
    converge(moved)
    assert count(data["chroma_port"]) == 300
    assert "upgraded-0.6.3-to-1.5.9.json" in os.listdir(project_dir / ".chroma-deploy")
    assert any(f.endswith(".tar.gz") for f in os.listdir(tmp_path / "backups"))


def test_an_upgrade_the_data_asks_for_works_without_a_compose_file(project, tmp_path):
    """0.6.3's data, its compose file removed, then the default 1.5.9: the upgrade path's
    backup stopped the stack with compose on the missing file, and failed on every run.
    (No rehearsal: the backup is the point; test_upgrade.py rehearses.)"""
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"),
                     chroma_upgrade_rehearsal="false")  # fmt: skip
    converge({**data, "chroma_version": "0.6.3"})
    port = data["chroma_port"]
    write_records(port, per_collection=PER_COLLECTION)
    (project_dir / "docker-compose.yml").unlink()

    converge(data)
    assert count(port) == 300
    assert "upgraded-0.6.3-to-1.5.9.json" in os.listdir(project_dir / ".chroma-deploy")
    assert schema_of(project_dir / "chroma_data") == SCHEMA_LEVELS["1.5.9"]
