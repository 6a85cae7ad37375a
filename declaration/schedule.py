"""The cron entry that backs a project up off the host when nobody runs pyinfra.

One entry per project in root's crontab, found by its marker comment (pyinfra's
``# pyinfra-name=`` line, naming the project dir), so two projects on one host
have two entries and a change of one never touches the other's. Its command is
built from an argument list and runs the host program files/chroma_offsite.py
with the project's offsite.json; cron's own environment has PATH=/usr/bin:/bin,
where neither /usr/local/bin's docker nor /usr/sbin tools are, so the line sets
the PATH it needs. Everything it prints goes to a log file of its own: cron
would mail it, and the status file and metrics are what report a run.
"""

from __future__ import annotations

import hashlib
import itertools
import shlex
from dataclasses import dataclass

from declaration.offsite import BACKUP_PROGRAM, METRICS_DIR, backup_argv, config_path
from declaration.runtime import memory_bytes
from declaration.settings import Settings

# The PATH of Debian's root login: finds docker (also under /usr/local/bin), restic, python3.
CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_DIR = "/var/log/chroma-deploy"
CRON_USER = "root"
AUTO_HOUR = 3


@dataclass(frozen=True)
class BackupSchedule:
    """This project's entry as it must be: its marker name, five cron fields, its command."""

    cron_name: str
    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str
    command: str

    @property
    def fields(self) -> str:
        return " ".join((self.minute, self.hour, self.day_of_month, self.month, self.day_of_week))

    @property
    def line(self) -> str:
        """The crontab line, as pyinfra writes it below the marker comment."""
        return f"{self.fields} {self.command}"

    @property
    def marker(self) -> str:
        return marker(self.cron_name)


def cron_name(project_dir: str) -> str:
    """The entry's name: the project dir, unique on a host (one project = one project dir)."""
    return f"chroma-deploy backup {project_dir}"


def marker(name: str) -> str:
    """The comment pyinfra's crontab operation writes above a named entry."""
    return f"# pyinfra-name={name}"


def auto_minute(host_name: str) -> int:
    """The minute 'auto' runs at: a stable hash of the inventory name, so a fleet spreads
    over the hour and a host keeps its minute from run to run (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(host_name.encode()).digest()[:8], "big") % 60


def log_path(compose_project: str) -> str:
    """Where a scheduled run's output goes: root's, outside the project's logs dir (owned by
    the container's user, where drift would report a root-owned file)."""
    return f"{LOG_DIR}/{compose_project}-backup.log"


def backup_command(project_dir: str, compose_project: str, tools_dir: str) -> str:
    """What cron runs: the host program, with the PATH it needs and its output logged."""
    program = shlex.join(backup_argv(tools_dir, project_dir))
    return f"PATH={CRON_PATH} {program} >>{shlex.quote(log_path(compose_project))} 2>&1"


def _schedule(name: str, fields: list[str], command: str) -> BackupSchedule:
    """An entry from its marker name, the five cron fields (as validated by the settings)
    and its command."""
    minute, hour, day_of_month, month, day_of_week = fields
    return BackupSchedule(name, minute, hour, day_of_month, month, day_of_week, command)


def declared_schedule(settings: Settings, host_name: str, tools_dir: str) -> BackupSchedule | None:
    """This project's entry, or None: no repository set, or ``chroma_backup_schedule=off``."""
    if not settings.backup_repository or settings.backup_schedule == "off":
        return None
    if settings.backup_schedule == "auto":
        fields = [str(auto_minute(host_name)), str(AUTO_HOUR), "*", "*", "*"]
    else:
        fields = settings.backup_schedule.split()
    command = backup_command(settings.project_dir, settings.compose_project, tools_dir)
    return _schedule(cron_name(settings.project_dir), fields, command)


def is_ours(line: str, project_dir: str) -> bool:
    """A crontab line of this project: its marker, or an entry that backs up its config."""
    stripped = line.strip()
    if stripped == marker(cron_name(project_dir)):
        return True
    if not stripped or stripped.startswith("#") or BACKUP_PROGRAM not in stripped:
        return False
    try:
        words = shlex.split(stripped)
    except ValueError:  # an unbalanced quote: not a line we wrote
        return False
    wanted = config_path(project_dir)
    return any(a == "--config" and b == wanted for a, b in itertools.pairwise(words))


def project_lines(crontab: list[str], project_dir: str) -> list[str]:
    """The lines of ``crontab`` that belong to this project (markers and entries)."""
    return [line for line in crontab if is_ours(line, project_dir)]


def entry_state(crontab: list[str] | None, project_dir: str, wanted: BackupSchedule | None) -> str:
    """How this project's entry stands against ``wanted``, in one word.

    ``absent`` (nothing of ours, none wanted, or none there but wanted), ``ok``
    (exactly the marker and the wanted line right below it, nothing else of ours),
    ``changed`` (the marker right above one line of ours that is not the wanted one:
    pyinfra's crontab operation updates it in place), ``untidy`` (anything else of ours:
    a marker alone, a line without its marker, two lines: removed before the entry is
    written again, since pyinfra finds an entry by the marker among ALL the comments
    above a line and would edit another project's line below a stray marker of ours).
    """
    lines = [line.strip() for line in crontab or []]
    ours = [index for index, line in enumerate(lines) if is_ours(line, project_dir)]
    if not ours:
        return "absent"
    name = marker(cron_name(project_dir))
    paired = (
        len(ours) == 2
        and lines[ours[0]] == name
        and ours[1] == ours[0] + 1
        and lines[ours[1]] != name
    )
    if not paired:
        return "untidy"
    if wanted is not None and _entry(lines[ours[1]]) == _entry(wanted.line):
        return "ok"
    return "changed"


def _entry(line: str) -> tuple[list[int | str], str]:
    """A crontab line's fields and command, as pyinfra's crontab operation compares them:
    a field that is a number by its value (``05`` is ``5``), the command as written."""
    *fields, command = line.split(None, 5)
    return [int(field) if field.isdigit() else field for field in fields], command


# --- chroma_maintain_schedule: the read-only maintenance report into a metrics file ------


def maintain_cron_name(project_dir: str) -> str:
    """The report's entry: its own marker, so it never passes for the backup's."""
    return f"chroma-deploy maintain {project_dir}"


def maintain_textfile(compose_project: str) -> str:
    """Beside the off-host backup's metrics (node_exporter's textfile dir can point here)."""
    return f"{METRICS_DIR}/{compose_project}-maintain.prom"


def maintain_command(settings: Settings, host_name: str, tools_dir: str) -> str:
    """What cron runs: files/chroma_maintain.py report, its metrics to the textfile; the
    JSON on stdout is dropped (the metrics say it), a failure's line goes to the log."""
    target = settings.project_dir if settings.backup_repository else settings.backup_dir
    argv = ["python3", f"{tools_dir}/chroma_maintain.py", "report",
            "--project-dir", settings.project_dir, "--data-dir", settings.data_dir,
            "--backup-target", target,
            "--textfile", maintain_textfile(settings.compose_project),
            "--host", host_name, "--project-name", settings.compose_project]  # fmt: skip
    limit = memory_bytes(settings.mem_limit)
    if limit:
        argv += ["--mem-limit", str(limit)]
    log = f"{LOG_DIR}/{settings.compose_project}-maintain.log"
    return f"PATH={CRON_PATH} {shlex.join(argv)} >/dev/null 2>>{shlex.quote(log)}"


def declared_maintain_schedule(
    settings: Settings, host_name: str, tools_dir: str
) -> BackupSchedule | None:
    """This project's report entry, or None (``chroma_maintain_schedule=off``, the default).

    'auto' is hourly, at the minute the backup's 'auto' takes (declaration: auto_minute).
    """
    if settings.maintain_schedule == "off":
        return None
    if settings.maintain_schedule == "auto":
        fields = [str(auto_minute(host_name)), "*", "*", "*", "*"]
    else:
        fields = settings.maintain_schedule.split()
    command = maintain_command(settings, host_name, tools_dir)
    return _schedule(maintain_cron_name(settings.project_dir), fields, command)


def maintain_entry_state(crontab: list[str] | None, wanted: BackupSchedule | None,
                         project_dir: str) -> str:  # fmt: skip
    """``absent``, ``ok`` (the marker, the wanted line right below) or ``changed``."""
    lines = [line.strip() for line in crontab or []]
    name = marker(maintain_cron_name(project_dir))
    if name not in lines:
        return "absent"
    below = lines.index(name) + 1
    if wanted is not None and below < len(lines) and _entry(lines[below]) == _entry(wanted.line):
        return "ok"
    return "changed"
