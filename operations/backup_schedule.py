"""The scheduled off-host backup: a cron entry per project, and a cron daemon that runs it.

Backups must run when nobody runs pyinfra, so the host schedules them itself
(declaration/schedule.py says what the entry is). The entry is written by
pyinfra's own crontab operation, under a marker comment naming the project
dir. The cron daemon is installed (Debian's ``cron``) where missing and kept
running: by systemd where it runs, else by files/cron-supervisor.sh, the way
files/dockerd-supervisor.sh keeps Docker Engine up (operations/engine.py). A
cron that already runs is left as it is.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.operations import server

from declaration.schedule import (
    CRON_USER,
    LOG_DIR,
    BackupSchedule,
    entry_state,
    maintain_cron_name,
    maintain_entry_state,
    marker,
    project_lines,
)
from facts.cron import SUPERVISOR_PATH, Cron
from plumbing import host_state
from plumbing.host_tools import TOOL_FILES, TOOLS_DIR, upload_tools
from plumbing.report import step

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
CRON_LOG = "/var/log/chroma-deploy-cron.log"
MAINTAIN_PROGRAM = "chroma_maintain.py"

# Until Debian's cron wrote its pid file naming a live cron: started, not only launched.
# A live cron, not a killed one's zombie (its comm says cron too, where pid 1 reaps nothing).
_WAIT_FOR_CRON = (
    "for _ in $(seq 40); do pid=$(cat /run/crond.pid 2>/dev/null) && "
    '[ "$(cat /proc/"$pid"/comm 2>/dev/null)" = cron ] && '
    '[ "$(cut -d " " -f 3 /proc/"$pid"/stat 2>/dev/null)" != Z ] && exit 0; sleep 0.25; '
    "done; echo 'cron did not start within 10 s; see {log}' >&2; exit 1"
)


def cron_read() -> dict[str, Any]:
    """The arguments of the Cron fact, the same for the deploy, its prefetch and drift."""
    return {"log_dir": LOG_DIR, "tools": [f"{TOOLS_DIR}/{name}" for name in TOOL_FILES]}


@operation()
def cron_daemon():
    """Install and start the cron daemon, as far as missing, so scheduled backups run.

    Debian's ``cron`` is installed when there is no ``cron`` or no ``crontab``.
    A cron that is not running is started by systemd where it runs (and enabled,
    so it starts at boot), else by files/cron-supervisor.sh, which restarts it
    whenever it exits. A running cron, however it was started, is left alone.
    """
    cron = host_state.read(Cron, **cron_read())
    installed = bool(cron["cron"] and cron["crontab"])
    if not installed:
        yield step("no cron: installing Debian's cron (step 1 of 2: apt-get update)")
        yield "apt-get update -qq"
        yield step("installing Debian's cron (step 2 of 2: apt-get install)")
        yield "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cron"
    if installed and cron["pids"]:
        if cron["systemd"] and not cron["enabled"]:
            yield "systemctl enable cron"  # running now, and after the next boot too
            return
        pids = ", ".join(str(pid) for pid in cron["pids"])
        host.noop(f"cron is running (pid {pids})")
        return
    manager = "systemd" if cron["systemd"] else "chroma-deploy's supervisor"
    yield step(f"starting cron ({manager}), which runs the scheduled backups")
    if cron["systemd"]:
        yield "systemctl enable --now cron"
        yield _WAIT_FOR_CRON.format(log="journalctl -u cron")
        return
    yield FileUploadCommand(str(FILES_DIR / "cron-supervisor.sh"), SUPERVISOR_PATH)
    yield f"chmod 0755 {SUPERVISOR_PATH}"
    yield f"{SUPERVISOR_PATH} start"
    yield _WAIT_FOR_CRON.format(log=CRON_LOG)


def _remove(lines: list[str]) -> str:
    """Root's crontab without exactly these lines (each matched whole, as a fixed string).

    Through a file: a ``crontab -l`` that failed must stop here, not install its empty
    output as the crontab (every other entry lost). grep's 1 is "no line left": fine.
    """
    patterns = " ".join(f"-e {shlex.quote(line)}" for line in lines)
    return (
        f't=$(mktemp) && crontab -l -u {CRON_USER} >"$t" && '
        f'{{ grep -v -x -F {patterns} "$t" >"$t.keep"; [ $? -le 1 ]; }} && '
        f'crontab -u {CRON_USER} "$t.keep"; s=$?; rm -f "$t" "$t.keep"; exit $s'
    )


@operation()
def backup_schedule(project_dir: str, schedule: BackupSchedule | None):
    """This project's cron entry as declared; removed (only it) when ``schedule`` is None.

    The entry is found by its marker comment (the project dir) and by the config it
    backs up, never by another project's line. Written by pyinfra's crontab
    operation, which updates a line in place when its fields or command changed
    (a new tools dir after an upgrade of chroma-deploy: the entry follows it).
    Anything else of this project (a marker left without its line, a copy of the
    line, a line without its marker) is removed first: pyinfra finds an entry by a
    marker anywhere among the comments above a line, so a marker of ours left
    alone would make it edit the next project's line. Removal takes exactly our
    lines out, so the marker goes with its line.

    + project_dir: the project's dir, which names the entry
    + schedule: the entry as declared (declaration.schedule.declared_schedule); None: none
    """
    cron = host_state.read(Cron, **cron_read())
    state = entry_state(cron["lines"], project_dir, schedule)
    ours = project_lines(cron["lines"], project_dir)
    if schedule is None:
        if state == "absent":
            host.noop(f"no scheduled backup of {project_dir} in root's crontab (none declared)")
            return
        yield _remove(ours)
        return
    untidy = ours if state == "untidy" else []
    noop = f"root's crontab backs up {project_dir} at '{schedule.fields}'"
    yield from _declare_entry(cron, project_dir, schedule, state, untidy, noop)


@operation()
def maintain_schedule(project_dir: str, schedule: BackupSchedule | None):
    """This project's maintenance-report entry as declared; removed when ``schedule`` is None.

    chroma_maintain_schedule: the host writes maintain.py's read-only report as
    Prometheus metrics itself (files/chroma_maintain.py report --textfile). Found by
    its own marker (declaration.schedule.maintain_cron_name); written by pyinfra's
    crontab operation, which updates the line below the marker in place.

    + project_dir: the project's dir, which names the entry
    + schedule: the entry (declaration.schedule.declared_maintain_schedule); None: none
    """
    cron = host_state.read(Cron, **cron_read())
    state = maintain_entry_state(cron["lines"], schedule, project_dir)
    name = marker(maintain_cron_name(project_dir))
    if schedule is None:
        if state == "absent":
            host.noop(f"no maintenance report of {project_dir} in root's crontab (none declared)")
            return
        lines = [line.strip() for line in cron["lines"]]
        below = lines[lines.index(name) + 1 : lines.index(name) + 2]
        yield _remove([name, *[line for line in below if MAINTAIN_PROGRAM in line]])
        return
    noop = f"root's crontab reports on {project_dir} at '{schedule.fields}'"
    yield from _declare_entry(cron, project_dir, schedule, state, [], noop)


def _declare_entry(
    cron: dict[str, Any],
    project_dir: str,
    schedule: BackupSchedule,
    state: str,
    untidy: list[str],
    noop: str,
) -> Iterator[Any]:
    """A declared entry's commands, for both entries: what its line needs on the host (a
    new tools dir, another chroma-deploy's, is uploaded; the log dir), then ``untidy``
    lines of ours removed and the entry written by pyinfra's crontab operation, unless
    ``state`` is "ok" (then ``noop`` is said)."""
    if cron["missing_tools"]:
        yield from upload_tools(project_dir)
    if not cron["log_dir"]:
        yield f"mkdir -p -m 0750 {LOG_DIR}"
    if state == "ok":
        if not cron["missing_tools"] and cron["log_dir"]:
            host.noop(noop)
        return
    if untidy:
        yield _remove(untidy)
    yield from server.crontab._inner(
        command=schedule.command,
        user=CRON_USER,
        cron_name=schedule.cron_name,
        minute=schedule.minute,
        hour=schedule.hour,
        day_of_month=schedule.day_of_month,
        month=schedule.month,
        day_of_week=schedule.day_of_week,
    )
