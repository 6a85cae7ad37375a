"""A backup of the data dir as backup.py and maintain.py --apply take it.

Behind the data-safety guard: a backup starts the stack again after it (or leaves it
stopped for a repair that then starts it); on a host a failed verification stopped and
blocked, that would serve data nobody verified, and with chroma_backup_keep each such
archive would prune a good one. So a backup is blocked as deploy.py is. Then a restic
snapshot when chroma_backup_repository is set (files/chroma_offsite.py, the program the
host's schedule runs: a local copy, then the upload), else a local archive.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta

from declaration.resources import Declared
from operations import data_safety, migrate, offsite_backup


def guarded_backup(declared: Declared, no_restart: bool = False) -> OperationMeta:
    """Declare the guard and the backup; the backup's operation, for its report."""
    safety_guard(declared)
    return backup(declared, no_restart)


def safety_guard(declared: Declared, moving_orphans: bool = False) -> OperationMeta:
    """The data-safety guard a backup runs behind (migrate.data_safety_guard).

    ``moving_orphans``: maintain.py --apply orphans, which moves aside the segment dirs a
    database names none of: the refusal of those dirs names it as its second answer (their
    collections deleted), so it must not refuse it.
    """
    settings = declared.settings
    return migrate.data_safety_guard(
        name="No failed verification, no data dir left empty beside a copy of it",
        data=declared.data_target,
        accept_failed=settings.accept_failed_verification,
        allow_empty=settings.allow_empty_data_dir,
        allow_unnamed_segments=moving_orphans,
    )


def backup(declared: Declared, no_restart: bool = False) -> OperationMeta:
    """The backup, declared after safety_guard; its operation, for its report.

    ``no_restart``: a local archive's stack is left stopped (maintain.py's repair goes on
    with it, as an upgrade's backup does); a snapshot uploads while Chroma serves.
    """
    settings = declared.settings
    if settings.backup_repository:
        return offsite_backup.offsite_backup(
            name=f"Back up {settings.path(settings.data_dir)} to chroma_backup_repository",
            project_dir=settings.project_dir,
        )
    return data_safety.backup(
        name=f"Back up {settings.path(settings.data_dir)} to {settings.backup_dir}",
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        data_dir=settings.data_dir,
        backup_dir=settings.backup_dir,
        keep=settings.backup_keep,
        wait_timeout=settings.wait_timeout,
        version=settings.version,
        stop_grace=settings.stop_grace_seconds,
        no_restart=no_restart,
    )
