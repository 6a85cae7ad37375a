"""Restore a backup: `pyinfra INVENTORY restore.py --data chroma_restore_archive=/path.tar.gz`.

The current data dir is moved aside (never deleted), the archive's checksum
is checked first, and the restored collections, counts, ids, documents and
metadata are verified against the backup's manifest. The archive's manifest
names the Chroma version it was taken with: the stack is restored on that
version (the way back from an upgrade), and the run says which
chroma_version to keep in the inventory. Running it again with the same
archive changes nothing while the server still holds what it restored.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

# pyinfra puts only the working dir on sys.path: make `pyinfra @local /path/to/restore.py`
# find facts/ and operations/ from any dir, ahead of any other module of that name.
ROOT = str(Path(__file__).resolve().parent)
if ROOT not in sys.path:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

from pyinfra import host  # noqa: E402
from pyinfra.facts.files import FileContents  # noqa: E402

from declaration.resources import Declared  # noqa: E402
from operations import data_safety, host_failure, image, lock, preflight, report, stack  # noqa: E402
from operations.refusal import refusal  # noqa: E402

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)
token = preflight.token_for_host(settings)

if not settings.restore_archive:
    raise refusal(
        host.name,
        "chroma_restore_archive: unset, and restore.py needs it; name the .tar.gz that "
        "backup.py wrote, e.g. "
        "--data chroma_restore_archive=/var/backups/chroma-deploy/chroma-20260101T000000Z.tar.gz",
    )

archive = settings.restore_archive

# One run at a time per project: taken now, before any operation, held while this run lives.
locked_out = lock.take_project_lock(settings.project_dir, settings.lock_timeout, "restore.py")
if locked_out:
    host_failure.refused(name="Project lock", message=locked_out)
declared = Declared(settings, owner.uid, owner.gid, token)
# Only the manifest's version is needed here: read the file, not the live server.
manifest_lines = host.get_fact(FileContents, path=archive.removesuffix(".tar.gz") + ".json")
try:
    manifest = json.loads("\n".join(manifest_lines)) if manifest_lines else None
except ValueError:
    manifest = None  # the restore operation names a broken or missing manifest
archive_version = (manifest or {}).get("version")
if archive_version and archive_version != settings.version:
    # The data was written by that version and Chroma migrates forward only:
    # restore it on the version it came from.
    settings = replace(settings, version=archive_version)
    declared = Declared(settings, owner.uid, owner.gid, token)
    image.chroma_image(
        name=f"Image {settings.image_ref} the archive was taken with",
        ref=settings.image_ref,
        version=settings.version,
        source=settings.image_source,
        build_dir=settings.image_build_dir,
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
    )
    stack.compose_file(
        name=f"{settings.compose_path} for Chroma {archive_version}, the archive's version",
        project_dir=settings.project_dir,
        content=declared.compose_content,
        uid=declared.uid,
        gid=declared.gid,
    )

keep = f" on Chroma {archive_version}: keep chroma_version={archive_version}"
restored = data_safety.restore(
    name=f"Restore {archive} into {settings.path(settings.data_dir)}"
    + (keep if archive_version else ""),
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
)
report.show(restored)  # what was restored, where the data before it went
