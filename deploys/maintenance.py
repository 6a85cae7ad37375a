"""maintain.py --apply's pyinfra run: lock, guard, room, backup, then the repair.

maintain.py runs ``pyinfra -y INVENTORY maintain.py --data chroma_maintain_apply=WHAT``;
pyinfra then runs maintain.py for each host, which calls :func:`maintenance`. In order:
the project lock (one run at a time, as deploy.py and backup.py take it); the
data-safety guard (a failed verification or a data dir left empty blocks it, as
it blocks backup.py); for a vacuum, the room it needs, refused in one line before
anything stops; the backup (a snapshot when chroma_backup_repository is set, else
a local archive: backup.py's own operations); the repair (operations/maintenance.py).
The local archive leaves the stack stopped (``no_restart``, as an upgrade's backup
does): the repair goes on with it, so Chroma stops once per run, and no write lands
between the backup and the repair. A failed backup starts it again and the host's
run ends there: nothing is repaired. Its pruning comes after the repair. A snapshot
(chroma_backup_repository) uploads while Chroma serves, so it starts it again first.
"""

from __future__ import annotations

from typing import Any

from pyinfra import host

from declaration.resources import Declared
from declaration.runtime import memory_bytes
from declaration.settings import Settings
from deploys.backup_run import backup, safety_guard
from facts.maintenance import MaintenanceReport
from operations import data_safety, host_failure
from operations.maintenance import begin, repair, repair_command
from plumbing import preflight, report
from plumbing.host_tools import TOOLS_DIR


def report_read(settings: Settings) -> dict[str, Any]:
    """MaintenanceReport's arguments for this host: the same for maintain.py's report."""
    return {
        "tools_dir": TOOLS_DIR,
        "project_dir": settings.project_dir,
        "data_dir": settings.data_dir,
        "backup_target": settings.project_dir
        if settings.backup_repository
        else settings.backup_dir,
        "mem_limit": memory_bytes(settings.mem_limit) or None,
    }


def vacuum_refusal(found: dict[str, Any]) -> str | None:
    """Why a vacuum must not start here (one line), or None: checked before anything stops."""
    report_ = found["report"]
    if not found["tool"] or report_ is None:
        return None  # the host program checks again before it stops Chroma
    if report_["disk_free_bytes"] >= report_["vacuum_needs_bytes"]:
        return None
    return (
        f"chroma_data_dir: a vacuum needs {report_['vacuum_needs_bytes']} bytes free on "
        f"{report_['data_dir']}'s disk and {report_['disk_free_bytes']} are; nothing was "
        "stopped or backed up: free space there, then run maintain.py --apply vacuum again"
    )


def maintenance() -> None:
    settings = preflight.settings_for_host()
    what = settings.maintain_apply
    if what is None:
        host_failure.refused(
            name="Maintenance",
            message="chroma_maintain_apply: not set; run `python maintain.py INVENTORY --apply "
            "orphans` (or vacuum), which sets it",
        )
        return
    owner = preflight.resolve_owner(settings)
    if not preflight.hold_project_lock(settings, "maintain.py"):
        return
    declared = Declared(settings, owner.uid, owner.gid)
    preflight.require_opened_dir_in_place(declared, "maintain.py")
    if what == "vacuum":
        refused = vacuum_refusal(host.get_fact(MaintenanceReport, **report_read(settings)))
        if refused:
            host_failure.refused(name="Room for the vacuum", message=refused)
            return
    # The guard first: a refusal leaves no record of a repair begun. Then the record: a run
    # killed after the backup stopped the stack is then reported.
    safety_guard(declared, moving_orphans=what == "orphans")
    report.show(
        begin(
            name=f"Maintenance of {settings.path(settings.data_dir)}: {what}, recorded as begun",
            project_dir=settings.project_dir,
            what=what,
        )
    )
    # The repair goes on with the stack a local archive's backup left stopped.
    report.show(backup(declared, no_restart=True))
    report.show(
        repair(
            name=f"Maintenance of {settings.path(settings.data_dir)}: {what}, verified",
            project_dir=settings.project_dir,
            command=repair_command(declared, what),
        )
    )
    if settings.backup_keep and not settings.backup_repository:
        report.show(
            data_safety.prune_backups(
                name=f"Keep the newest {settings.backup_keep} backups in {settings.backup_dir}",
                project_dir=settings.project_dir,
                project_name=settings.compose_project,
                data_dir=settings.data_dir,
                backup_dir=settings.backup_dir,
                keep=settings.backup_keep,
                version=settings.version,
            )
        )
