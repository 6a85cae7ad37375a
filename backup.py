"""Back up the data dir of each host: `pyinfra INVENTORY backup.py`.

Chroma is stopped only while the manifest (collections, counts, id checksums,
read from chroma.sqlite3) is taken and tar reads the data dir; the archive gets
a .sha256 and that .json manifest, which restore.py verifies against.
Archives go to chroma_backup_dir. With chroma_backup_repository set, the backup
is a restic snapshot instead (files/chroma_offsite.py, the program the host's
schedule runs): Chroma stops only for a local copy, uploaded while it serves.
"""

import sys
from pathlib import Path

# pyinfra puts the working dir on sys.path: put this dir first, so that
# `pyinfra @local /path/to/backup.py` finds facts/ and operations/ here from any dir, ahead of
# any other module of that name (the working dir's, PYTHONPATH's), also when this dir is
# the working dir. Not an installed package: docs/testing.md says why.
ROOT = str(Path(__file__).resolve().parent)
if sys.path[:1] != [ROOT]:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

if __name__ == "__main__":  # `python backup.py`: not a pyinfra run (pyinfra runs it unnamed)
    from plumbing.version import not_under_pyinfra

    not_under_pyinfra("backup.py", sys.argv[1:])

from declaration.resources import Declared  # noqa: E402
from deploys.backup_run import guarded_backup  # noqa: E402
from plumbing import preflight, report  # noqa: E402

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)

preflight.hold_project_lock(settings, "backup.py")

declared = Declared(settings, owner.uid, owner.gid)
preflight.require_opened_dir_in_place(declared, "backup.py")
backup = guarded_backup(declared)
report.show(backup)  # where the archive (or the snapshot) went; what was pruned
