"""The fourth attack on data safety (session 14: the guard of segment dirs a database does
not name, prove.py's refusal before its `down`, the healthy short path of the upgrade):
each test is a fault an attacker found on the real images, fixed since. One stack per test,
20 records. The fault of a server still starting on a tag built again (its health
`starting`: the deploy missed the new build and recreated Chroma on it, without a backup)
is the operation fixture upgrade.version_change/another_build_of_the_tag_serves_while_it_
starts: on the real image that state holds only while a health check cannot pass, and
the old build started again after the failed rehearsal then takes two minutes to be
found unhealthy."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    base_data,
    compose_down,
    converge,
    free_port,
    read_records,
    run_deploy,
    run_drift,
    write_records,
)
from harness.offsite_config import init_repository
from test_schema_attack import heartbeat, refusing_rebuild, served_image, stack_on_tag

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def segment_dirs(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir())


def named_segments(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {str(row[0]) for row in db.execute("SELECT id FROM segments")}


def kept_stack(project: tuple[Path, str], **keys: object) -> tuple[dict, int, dict]:
    """A converged stack of ``keys`` with 20 records in "kept": its data keys, its port, and
    the ids written (sorted)."""
    project_dir, name = project
    data = base_data(project_dir, name, **keys)
    converge(data)
    written = write_records(data["chroma_port"], ("kept",), per_collection=20)
    return data, data["chroma_port"], {k: sorted(v) for k, v in written.items()}


def other_database(into: Path, version: str = "1.5.9", names=("other",)) -> tuple[Path, dict]:
    """Another stack's data dir: a server of ``version`` by hand on ``into`` with 20 records
    in each of ``names``, stopped; its chroma.sqlite3 and the ids written."""
    into.mkdir(parents=True)
    port = free_port()
    name = f"s14-other-{uuid.uuid4().hex[:8]}"
    env = ["-e", "IS_PERSISTENT=TRUE", "-e", "PERSIST_DIRECTORY=/data"] if version < "1" else []
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
                    *env, "-v", f"{into}:/data", f"chromadb/chroma:{version}"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not heartbeat(port):
            assert time.monotonic() < deadline, "the other server never answered"
            time.sleep(0.3)
        written = write_records(port, names, per_collection=20)
    finally:
        subprocess.run(["docker", "stop", "-t", "10", name], capture_output=True)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return into / "chroma.sqlite3", {k: sorted(v) for k, v in written.items()}


def test_another_stacks_database_beside_the_segment_dirs_is_refused_and_no_backup_prunes(
    project, tmp_path
):
    """A stopped stack's chroma.sqlite3 replaced by another stack's, which names a collection
    of its own but none of the segment dirs beside it: the deploy served it (exit 0, drift
    ok), and with chroma_backup_keep=1 the next backup.py pruned the last archive of this
    stack's records. Now the deploy and backup.py refuse in one line, drift says
    database_lost, and the archive is kept."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data = base_data(project_dir, name, chroma_backup_dir=str(backups), chroma_backup_keep=1)
    port = data["chroma_port"]
    converge(data)
    write_records(port, ("kept",), per_collection=20)
    assert run_deploy(data, deploy_file="backup.py").returncode == 0
    (archive,) = backups.glob("*.tar.gz")
    compose_down(project_dir)
    data_dir = project_dir / "chroma_data"
    database = data_dir / "chroma.sqlite3"
    segments = segment_dirs(data_dir)
    other, _ = other_database(tmp_path / "other")
    shutil.copyfile(other, database)
    assert segments and not set(segments) & named_segments(database)

    deployed = run_deploy(data)
    said = [line for line in deployed.output.splitlines() if "names none of them" in line]
    assert deployed.returncode != 0 and len(said) == 1, deployed.output
    assert "(1 collection(s))" in said[0] and not heartbeat(port)
    backed = run_deploy(data, deploy_file="backup.py")
    assert backed.returncode != 0 and "names none of them" in backed.output, backed.output
    assert list(backups.glob("*.tar.gz")) == [archive]
    drift = run_drift(data, "--no-color")
    assert drift.returncode == 2 and "database_lost" in drift.output, drift.output


def test_another_0_6_3_stacks_database_beside_the_segment_dirs_is_refused(project, tmp_path):
    """The same on a 0.6.3 stack (served, exit 0, drift ok, before the fix); prove.py passes
    on it first: its new check does not refuse a converged 0.6.3 stack."""
    project_dir = project[0]
    data, port, _ = kept_stack(project, chroma_version="0.6.3")
    proved = run_deploy(data, deploy_file="prove.py", timeout=600)
    assert proved.returncode == 0 and "persistence proof: pass" in proved.output, proved.output
    compose_down(project_dir)
    data_dir = project_dir / "chroma_data"
    database = data_dir / "chroma.sqlite3"
    segments = segment_dirs(data_dir)
    other, _ = other_database(tmp_path / "other", version="0.6.3")
    shutil.copyfile(other, database)
    assert segments and not set(segments) & named_segments(database)

    deployed = run_deploy(data)
    assert deployed.returncode != 0 and "names none of them" in deployed.output, deployed.output
    assert not heartbeat(port)
    drift = run_drift(data, "--no-color")
    assert drift.returncode == 2 and "database_lost" in drift.output, drift.output


def test_prove_refuses_a_server_whose_database_was_replaced_under_it(project, tmp_path):
    """The database replaced (mv) under the running 1.5.9 server by another stack's: the
    deploy refuses (database_names_none) and the server keeps serving the file it holds
    open. prove.py held only by luck (its canary write failed before its `down`); it now
    runs the deploy's guard first and refuses in the same line."""
    project_dir = project[0]
    data, port, _ = kept_stack(project)
    data_dir = project_dir / "chroma_data"
    other, _ = other_database(tmp_path / "other")
    shutil.copyfile(other, data_dir / "chroma.sqlite3.new")
    (data_dir / "chroma.sqlite3.new").replace(data_dir / "chroma.sqlite3")

    deployed = run_deploy(data)
    assert deployed.returncode != 0 and "names none of them" in deployed.output
    drift = run_drift(data, "--no-color")
    assert "database_lost" in drift.output, drift.output
    proved = run_deploy(data, deploy_file="prove.py", timeout=600)
    said = f"prove exit {proved.returncode}: {proved.output[-1200:]}"
    assert proved.returncode != 0 and heartbeat(port), said  # nothing taken down
    assert "names none of them" in proved.output, said


def test_prove_refuses_a_data_dir_moved_under_the_server(project):
    """The data dir moved aside (mv) under the running server: the deploy refuses and the
    server keeps serving. prove.py checked only that the stack ran as its file declares,
    wrote its canary into the moved dir, took the stack down, and its `up` could not start
    it (the bind source gone): Chroma left down. Now it refuses before its `down`."""
    project_dir = project[0]
    data, port, expected = kept_stack(project)
    (project_dir / "chroma_data").rename(project_dir / "chroma_data.moved")
    assert read_records(port) == expected
    deployed = run_deploy(data)
    assert deployed.returncode != 0 and heartbeat(port), deployed.output

    proved = run_deploy(data, deploy_file="prove.py", timeout=600)
    said = f"prove exit {proved.returncode}: {proved.output[-1500:]}"
    assert proved.returncode != 0 and "holds no chroma.sqlite3" in proved.output, said
    assert heartbeat(port) and read_records(port) == expected


def test_a_data_dir_replaced_under_a_healthy_server_is_refused_by_every_run_that_restarts(
    project, tmp_path
):
    """The data dir swapped under the healthy server (mv aside, another stack's data dir put
    at its path): the server keeps serving the dir it opened. The deploy said converged
    (exit 0, nothing changed), drift ok, and prove.py's `down` and `up` swapped the served
    database (its canary left in the old dir). Now the dir the server has open is read
    through /proc (facts.datahomes.OpenedDataDir): the deploy, backup.py and prove.py refuse
    in one line before they change anything, drift says data_dir_moved, and the stack
    serves what it served. So does the schedule's backup (files/chroma_offsite.py, run as
    cron runs it: no pyinfra), which stopped Chroma, copied the dir at the path and started
    it on the other database (the second attack)."""
    project_dir, name = project
    repository = tmp_path / "repository"
    password = tmp_path / "restic-password"
    password.write_text("a long repository password\n")
    init_repository(repository, "a long repository password")
    data, port, expected = kept_stack(
        project,
        chroma_backup_repository=str(repository),
        chroma_backup_password_file=str(password),
        chroma_backup_schedule="off",
    )  # run below as cron would: no crontab line
    swap_in_another_data_dir(project_dir, tmp_path)
    assert read_records(port) == expected

    config = project_dir / ".chroma-deploy" / "offsite.json"
    scheduled = subprocess.run(
        ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", sys.executable,
         str(ROOT / "files" / "chroma_offsite.py"), "backup", "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    said = scheduled.stderr.strip().splitlines()
    assert scheduled.returncode == 1 and len(said) == 1, scheduled.stdout + scheduled.stderr
    assert f"is not the dir the running {name}-chroma-1 has open" in said[0]
    assert "Chroma was not stopped and nothing was uploaded" in said[0]
    assert read_records(port) == expected

    for command in ("deploy.py", "backup.py", "prove.py"):
        done = run_deploy(data, deploy_file=command, timeout=600)
        said = [line for line in done.output.splitlines() if "is not the dir the running" in line]
        assert done.returncode != 0 and len(said) == 1, done.output
        assert f"{name}-chroma-1 has open" in said[0] and f"run {command} again" in said[0]
        assert read_records(port) == expected, command
    drift = run_drift(data, "--no-color")
    assert drift.returncode == 2 and "data_dir_moved" in drift.output, drift.output
    assert "another dir than the one" in drift.output


def swap_in_another_data_dir(project_dir: Path, tmp_path: Path) -> None:
    """chroma_data moved aside to chroma_data.old under the running server, another stack's
    data dir (owner and mode alike) put in its place."""
    import os

    other, _ = other_database(tmp_path / "other")
    data_dir = project_dir / "chroma_data"
    data_dir.rename(project_dir / "chroma_data.old")
    shutil.copytree(other.parent, data_dir)
    st = (project_dir / "chroma_data.old").stat()
    shutil.copystat(project_dir / "chroma_data.old", data_dir)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, st.st_uid, st.st_gid)


def test_an_emptied_database_under_a_healthy_server_is_refused_as_drift_says(project):
    """chroma.sqlite3 replaced (mv) by an empty file under the healthy server, beside its
    segment dirs (a failed copy put in place): drift said database_lost while the deploy
    said nothing (exit 0: the guard wanted a schema, the schema step trusted the healthy
    server), and a deploy that recreates Chroma (a setting changed) started the validating
    server on the empty file: refused, down where it served. Now both deploys refuse
    before anything changes, as drift says, and the server keeps serving."""
    project_dir = project[0]
    data, port, _ = kept_stack(project)
    data_dir = project_dir / "chroma_data"
    (data_dir / "chroma.sqlite3.new").write_bytes(b"")
    (data_dir / "chroma.sqlite3.new").replace(data_dir / "chroma.sqlite3")
    # (Reads may fail from here: 1.5.9's WAL no longer matches the file at the path.)

    drift = run_drift(data, "--no-color")
    plain = run_deploy(data)
    changed = run_deploy(dict(data, chroma_stop_grace_seconds=30))
    up = heartbeat(port)
    said = (
        f"drift exit {drift.returncode} ({'database_lost' in drift.output}); deploy exit "
        f"{plain.returncode}; recreating deploy exit {changed.returncode}, serving after: "
        f"{up}: {changed.output[-1200:]}"
    )
    assert up, said  # still the server that opened the data: nothing was stopped
    assert drift.returncode != 0 and plain.returncode != 0 and changed.returncode != 0, said
    assert "no chroma.sqlite3 with a schema" in plain.output, said


def test_prove_refuses_a_compose_file_scaled_to_zero(project):
    """The compose file edited by hand to `scale: 0` for chroma (compose's config hash leaves
    scale out): prove.py took the stack down and its `up` started no Chroma. Now the file
    is compared with the declared one first: refused, still serving."""
    project_dir = project[0]
    data, port, _ = kept_stack(project)
    compose_file = project_dir / "docker-compose.yml"
    text = compose_file.read_text()
    assert "\n  chroma:\n" in text
    compose_file.write_text(text.replace("\n  chroma:\n", "\n  chroma:\n    scale: 0\n", 1))

    proved = run_deploy(data, deploy_file="prove.py", timeout=600)
    up = heartbeat(port)
    said = f"prove exit {proved.returncode}; serving after: {up}: {proved.output[-1000:]}"
    assert up, said


def test_prove_refuses_when_the_inventory_names_the_next_version(own_tag, project, tmp_path):
    """With chroma_version already set to the next release (the upgrade not deployed yet)
    and the serving tag built again (a build that refuses the data), prove.py took the
    stack down and its `up` started the new build: refused, Chroma down. Now the compose
    file on the host is compared with the declared one before its `down`."""
    _, name = project
    data, port, expected = stack_on_tag(project, tmp_path / "backups", own_tag, ("kept",))
    serving = served_image(name)
    refusing_rebuild(own_tag)
    same = run_deploy(data, deploy_file="prove.py", timeout=600)
    assert same.returncode != 0 and "does not run as the inventory declares" in same.output, (
        same.output[-1500:]
    )
    assert heartbeat(port)

    proved = run_deploy(dict(data, chroma_version="1.5.9"), deploy_file="prove.py", timeout=600)
    served = read_records(port) if heartbeat(port) else None
    said = (
        f"prove exit {proved.returncode}; serving {served_image(name)[:19]} (was "
        f"{serving[:19]}), records {served and list(served)}: {proved.output[-1200:]}"
    )
    assert served == expected, said
