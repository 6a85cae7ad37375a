"""maintain.py's repairs, attacked on the real 1.5.9 image: kills at the steps the resume
test does not cover, and what the next run and the report then say.

One converged 1.5.9 stack serves every test of the file, in order (each leaves it
serving). The host program is run as the pyinfra run runs it (this checkout's copy),
with the test-only kill at a named step; the next run is maintain.py itself.
"""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from conftest import ROOT, base_data, chroma_client, converge, sh
from test_maintain import RECORDS, add, everything, maintain, report

from declaration.resources import Declared
from declaration.settings import load_settings
from operations.maintenance import repair_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A converged 1.5.9 stack with one collection, half of its records deleted."""
    project_dir = tmp_path_factory.mktemp("faults") / "stack"
    name = f"cdtest{os.urandom(4).hex()}"
    data = base_data(project_dir, name, chroma_backup_dir=str(project_dir.parent / "backups"))
    try:
        converge(data)
        port = data["chroma_port"]
        add(port, "keep")
        keep = chroma_client(port).get_collection("keep", embedding_function=None)
        keep.delete(ids=[f"keep-{i:05d}" for i in range(0, RECORDS, 2)])
        yield data, project_dir, name
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)


def killed_at(data: dict, what: str, step: str) -> subprocess.CompletedProcess[str]:
    command = shlex.split(repair_command(Declared(load_settings(data), 0, 0), what))
    command[1] = str(ROOT / "files" / "chroma_maintain.py")  # this checkout's, as uploaded
    env = {**os.environ, "CHROMA_DEPLOY_MAINTAIN_KILL_AT": step}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == -9, done.stdout + done.stderr
    assert f"step: {step}" in done.stdout
    return done


def running(name: str) -> bool:
    return sh(f"docker ps -q --filter name={name}-chroma-1").stdout.strip() != ""


def reported_then_finished(stack: tuple, what: str, kept: dict) -> str:
    """A killed run's repair: the report says it is unfinished (exit 2, not 0 with nothing
    found), the next --apply finishes it, the stack serves what it served. Its output."""
    data, project_dir, name = stack
    code, found = report(data)
    assert code == 2, found
    assert found["report"]["unfinished"] == what
    assert found["findings"][0]["kind"] == "unfinished_repair"
    done = maintain(data, "--apply", what)
    output = done.stdout + done.stderr
    assert done.returncode in (0, 2), output
    assert not (project_dir / ".chroma-deploy/maintain-pending.json").exists()
    assert running(name)
    assert everything(data["chroma_port"]) == kept
    return output


def test_a_vacuum_killed_before_it_ran_is_run_by_the_next(stack):
    """Killed after its record, before the image's vacuum: the next --apply vacuum must
    vacuum, not verify the untouched file, say `0 reclaimed` and exit 0."""
    data, project_dir, _name = stack
    port = data["chroma_port"]
    kept = everything(port)
    reclaimable = report(data)[1]["report"]["reclaimable_bytes"]
    assert reclaimable > 0
    killed_at(data, "vacuum", "recorded")

    done = maintain(data, "--apply", "vacuum")
    output = done.stdout + done.stderr
    assert done.returncode in (0, 2), output
    assert "resuming the vacuum a killed run left" in output
    print([line for line in output.splitlines() if "vacuum: chroma.sqlite3" in line])
    assert not (project_dir / ".chroma-deploy/maintain-pending.json").exists()
    assert everything(port) == kept
    assert report(data)[1]["report"]["reclaimable_bytes"] < reclaimable, output


def test_a_run_killed_right_after_the_stop_is_reported_and_started_by_the_next(stack):
    """Killed once Chroma is stopped, before the inventory and the record: the stack is
    down; the report must say so (not exit 0 with nothing found), the next run start it."""
    data, _project_dir, name = stack
    kept = everything(data["chroma_port"])
    killed_at(data, "orphans", "stopped")
    assert not running(name)

    output = reported_then_finished(stack, "orphans", kept)
    print([line for line in output.splitlines() if "resuming" in line or "orphans:" in line])
    assert "resuming the orphans a killed run left" in output


def test_a_run_killed_between_its_backup_and_its_repair_is_reported_and_finished(
    stack, monkeypatch
):
    """Killed after the backup left Chroma stopped and before the repair did anything (the
    host program dies as it starts; a vacuum, which runs wherever it is asked for): before,
    no record said so and the report found nothing while Chroma stayed down; the record
    written before the backup says it."""
    data, _project_dir, name = stack
    kept = everything(data["chroma_port"])
    monkeypatch.setenv("CHROMA_DEPLOY_MAINTAIN_KILL_AT", "apply")
    killed = maintain(data, "--apply", "vacuum")
    monkeypatch.delenv("CHROMA_DEPLOY_MAINTAIN_KILL_AT")
    assert killed.returncode == 1, killed.stdout + killed.stderr
    assert "@local: Killed" in killed.stderr, killed.stderr  # the host program, at its start
    assert not running(name)

    reported_then_finished(stack, "vacuum", kept)


def test_a_dir_named_like_a_segment_holding_other_files_is_not_an_orphan(stack):
    """A UUID-named dir of another tool in the data dir (not hnswlib's files): the report
    must not call it an orphaned segment, and --apply orphans must leave it where it is."""
    data, project_dir, _name = stack
    foreign = project_dir / "chroma_data" / "0b7e6f3c-1d2a-4c5b-9e8f-7a6b5c4d3e2f"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("another tool's file\n")
    try:
        found = report(data)[1]
        assert found["report"]["orphans"] == [], found["report"]["orphans"]
        done = maintain(data, "--apply", "orphans")
        assert done.returncode in (0, 2), done.stdout + done.stderr
        assert (foreign / "notes.txt").read_text() == "another tool's file\n"
    finally:
        if foreign.exists():
            (foreign / "notes.txt").unlink()
            foreign.rmdir()
