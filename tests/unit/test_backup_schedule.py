"""The scheduled backup's cron entry (declaration/schedule.py): its minute, its line, whose it is.

The line is also run here exactly as cron runs it: Debian's cron starts
``/bin/sh -c LINE`` with only SHELL=/bin/sh, PATH=/usr/bin:/bin, HOME and LOGNAME
(cron(8), "environment"), and a program it runs must find python3, docker and
restic from there. The program is a stand-in in a tools dir of the test's own,
which prints where it found each; the line around it is the deploy's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from declaration.offsite import BACKUP_PROGRAM as PROGRAM
from declaration.offsite import config_path
from declaration.schedule import (
    AUTO_HOUR,
    auto_minute,
    backup_command,
    cron_name,
    declared_schedule,
    entry_state,
    is_ours,
    log_path,
    marker,
)
from declaration.settings import load_settings

# cron(8) on Debian: the environment a crontab entry runs in when the crontab sets none.
CRON_ENV = ["env", "-i", "SHELL=/bin/sh", "PATH=/usr/bin:/bin", "HOME=/root", "LOGNAME=root"]


def _settings(schedule: str, repository: str | None = "/mnt/backup/restic", **extra: str):
    data = {"chroma_project_dir": "/srv/kb", "chroma_compose_project": "kb",
            "chroma_backup_schedule": schedule, **extra}  # fmt: skip
    if repository:
        data["chroma_backup_repository"] = repository
        data["chroma_backup_password_file"] = "/etc/kb/restic-password"
    return load_settings(data)


def test_auto_gives_a_host_the_same_minute_every_run_and_a_fleet_different_ones():
    names = [f"db{number}.internal" for number in range(120)]
    assert [auto_minute(name) for name in names] == [auto_minute(name) for name in names]
    # A fresh interpreter salts str hashes differently: the minute must not depend on it.
    script = "from declaration.schedule import auto_minute; print(auto_minute('db7.internal'))"
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], check=True)  # fmt: skip
    assert int(other.stdout) == auto_minute("db7.internal")
    minutes = {auto_minute(name) for name in names}
    assert minutes <= set(range(60))
    assert len(minutes) >= 40, "120 hosts bunch on a few minutes"


def test_auto_is_daily_at_three_and_five_fields_pass_through():
    auto = declared_schedule(_settings("auto"), "db7.internal", "/opt/tools")
    assert auto is not None
    assert auto.fields == f"{auto_minute('db7.internal')} {AUTO_HOUR} * * *"
    given = declared_schedule(_settings("30  2 * * 1-5"), "db7.internal", "/opt/tools")
    assert given is not None and given.fields == "30 2 * * 1-5"
    assert given.cron_name == cron_name("/srv/kb")


@pytest.mark.parametrize("schedule, repository", [("off", "/mnt/backup/restic"), ("auto", None)])
def test_no_entry_without_a_repository_or_with_the_schedule_off(schedule, repository):
    assert declared_schedule(_settings(schedule, repository), "db7", "/opt/tools") is None


def test_the_line_names_the_program_the_config_and_a_log_and_quotes_paths():
    command = backup_command("/srv/my kb", "kb", "/opt/tools")
    assert f"python3 /opt/tools/{PROGRAM} backup --config '/srv/my kb/.chroma-deploy/" in command
    assert command.endswith(f">>{log_path('kb')} 2>&1")
    assert "%" not in command  # cron turns % into a newline


def test_a_line_is_ours_only_for_our_config():
    ours = "1 3 * * * " + backup_command("/srv/a", "a", "/opt/tools")
    assert is_ours(ours, "/srv/a")
    assert is_ours(marker(cron_name("/srv/a")), "/srv/a")
    for other in ("/srv/a/b", "/srv/ab", "/srv"):
        assert not is_ours(ours, other)
        assert not is_ours(marker(cron_name("/srv/a")), other)
    assert not is_ours("1 3 * * * " + backup_command("/srv/a/b", "b", "/opt/t"), "/srv/a")
    assert not is_ours("# backup --config /srv/a/.chroma-deploy/offsite.json", "/srv/a")


def test_entry_state_tells_a_stray_marker_from_an_entry_to_update():
    wanted = declared_schedule(_settings("5 4 * * *"), "h", "/opt/tools")
    assert wanted is not None
    other = ["# pyinfra-name=someone else", "0 * * * * /usr/bin/true"]
    assert entry_state(other, "/srv/kb", wanted) == "absent"
    assert entry_state([*other, wanted.marker, wanted.line], "/srv/kb", wanted) == "ok"
    assert entry_state([wanted.marker, "05 04 * * *" + wanted.line[9:]], "/srv/kb", wanted) == "ok"
    moved = [wanted.marker, "6" + wanted.line[1:]]
    assert entry_state(moved, "/srv/kb", wanted) == "changed"
    assert entry_state([wanted.marker, *other], "/srv/kb", wanted) == "untidy"
    assert entry_state([wanted.line], "/srv/kb", wanted) == "untidy"
    twice = [wanted.marker, wanted.line, wanted.line]
    assert entry_state(twice, "/srv/kb", wanted) == "untidy"
    assert entry_state([wanted.marker, wanted.line], "/srv/kb", None) == "changed"


STAND_IN = """\
import shutil, sys
print("args", *sys.argv[1:])
for name in ("python3", "docker", "restic"):
    print(name, shutil.which(name))
"""


def test_the_line_finds_python3_docker_and_restic_in_crons_environment(tmp_path: Path):
    """Run as cron runs it: each found, docker the same one a root login finds."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / PROGRAM).write_text(STAND_IN)
    project = f"cdunit{uuid.uuid4().hex[:8]}"
    line = "0 3 * * * " + backup_command("/srv/kb", project, str(tools))
    command = line.split(None, 5)[5]
    log = Path(log_path(project))
    created = not log.parent.exists()
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = subprocess.run([*CRON_ENV, "/bin/sh", "-c", command], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")  # all of it in the log
        found = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    finally:
        log.unlink(missing_ok=True)
        if created:
            shutil.rmtree(log.parent, ignore_errors=True)
    assert found["args"] == f"backup --config {config_path('/srv/kb')}"
    for name in ("python3", "docker", "restic"):
        assert found[name] != "None", f"{name} not found from cron's environment"
    assert found["docker"] == shutil.which("docker"), "another docker than root's login finds"
