"""Restore a backup: `pyinfra INVENTORY restore.py --data chroma_restore_archive=/path.tar.gz`.

Every check of the archive (there, its checksum, its manifest, the data dir
it holds, the version it names) is made before anything on the host changes:
a refused restore is one line and leaves the stack as it was. The current
data dir is moved aside (never deleted), and the restored collections,
counts, ids, documents and metadata are verified against the backup's
manifest. The archive's manifest
names the Chroma version it was taken with: the stack is restored on that
version (the way back from an upgrade), and the run says which
chroma_version to keep in the inventory. Running it again with the same
archive changes nothing while the server still holds what it restored.

`--data chroma_restore_snapshot=latest|ID` (with the chroma_backup_ keys) restores
a snapshot of the off-host repository instead, onto this host or onto one the
stack never ran on (deploys/offsite_restore.py, docs/offsite-backups.md).
"""

import sys
from pathlib import Path

# pyinfra puts the working dir on sys.path: put this dir first, so that
# `pyinfra @local /path/to/restore.py` finds facts/ and operations/ here from any dir, ahead of
# any other module of that name (the working dir's, PYTHONPATH's), also when this dir is
# the working dir. Not an installed package: docs/testing.md says why.
ROOT = str(Path(__file__).resolve().parent)
if sys.path[:1] != [ROOT]:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

if __name__ == "__main__":  # `python restore.py`: not a pyinfra run (pyinfra runs it unnamed)
    from plumbing.version import not_under_pyinfra

    not_under_pyinfra("restore.py", sys.argv[1:])

from pyinfra import host  # noqa: E402

from declaration.resources import Declared  # noqa: E402
from deploys.backup_version import image_of_version, settings_of_version  # noqa: E402
from deploys.offsite_restore import restore_from_repository  # noqa: E402
from facts.archive import BackupArchive  # noqa: E402
from operations import data_safety, host_failure  # noqa: E402
from plumbing import host_state, preflight, report  # noqa: E402
from plumbing.refusal import refusal  # noqa: E402

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)
token = preflight.token_for_host(settings)

if not (settings.restore_archive or settings.restore_snapshot):
    raise refusal(
        host.name,
        "chroma_restore_archive: unset, and restore.py needs it (or chroma_restore_snapshot); "
        "name the .tar.gz that backup.py wrote, e.g. "
        "--data chroma_restore_archive=/var/backups/chroma-deploy/chroma-20260101T000000Z.tar.gz",
    )

if settings.restore_snapshot:
    # From the off-host repository, onto this host or a new one (deploys/offsite_restore.py).
    restore_from_repository(settings, owner, token)
else:
    archive = settings.restore_archive or ""  # set: checked above
    declared_version = settings.version  # the inventory's: to keep, if the archive's differs

    preflight.hold_project_lock(settings, "restore.py")
    declared = Declared(settings, owner.uid, owner.gid, token)
    # The restore starts a server on the data dir it switches in: never beside another one.
    preflight.require_no_other_server(declared)
    # Nor when its data dir was replaced under the running server: the copy it keeps aside
    # would be the dir put in place, not the one the server has served since.
    preflight.require_opened_dir_in_place(declared, "restore.py")
    # Every check of the archive, now, while nothing on the host has changed: a refused
    # restore stops nothing and writes nothing (not the compose file of its version either).
    manifest, problem = data_safety.archive_problem(
        archive, host_state.read(BackupArchive, archive=archive), settings.data_dir
    )
    archive_version = (manifest or {}).get("version")
    if archive_version and not problem:
        # The data was written by that version and Chroma migrates forward only:
        # restore it on the version it came from, with this host's other settings.
        then, problem = settings_of_version(
            settings, archive_version, "chroma_restore_archive", "its manifest names", "an archive"
        )
    if problem:
        host_failure.refused(name=f"Restore {archive}", message=problem)
    else:
        compose_content = None
        # The server that will start on the restored data: the archive's version's.
        restarted = declared
        if archive_version:
            then_declared = Declared(then, owner.uid, owner.gid, token)
            restarted = then_declared
            compose_content = image_of_version(
                settings, then_declared, "the archive was taken with"
            )
            if compose_content is not None:
                settings, declared = then, then_declared
        keep = (
            f": keep chroma_version={archive_version}"
            if archive_version != declared_version
            else ""
        )
        restored = data_safety.restore(
            name=f"Restore {archive} into {settings.path(settings.data_dir)}"
            + (f" on Chroma {archive_version}{keep}" if archive_version else ""),
            project_dir=settings.project_dir,
            project_name=settings.compose_project,
            data_dir=settings.data_dir,
            archive=archive,
            uid=declared.uid,
            gid=declared.gid,
            mode=settings.data_dir_mode,
            url=declared.url,
            token_file=declared.token_file,
            wait_timeout=settings.wait_timeout,
            compose_content=compose_content,
            tls_dir=declared.tls_dir,
            schema_server=restarted.check_server if restarted.validates else None,
        )
        report.show(restored)  # what was restored, where the data before it went
