"""SIGKILL the deploy at several points: the next run converges and no record is lost."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from typing import IO

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
    start_command,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# When the whole deploy (pyinfra and the commands it runs, one process group, as a
# crash or Ctrl-\\ would) is killed: while pyinfra prepares (the lock and the read),
# then a moment after each operation starts, counted from pyinfra's own "--> Starting
# operation" lines. Counted, not timed: on a busy machine (CI runs two test files at
# once) a fixed number of seconds lands earlier in the run and misses the later steps.
PREPARING = "--> Preparing operation"
STARTING = "--> Starting operation:"


def killed_deploy(data: dict, step: int, delay: float, deploy_file: str = "deploy.py") -> bool:
    """Kill the run ``delay`` s after its ``step``-th operation starts (0: while it prepares),
    or as soon as the next operation starts, whichever comes first: a kill that would land
    in a later step is that step's own kill point (killed there at each delay in its turn),
    and on a busy machine the seconds it would wait are the suite's longest idle.

    False when the run ended before that step: there is no later step to kill.
    """
    args = [PYINFRA, "-y", "@local", deploy_file]
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    # A session of its own (conftest.start_command: through the fork server, which saves
    # each of these runs pyinfra's start-up), so the kill reaches all it started.
    process = start_command(args, ROOT, os.environ.copy(), stdout=False)
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, args=(process.stderr,), daemon=True)
    reader.start()
    started = 0
    reached = False
    while (line := lines.get()) is not None:
        started += STARTING in line
        if (step == 0 and PREPARING in line) or (step > 0 and started == step):
            reached = True
            break
    if reached:
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None or STARTING in line:
                break
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reader.join(timeout=30)
    process.stderr.close()
    return reached


def killed_at_every_step(
    data: dict, delays: tuple[float, ...], deploy_file: str = "deploy.py"
) -> int:
    """Kill a run at each step in turn, each ``delay`` after it starts; how many were killed."""
    killed = 0
    for step in range(100):
        for delay in delays:
            if not killed_deploy(data, step, delay, deploy_file):
                return killed
            killed += 1
    raise AssertionError("more than 100 steps: the run never ends")


def test_first_converge_killed_anywhere_then_converges(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    assert killed_at_every_step(data, (0.3,)) >= 10  # the deploy has ten operations
    converge(data)
    assert (project_dir / "chroma_data" / "chroma.sqlite3").is_file()


def test_migration_killed_anywhere_loses_no_record(legacy):
    _, data, volume = legacy
    written = write_records(data["chroma_port"])
    # Twice in each step: as it starts, and into its work (the copy takes seconds).
    assert killed_at_every_step(data, (0.2, 1.5)) >= 20
    converge(data)
    assert read_records(data["chroma_port"]) == {k: sorted(v) for k, v in written.items()}
    assert sum(len(v) for v in written.values()) == 2 * RECORDS
    assert sh(f"docker volume inspect {volume}").returncode == 0


# A restore and an upgrade spend seconds in one step: killed into it too.
LONG_DELAYS = (0.3, 3.0)


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
    assert killed_at_every_step(restore, LONG_DELAYS, "restore.py") >= 2
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
    assert killed_at_every_step(upgrade, LONG_DELAYS) >= 20
    converge(upgrade)
    assert read_records(port) == before
    assert (project_dir / ".chroma-deploy" / "upgraded-0.6.3-to-1.5.9.json").is_file()
