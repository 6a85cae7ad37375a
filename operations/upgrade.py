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
    SCHEMA_LEVELS,
    data_written_by,
    deployed_version,
    migrates,
    too_new_for,
)
from facts.datahomes import DataSchema
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
    found = _deployed_and_data(project_dir, data_dir, version)
    if isinstance(found, str):
        yield fail_host(found)
        return
    old, levels = found
    writer = data_written_by(levels) if levels else None
    if levels and too_new_for(version, levels):
        yield fail_host(
            f"chroma_version: the data in {project_dir}/{data_dir} was written by Chroma "
            f"{writer or 'newer than ' + max(SCHEMA_LEVELS, key=Version)} (its schema: "
            f"{_spelled(levels)}), newer than {version}, and Chroma migrates its data forward "
            f"only; set chroma_version={writer or 'to that release'}, or restore an archive "
            f"taken with {version} (restore.py, from {backup_dir})"
        )
        return
    if old and Version(version) < Version(old):
        yield fail_host(
            f"chroma_version: {version} is older than the {old} deployed, and Chroma "
            "migrates its data forward only; keep chroma_version=" + old + ", or restore an "
            f"archive taken with {version} (restore.py, from {backup_dir}): it brings back the "
            "version it was taken with"
        )
        return
    if old == version or (old is None and not (levels and migrates(version, levels) is not False)):
        host.noop(
            f"Chroma {version} is the version deployed"
            if old
            else f"Chroma {version} opens the data as it is (schema {_spelled(levels)})"
            if levels
            else "no data yet"
        )
        return
    # The release that wrote the data, read from it: the compose file may be gone, or
    # name an unpinned image (the seed's :latest) whose release nobody recorded.
    old = old or writer or "unknown"
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
    project_dir: str, data_dir: str, version: str
) -> tuple[str | None, dict | None] | str:
    """The pinned version our compose file names, and the schema level of the data dir.

    The level is what says which release wrote the data (the compose file says only
    what was last declared, and may be gone or name an unpinned image). It is read
    when the data dir holds a database and the file does not name ``version``
    already: a server of that version has been serving this data, so a no-op run
    costs no second command. A database that cannot be read is a refusal (a
    string), never a guess.
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    old = deployed_version(files["compose"]["content"]) if files["compose"] else None
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)
    if old == version or not state["data_has_sqlite"]:
        return old, None
    schema = host_state.read(DataSchema, data_dir=f"{project_dir}/{data_dir}")
    if schema["levels"] is None:
        return (
            f"chroma_version: cannot read which Chroma version wrote {project_dir}/{data_dir}"
            f"/chroma.sqlite3 ({schema['error'] or 'no migrations table'}); install python3 "
            "on the host, or check the file, then deploy again"
        )
    return old, schema["levels"]


def _spelled(levels: dict[str, int] | None) -> str:
    return ", ".join(f"{name} {level}" for name, level in sorted((levels or {}).items()))
