"""Restore a backup: `pyinfra INVENTORY restore.py --data chroma_restore_archive=/path.tar.gz`.

The current data dir is moved aside (never deleted), the archive's checksum
is checked first, and the restored counts and ids are verified against the
backup's manifest. Running it again with the same archive changes nothing.
"""

from pyinfra import host

from operations import data_safety, preflight
from operations.declared import Declared
from operations.refusal import refusal

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)
declared = Declared(settings, owner.uid, owner.gid)

if not settings.restore_archive:
    raise refusal(
        host.name,
        "chroma_restore_archive: unset, and restore.py needs it; name the .tar.gz that "
        "backup.py wrote, e.g. "
        "--data chroma_restore_archive=/var/backups/chroma-deploy/chroma-20260101T000000Z.tar.gz",
    )

data_safety.restore(
    name=f"Restore {settings.restore_archive} into {settings.path(settings.data_dir)}",
    project_dir=settings.project_dir,
    data_dir=settings.data_dir,
    archive=settings.restore_archive,
    uid=declared.uid,
    gid=declared.gid,
    mode=settings.data_dir_mode,
    url=declared.url,
    token_file=declared.token_file,
    wait_timeout=settings.wait_timeout,
)
