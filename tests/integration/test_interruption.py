"""SIGKILL the deploy at several points: the next run converges and no record is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import (
    PYINFRA,
    RECORDS,
    ROOT,
    base_data,
    chroma_client,
    converge,
    read_records,
    run_deploy,
    sh,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Seconds after the start at which the whole deploy (pyinfra and the commands it
# runs, one process group, as a crash or Ctrl-\\ would) is killed.
KILL_POINTS = (0.4, 0.9, 1.4, 2.0, 2.7, 3.5, 4.5)


def killed_deploy(data: dict, after: float, deploy_file: str = "deploy.py") -> None:
    args = [PYINFRA, "-y", "@local", deploy_file]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    time.sleep(after)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_first_converge_killed_anywhere_then_converges(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    for point in KILL_POINTS:
        killed_deploy(data, point)
    converge(data)
    assert (project_dir / "chroma_data" / "chroma.sqlite3").is_file()


def test_migration_killed_anywhere_loses_no_record(legacy):
    _, data, volume = legacy
    written = write_records(data["chroma_port"])
    for point in KILL_POINTS:
        killed_deploy(data, point)
    converge(data)
    assert read_records(data["chroma_port"]) == {k: sorted(v) for k, v in written.items()}
    assert sum(len(v) for v in written.values()) == 2 * RECORDS
    assert sh(f"docker volume inspect {volume}").returncode == 0


# A restore and an upgrade take longer than a first converge: later points too.
LONG_KILL_POINTS = (0.5, 2.5, 6.0, 12.0)


def test_restore_killed_anywhere_then_restores_and_loses_nothing(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(data)
    write_records(port, ("kept",), per_collection=100)
    backed_up = read_records(port)
    assert run_deploy(data, deploy_file="backup.py", timeout=600).returncode == 0
    write_records(port, ("later",), per_collection=30)  # data the restore moves aside
    archive = next((tmp_path / "backups").glob("*.tar.gz"))
    restore = dict(data, chroma_restore_archive=str(archive))
    for point in LONG_KILL_POINTS:
        killed_deploy(restore, point, "restore.py")
    finished = run_deploy(restore, deploy_file="restore.py", timeout=600)
    assert finished.returncode == 0, finished.output
    assert read_records(port) == backed_up
    # Every copy moved aside is kept; the data written after the backup is in one of them.
    aside = list(project_dir.glob("chroma_data.before-restore-*"))
    assert any((d / "chroma.sqlite3").is_file() for d in aside)
    assert not (project_dir / ".chroma_data.restore-staging").exists()
    converge(data)


def test_upgrade_killed_anywhere_then_upgrades_and_loses_no_record(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    client = chroma_client(port)
    collection = client.create_collection("upgraded", embedding_function=None)
    collection.add(ids=[f"u{i}" for i in range(200)],
                   embeddings=[[float(i % 7), 1.0] for i in range(200)])  # fmt: skip
    before = read_records(port)
    upgrade = dict(data, chroma_version="1.5.9")
    for point in LONG_KILL_POINTS:
        killed_deploy(upgrade, point)
    converge(upgrade)
    assert read_records(port) == before
    assert (project_dir / ".chroma-deploy" / "upgraded-0.6.3-to-1.5.9.json").is_file()
