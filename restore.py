"""Restore a backup: `pyinfra INVENTORY restore.py --data chroma_restore_archive=/path.tar.gz`.

The current data dir is moved aside (never deleted), the archive's checksum
is checked first, and the restored counts and ids are verified against the
backup's manifest. Running it again with the same archive changes nothing.
"""

import sys
from pathlib import Path

# pyinfra puts only the working dir on sys.path: make `pyinfra @local /path/to/restore.py`
# find facts/ and operations/ from any dir, ahead of any other module of that name.
ROOT = str(Path(__file__).resolve().parent)
if ROOT not in sys.path:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

from pyinfra import host  # noqa: E402

from operations import data_safety, preflight, report  # noqa: E402
from operations.declared import Declared  # noqa: E402
from operations.refusal import refusal  # noqa: E402

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

restored = data_safety.restore(
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
report.show(restored)  # what was restored, where the data before it went
