"""Back up the data dir of each host: `pyinfra INVENTORY backup.py`.

Chroma is stopped only while tar reads the data dir; the archive gets a
.sha256 and a .json manifest of collections, counts and id checksums that
restore.py verifies against. Archives go to chroma_backup_dir.
"""

from operations import data_safety, preflight
from operations.declared import Declared

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)
declared = Declared(settings, owner.uid, owner.gid)

data_safety.backup(
    name=f"Back up {settings.path(settings.data_dir)} to {settings.backup_dir}",
    project_dir=settings.project_dir,
    project_name=settings.compose_project,
    data_dir=settings.data_dir,
    backup_dir=settings.backup_dir,
    keep=settings.backup_keep,
    url=declared.url,
    token_file=declared.token_file,
    wait_timeout=settings.wait_timeout,
)
