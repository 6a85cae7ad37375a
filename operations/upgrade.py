"""A change of chroma_version: backed up first, verified after, never downgraded.

Chroma migrates its SQLite schema forward the first time a newer server opens
it, one way. So before the compose file names a newer image, the deploy takes
a backup (the only way back), and after the stack is up verify_migration
checks the new server shows the same collections, counts and ids. Across
0.6 -> 1.x the data dir on the host stays; only the mount target moves
(/chroma/chroma -> /data), which the template derives from the version.
"""

from __future__ import annotations

import json
import shlex

from packaging.version import Version
from pyinfra import host
from pyinfra.api import operation

from declaration.versions import deployed_version
from facts.project import ProjectFiles
from operations import host_state
from operations.data_safety import backup_commands
from operations.host_failure import fail_host
from operations.host_tools import STATE_DIR, pending_record, safety_command
from operations.stack import COMPOSE_FILE


@operation()
def version_change(
    project_dir: str,
    project_name: str,
    data_dir: str,
    version: str,
    backup_dir: str,
    wait_timeout: int,
    rehearsal: dict | None = None,
):
    """Back up before moving to a newer Chroma; refuse to move to an older one.

    With ``rehearsal``, the new image is first started on a copy of the data in a
    throwaway container and must show what the backup's manifest says; on a
    mismatch or a failed start the old stack runs again and the host fails
    (files/chroma_safety.py rehearse). The live data dir is never switched then.

    + project_dir, project_name: the project dir and compose project
    + data_dir: name of the data dir
    + version: the declared chroma_version
    + backup_dir: where the pre-upgrade backup goes
    + wait_timeout: seconds for ``up --wait`` after the backup
    + rehearsal: ``{"image", "persist_path", "environment": ["NAME=value"], "uid", "gid"}``
      of the new version (chroma_upgrade_rehearsal), or None to skip it
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    old = deployed_version(files["compose"]["content"]) if files["compose"] else None
    if old is None or old == version:
        host.noop(f"Chroma {version} is the version deployed" if old else "nothing deployed yet")
        return
    if Version(version) < Version(old):
        yield fail_host(
            f"chroma_version: {version} is older than the {old} deployed, and Chroma "
            "migrates its data forward only; keep chroma_version=" + old + ", or restore an "
            f"archive taken with {version} (restore.py, from {backup_dir}): it brings back the "
            "version it was taken with"
        )
        return
    fields = ", ".join(
        f"{json.dumps(key)}: {json.dumps(value)}"
        for key, value in (("kind", "upgrade"), ("subject", old), ("from", old), ("to", version))
    )
    # The stack stays stopped from the manifest to the switch: stack_up starts the
    # new version, so no write can land after the backup was taken.
    *tool, backup = backup_commands(
        project_dir, project_name, data_dir, backup_dir, wait_timeout, version=old,
        label=f"-before-{version}", before_version=version, restart=False,
        record=pending_record(project_dir, "upgrade"), record_fields=fields,
    )  # fmt: skip
    sqlite = shlex.quote(f"{project_dir}/{data_dir}/chroma.sqlite3")
    state = shlex.quote(pending_record(project_dir).rsplit("/", 1)[0])
    yield from tool
    no_backup = shlex.join(["echo", f"no data yet: Chroma {old} -> {version} needs no backup"])
    yield f"mkdir -p {state}; if [ -f {sqlite} ]; then ( {backup} ); else {no_backup}; fi"
    if rehearsal:
        record = pending_record(project_dir, "upgrade")
        rehearse = safety_command(
            "rehearse", ("--record", record), ("--data-dir", f"{project_dir}/{data_dir}"),
            ("--image", rehearsal["image"]), ("--persist-path", rehearsal["persist_path"]),
            ("--work-dir", f"{project_dir}/{STATE_DIR}/rehearsal"),
            ("--uid", rehearsal["uid"]), ("--gid", rehearsal["gid"]),
            ("--timeout", wait_timeout), ("--env", rehearsal["environment"]),
            ("--compose-file", f"{project_dir}/{COMPOSE_FILE}"), ("--project-dir", project_dir),
        )  # fmt: skip
        yield f"if [ -f {shlex.quote(record)} ]; then {rehearse}; fi"
