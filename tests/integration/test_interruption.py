"""SIGKILL the deploy at several points: the next run converges and no record is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import PYINFRA, RECORDS, ROOT, base_data, converge, read_records, sh, write_records

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Seconds after the start at which the whole deploy (pyinfra and the commands it
# runs, one process group, as a crash or Ctrl-\\ would) is killed.
KILL_POINTS = (0.4, 0.9, 1.4, 2.0, 2.7, 3.5, 4.5)


def killed_deploy(data: dict, after: float) -> None:
    args = [PYINFRA, "-y", "@local", "deploy.py"]
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
