"""Runs that overlap on one project: one waits for the other, nothing is half-written.

Cron, a rollout and a person start runs at the same moment on real fleets. Each
test starts real pyinfra runs together on @local and checks both outcomes,
the project's files, the records, and that a following run changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    converge,
    project_lock_held,
    read_records,
    run_deploy,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STARTING = "--> Starting operation:"  # pyinfra's line as each operation starts


def start(data: dict, deploy_file: str = "deploy.py") -> subprocess.Popen[str]:
    args = [PYINFRA, "-y", "--json", "@local", deploy_file]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=900)
    return process.returncode, out + err


def leftovers(project_dir: Path) -> list[str]:
    """Temporary or half-written files a run leaves when another run tramples it."""
    return sorted(
        str(path.relative_to(project_dir))
        for path in project_dir.rglob("*")
        if path.name.endswith((".tmp", ".new")) or "staging" in path.name
    )


def test_two_deploys_at_once_on_a_fresh_project_both_finish(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    first, second = start(data), start(data)
    results = [finish(first), finish(second)]
    assert [code for code, _ in results] == [0, 0], results
    assert leftovers(project_dir) == []
    converge(data)  # and a following run changes nothing


def test_a_deploy_and_a_backup_at_once_both_finish(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    converge(data)
    write_records(data["chroma_port"], ("overlap",), per_collection=50)
    before = read_records(data["chroma_port"])
    deploy, backup = start(data), start(data, "backup.py")
    assert finish(deploy)[0] == 0
    code, output = finish(backup)
    assert code == 0, output
    (archive,) = (tmp_path / "backups").glob("*.tar.gz")
    manifest = json.loads(archive.with_suffix("").with_suffix(".json").read_text())
    assert manifest["collections"]["default_tenant/default_database/overlap"]["count"] == 50
    assert read_records(data["chroma_port"]) == before
    converge(data)


def test_a_deploy_during_a_migration_waits_and_no_record_is_lost(legacy):
    project_dir, data, _volume = legacy
    written = write_records(data["chroma_port"])
    migrating = start(data)
    pending = project_dir / ".chroma-deploy" / "migration-pending.json"
    while migrating.poll() is None and not pending.exists():
        time.sleep(0.02)
    if migrating.poll() is not None:
        raise AssertionError(f"the first run ended before its migration began: {finish(migrating)}")
    second = start(data)  # while the migration is under way (its pending record exists)
    assert finish(migrating)[0] == 0
    code, output = finish(second)
    assert code == 0, output
    assert read_records(data["chroma_port"]) == {k: sorted(v) for k, v in written.items()}
    assert leftovers(project_dir) == []
    converge(data)


def test_a_run_that_cannot_get_the_lock_names_the_holder_and_changes_nothing(project):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_lock_timeout=1)
    with project_lock_held(project_dir, "backup.py run from cron-host (pid 4242)"):
        result = run_deploy(data)
    assert result.returncode == 1
    assert "chroma_lock_timeout: the project is locked by another run" in result.output
    assert "backup.py run from cron-host (pid 4242)" in result.output
    assert not project_dir.exists()  # refused before anything changed


def lock_is_held(project_dir: Path) -> bool:
    """Whether some process holds the project's lock (plumbing/lock.py), tried without waiting."""
    from plumbing.lock import lock_dir

    path = Path(lock_dir(str(project_dir))) / "lock"
    if not path.exists():
        return False  # no run has taken it yet
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def test_a_killed_run_leaves_no_lock_behind(project):
    """Killed at a counted step, as test_interruption.py kills: the first operation has
    started, so the lock (taken while pyinfra prepares) is held; a fixed sleep could
    land before the lock or after the run."""
    project_dir, name = project
    data = base_data(project_dir, name)
    killed = start(data)
    assert killed.stderr is not None and killed.stdout is not None
    reached = any(STARTING in line for line in killed.stderr)
    assert reached, "the run ended before its first operation: nothing was killed"
    assert lock_is_held(project_dir), "the run is at its first operation without the lock"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.stderr.close()
    killed.stdout.close()
    killed.wait()
    deadline = time.monotonic() + 5  # the lock's watcher looks every 0.5 s
    while lock_is_held(project_dir):
        assert time.monotonic() < deadline, "the killed run's lock is still held"
        time.sleep(0.1)
    converge(dict(data, chroma_lock_timeout=10))  # fails, naming the holder, if it were held
