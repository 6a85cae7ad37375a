"""Prove that data survives `docker compose down`: `pyinfra INVENTORY prove.py`.

Writes a canary collection, takes the stack down and up again, reads the
canary back and removes it. Each host passes (success) or fails with the
reason: the seed's manual "Testing Data Persistence", made automatic.

`--data chroma_restore_drill=true` runs the restore drill instead: the latest
snapshot of the off-host repository restored into a throwaway dir and server on
the host, checked against its manifest and removed; the live stack is not
touched (deploys/offsite_restore.py, docs/offsite-backups.md). pyinfra's command
line takes no options of a deploy file's own, hence a data key, not `--drill`.
"""

import sys
from pathlib import Path

# pyinfra puts the working dir on sys.path: put this dir first, so that
# `pyinfra @local /path/to/prove.py` finds facts/ and operations/ here from any dir, ahead of
# any other module of that name (the working dir's, PYTHONPATH's), also when this dir is
# the working dir. Not an installed package: docs/testing.md says why.
ROOT = str(Path(__file__).resolve().parent)
if sys.path[:1] != [ROOT]:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

if __name__ == "__main__":  # `python prove.py`: not a pyinfra run (pyinfra runs it unnamed)
    from plumbing.version import not_under_pyinfra

    not_under_pyinfra("prove.py", sys.argv[1:])

from declaration.resources import Declared  # noqa: E402
from deploys.backup_run import safety_guard  # noqa: E402
from deploys.offsite_restore import restore_drill  # noqa: E402
from operations import data_safety  # noqa: E402
from plumbing import preflight, report  # noqa: E402

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)

preflight.hold_project_lock(settings, "prove.py")
if settings.restore_drill:
    restore_drill(settings, owner)
else:
    declared = Declared(settings, owner.uid, owner.gid)
    preflight.require_stack_as_declared(declared, "prove.py")
    # What blocks deploy.py and backup.py blocks the proof's `down` and `up` too.
    safety_guard(declared)
    proof = data_safety.persistence_proof(
        name=f"Persistence proof of {settings.compose_project}: canary, down, up, read back",
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        url=declared.url,
        token_file=declared.token_file,
        wait_timeout=settings.wait_timeout,
        tls_dir=declared.tls_dir,
    )
    report.show(proof)  # "persistence proof: pass"
