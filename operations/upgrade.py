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

from declaration.versions import (
    data_version_problem,
    data_written_by,
    deployed_version,
    migrates,
    spelled_levels,
)
from facts.datahomes import DataHomes, DataSchema, is_ours
from facts.project import ProjectFiles, SafetyState
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
    found = _deployed_and_data(project_dir, project_name, data_dir, version)
    if isinstance(found, str):
        yield fail_host(found)
        return
    old, levels = found
    if old and Version(version) < Version(old):
        yield fail_host(
            f"chroma_version: {version} is older than the {old} deployed, and Chroma "
            "migrates its data forward only; keep chroma_version=" + old + ", or restore an "
            f"archive taken with {version} (restore.py, from {backup_dir}): it brings back the "
            "version it was taken with"
        )
        return
    where = f"{project_dir}/{data_dir}"
    problem = data_version_problem(version, levels, where) if levels else None
    if problem:
        yield fail_host(
            f"{problem}, or restore an archive taken with {version} (restore.py, from {backup_dir})"
        )
        return
    migrating = migrates(version, levels) if levels else False
    if old and old != version:
        label = old  # the pinned version that has been serving the data
    elif migrating is True or (migrating is None and old is None):
        # The release that wrote the data, read from it: the compose file may be gone,
        # name an unpinned image (the seed's :latest), or name this version over data
        # that no server of it has opened yet (another data dir named, a hand-run server).
        label = data_written_by(levels or {}) or "unknown"
    else:
        host.noop(
            f"Chroma {version} is the version deployed"
            if old
            else f"Chroma {version} opens the data as it is (schema {spelled_levels(levels)})"
            if levels
            else "no data yet"
        )
        return
    old = label
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


def _deployed_and_data(
    project_dir: str, project_name: str, data_dir: str, version: str
) -> tuple[str | None, dict | None] | str:
    """The pinned version our compose file names, and the schema level of the data dir.

    The level is what says which release wrote the data (the compose file says only
    what was last declared, and may be gone, name an unpinned image, or name a
    version no server has opened this data with). It is read when the data dir holds
    a database, unless this project's Chroma of ``version`` is running on it (by
    inode): then that server has this data open already, and a no-op run costs no
    second command. A database that cannot be read is a refusal (a string), never
    a guess.
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    old = deployed_version(files["compose"]["content"]) if files["compose"] else None
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)
    if not state["data_has_sqlite"]:
        return old, None
    homes = host_state.read(DataHomes, data_dir=f"{project_dir}/{data_dir}")
    here = (homes["data_dir"] or {}).get("inode")
    served = any(
        is_ours(m, project_name) and m["state"] == "running" and here and m["inode"] == here
        for m in homes["mounts"]
    )
    if old == version and served:
        return old, None
    schema = host_state.read(DataSchema, data_dir=f"{project_dir}/{data_dir}")
    if schema["levels"] is None:
        return (
            f"chroma_version: cannot read which Chroma version wrote {project_dir}/{data_dir}"
            f"/chroma.sqlite3 ({schema['error'] or 'no migrations table'}); install python3 "
            "on the host, or check the file, then deploy again"
        )
    return old, schema["levels"]
