"""Backups, restores and the persistence proof: actions that guard the data.

Each stops Chroma only for as long as it must (Chroma is not safe for two
processes on one data dir) and verifies with the host-side tools
(plumbing/host_tools.py): collections per tenant and database, record
counts, and checksums of the ids and of every record's document and metadata.
Nothing here deletes data: a restore moves the current data dir aside, and
only backup pruning, when chroma_backup_keep asks for it, removes old backups
of this project (never the way back to before the current version).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import File

from declaration.targets import CheckServer
from declaration.versions import data_written_by, deployed_version, migrates, too_new_for
from facts.chroma import ChromaInventory
from facts.compose import VERDICT_RECORD
from facts.datahomes import DataSchema
from facts.project import ProjectFiles
from operations.host_failure import fail_host, refusing
from operations.schema import init_schema
from operations.stack import COMPOSE_FILE, compose_up
from plumbing import host_state
from plumbing.host_tools import (
    STATE_DIR,
    TOOLS_DIR,
    safety_command,
    upload_tools,
)


@operation(is_idempotent=False)
def persistence_proof(
    project_dir: str,
    project_name: str,
    url: str,
    token_file: str | None,
    wait_timeout: int,
    tls_dir: str | None = None,
):
    """Write a canary, ``down``, ``up --wait``, read it back, remove it: pass or fail.

    + project_dir: the project dir
    + project_name: the compose project name written in the file
    + url: where Chroma answers on the host
    + token_file: the auth proxy's token file, if any
    + wait_timeout: seconds for ``up --wait``
    + tls_dir: with chroma_tls on, the host's dir of the proxy's ca.pem and name,
      which verify the https url (files/chroma_inventory.py --tls-dir)
    """
    yield from upload_tools(project_dir)
    yield safety_command(
        "prove", ("--url", url), ("--token-file", token_file), ("--tls-dir", tls_dir),
        *stack_options(project_dir, project_name, wait_timeout),
    )  # fmt: skip


def inventory_tls(tls_dir: str | None) -> dict[str, str]:
    """ChromaInventory's tls_dir argument: given only with TLS on, as HealthCheck.read does."""
    return {"tls_dir": tls_dir} if tls_dir else {}


def stack_options(project_dir: str, project_name: str, wait_timeout: int) -> tuple:
    """The options a host tool that stops and starts the stack takes (chroma_safety.py)."""
    return (
        ("--project-dir", project_dir), ("--project-name", project_name),
        ("--compose-file", f"{project_dir}/{COMPOSE_FILE}"), ("--wait-timeout", wait_timeout),
        ("--verdict", f"{project_dir}/{VERDICT_RECORD}"),
    )  # fmt: skip


def backup_command(
    project_dir: str, project_name: str, data_dir: str, backup_dir: str, wait_timeout: int,
    version: str, *options: tuple[str, object],
) -> str:  # fmt: skip
    """Stop, archive and manifest the data dir, and start again: chroma_safety.py backup.

    The manifest (collections, counts, checksums, and the project and Chroma
    version it belongs to) is read from chroma.sqlite3 while the server is
    stopped, so it matches the archive exactly. ``options``: an upgrade's
    (``--no-restart``, ``--record``, ``--field``...; see files/chroma_safety.py).
    """
    return safety_command(
        "backup", *stack_options(project_dir, project_name, wait_timeout),
        ("--data-dir", data_dir), ("--backup-dir", backup_dir), ("--version", version),
        *options,
    )  # fmt: skip


@operation(is_idempotent=False)
def backup(
    project_dir: str,
    project_name: str,
    data_dir: str,
    backup_dir: str,
    keep: int,
    wait_timeout: int,
    version: str,
    stop_grace: int | None = None,
    no_restart: bool = False,
):
    """A consistent archive of the data dir, with a checksum and a manifest of counts.

    Chroma is stopped only while the manifest is read and tar reads the data dir.
    Refused while the project's .env sets a COMPOSE_ variable, which compose obeys
    over our ``-f`` (COMPOSE_PROJECT_NAME: ``stop`` would stop nothing).

    + project_dir, project_name: the project dir and compose project
    + data_dir: name of the bind-mounted data dir
    + backup_dir: where archives go; keep: newest archives to keep (0: all)
    + wait_timeout: seconds for ``up --wait`` after the archive is written
    + version: the declared chroma_version; the manifest records the release that
      wrote the data (data_version), this one only when nothing says which
    + stop_grace: chroma_stop_grace_seconds, for a stop without the compose file (its
      containers found by label); with the file, compose applies its stop_grace_period
    + no_restart: leave the stack stopped after a backup written and checksummed, for a
      next step that needs it stopped (maintain.py --apply: one stop for the backup and
      the repair, no write in between); a failed backup starts it again all the same.
      Its pruning is then left to :func:`prune_backups`, after that next step
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    if files["env_compose"]:
        # Our own `docker compose -f` obeys it as well: `stop` would stop another project.
        yield fail_host(
            f"chroma_project_dir: {project_dir}/.env sets {files['env_compose'][0]}, which "
            f"docker compose obeys over {project_dir}/{COMPOSE_FILE} (even with -f: the backup "
            "would stop another project and archive a live database); remove that line "
            "(chroma-deploy never edits your .env), then run again"
        )
        return
    written_by = data_version(project_dir, data_dir) or version
    yield from upload_tools(project_dir)
    yield backup_command(
        project_dir, project_name, data_dir, backup_dir, wait_timeout, written_by,
        ("--stop-grace", stop_grace), ("--no-restart", no_restart),
    )  # fmt: skip
    if keep and not no_restart:  # else the caller prunes after its next step (prune_backups)
        yield prune_command(backup_dir, project_name, keep, written_by)


def prune_command(backup_dir: str, project_name: str, keep: int, version: str) -> str:
    # The one deletion chroma-deploy does, and only when chroma_backup_keep asks.
    return safety_command(
        "prune", ("--dir", backup_dir), ("--project", project_name), ("--keep", keep),
        ("--version", version),
    )  # fmt: skip


@operation(is_idempotent=False)
def prune_backups(project_dir: str, project_name: str, data_dir: str, backup_dir: str,
                  keep: int, version: str):  # fmt: skip
    """A ``no_restart`` backup's pruning, once the stack it left stopped serves again.

    Apart from the backup so that a failed prune never leaves the stack stopped.

    + project_dir, project_name, data_dir, backup_dir, keep, version: as :func:`backup`'s
    """
    if keep:
        yield from upload_tools(project_dir)
        written_by = data_version(project_dir, data_dir) or version
        yield prune_command(backup_dir, project_name, keep, written_by)


def data_version(project_dir: str, data_dir: str) -> str | None:
    """The release that wrote the data: what restore.py will start on an archive of it.

    The compose file's pinned version when the data's schema level fits it (a server
    of that version has been serving the data), else the release the level says wrote
    it (declaration.versions): a compose file that names another version than the one
    that wrote the data (removed and put back by hand, an unpinned image) never labels
    an archive that a restore would then open with the wrong server. None: no data and
    no pinned version.
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    deployed = deployed_version(files["compose"]["content"]) if files["compose"] else None
    levels = host_state.read(DataSchema, data_dir=f"{project_dir}/{data_dir}")["levels"]
    if not levels or (
        deployed and not too_new_for(deployed, levels) and not migrates(deployed, levels)
    ):
        return deployed
    return data_written_by(levels) or deployed


def restore_marker(project_dir: str, archive: str) -> str:
    return f"{project_dir}/{STATE_DIR}/restored-{Path(archive).name}"


def archive_problem(archive: str, found: dict, data_dir: str) -> tuple[dict | None, str | None]:
    """The archive's manifest, and why it cannot be restored here (one refusal line) or None.

    Every check of the archive is made from ``found`` (facts.archive.BackupArchive)
    while pyinfra prepares the host, so a refused restore stops nothing and
    writes nothing: not the compose file of the version it names either.
    """
    stem = archive.removesuffix(".tar.gz")
    done = "nothing was changed"
    if not found["archive"]:
        return None, (f"chroma_restore_archive: no archive at {archive}: {done}; name a .tar.gz "
                      "that backup.py wrote (a path on the host)")  # fmt: skip
    missing = [s for s, there in ((".sha256", found["sha256"]), (".json", found["manifest"]))
               if there is None]  # fmt: skip
    if missing:
        return None, (
            f"chroma_restore_archive: {archive} has no {' or '.join(missing)} beside it (backup.py "
            f"writes both): {done}; put them beside the archive, or name another archive"
        )
    if found["sha256"] != "match":
        return None, (
            f"chroma_restore_archive: {archive} does not match its .sha256 (damaged, or changed "
            f"since backup.py wrote it): {done}; name another archive, or copy this one again "
            "from where it is kept"
        )
    if not found["listed"]:
        return None, (f"chroma_restore_archive: {archive} matches its .sha256 but tar cannot read "
                      f"it to its end: {done}; name another archive")  # fmt: skip
    try:
        manifest = json.loads(found["manifest"])
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("collections"), dict):
        return None, (
            f"chroma_restore_archive: {stem}.json is not the manifest backup.py writes (no "
            f"collections in it): {done}; put that manifest beside the archive, or name another "
            "archive"
        )
    if found["top"] != [data_dir]:
        held = ", ".join(f"{name}/" for name in found["top"]) or "no dir"
        return manifest, (
            f"chroma_restore_archive: {archive} holds {held}, not {data_dir}/ (an archive of "
            f"another project: its manifest names {manifest.get('project') or 'no project'}): "
            f"{done}; name an archive backup.py wrote of this project's data dir"
        )
    return manifest, None


def compose_switch(project_dir: str, compose_content: str, switch: str, uid: int, gid: int):
    """The compose file of a backup's version, uploaded beside the live one and checked.

    The restore's host tool renames it over the live file right after the data it reads.
    """
    q = shlex.quote
    live = f"{project_dir}/{COMPOSE_FILE}"
    check = ["docker", "compose", "--project-directory", project_dir, "-f", switch, "config",
             "--quiet"]  # fmt: skip
    rejected = f"the compose file for the archive's version was rejected by docker compose; {live} was left as it was"  # noqa: E501
    yield FileUploadCommand(StringIO(compose_content), switch)
    yield (
        f"{shlex.join(check)} || {{ rm -f {q(switch)}; echo {q(rejected)} >&2; exit 1; }}; "
        f"chown {uid}:{gid} {q(switch)} && chmod 640 {q(switch)}"
    )


@operation()
def restore(
    project_dir: str,
    project_name: str,
    data_dir: str,
    archive: str,
    uid: int,
    gid: int,
    mode: str,
    url: str,
    token_file: str | None,
    wait_timeout: int,
    compose_content: str | None = None,
    tls_dir: str | None = None,
    schema_server: CheckServer | None = None,
):
    """Restore ``archive`` into the data dir, after moving the current data aside.

    The archive was checked before (archive_problem); the disk must have room.
    Extracts into a staging dir that replaces the data dir by rename (a pending
    record first, so a killed run is never taken for an empty server); verifies
    the restored server against the backup's manifest. A compose file for the
    archive's version is checked by compose first and put in place only right
    after the data it can read, never before: a restore that stops early leaves
    the stack on its own version, running if it ran. Nothing to do when this
    archive was restored and the server still holds exactly what its manifest
    says (on the version it was taken with).

    + project_dir, data_dir: the project dir and the name of its data dir
    + project_name: the compose project name written in the file
    + archive: a .tar.gz written by backup.py (its .sha256 and .json beside it)
    + uid, gid, mode: owner and mode of the restored data dir
    + url, token_file: where Chroma answers, and its token file
    + wait_timeout: seconds for ``up --wait``
    + compose_content: the compose file for the archive's version, when the
      deployed one is another version; None keeps the compose file
    + tls_dir: with chroma_tls on, the host's dir of the proxy's ca.pem and name,
      which verify the https url (files/chroma_inventory.py --tls-dir)
    + schema_server: when the stack's server validates its schema (1.x), that version as a
      check starts it (``apply``): the restored data gets its migrations before ``up``
      (files/chroma_safety.py init-schema --restored), since an archive's data may be
      behind the version it is labelled with
    """
    stem = archive.removesuffix(".tar.gz")
    marker = restore_marker(project_dir, archive)
    live = f"{project_dir}/{COMPOSE_FILE}"
    switch = None
    if compose_content is not None:
        files = host_state.read(ProjectFiles, project_dir=project_dir)
        wanted = hashlib.sha256(compose_content.encode()).hexdigest()
        if not files["compose"] or files["compose"]["sha256"] != wanted:
            switch = f"{live}.chroma-deploy.restore"
    if switch is None and host_state.read(File, path=marker):
        found = host_state.read(
            ChromaInventory, url=url, tools_dir=TOOLS_DIR, token_file=token_file,
            manifest=f"{stem}.json", **inventory_tls(tls_dir),
        )  # fmt: skip
        live_inventory, manifest = found["live"], found["manifest"]
        if live_inventory and manifest and live_inventory["collections"] == manifest["collections"]:
            host.noop(f"{archive} was restored and the server still holds what it held")
            return
    yield from upload_tools(project_dir)
    pending = f"{project_dir}/{STATE_DIR}/restore-pending.json"
    # Its refusal, and an archive tar cannot unpack, are one line (host_failure.refusing).
    yield refusing(safety_command("space", ("--source", archive), ("--target", project_dir),
                                  ("--factor", 4)))  # fmt: skip
    if switch and compose_content is not None:
        yield from compose_switch(project_dir, compose_content, switch, uid, gid)
    # Stop, unpack beside the data dir, switch by rename (the old data aside, a
    # pending record first), then the compose file for the archive's version, if any.
    # Its refusal, and an archive tar cannot unpack, are one line (host_failure.refusing).
    yield refusing(safety_command(
        "restore", *stack_options(project_dir, project_name, wait_timeout),
        ("--archive", archive), ("--data-dir", data_dir), ("--uid", uid), ("--gid", gid),
        ("--mode", mode), ("--pending", pending), ("--switch", switch),
    ), show_output=True)  # fmt: skip
    if schema_server:
        yield init_schema(f"{project_dir}/{data_dir}", schema_server, restored=True)
    yield compose_up(project_dir, project_name, wait_timeout)
    yield safety_command(
        "restored", ("--manifest", f"{stem}.json"), ("--url", url), ("--token-file", token_file),
        ("--tls-dir", tls_dir),
        ("--marker", marker), ("--pending", pending), ("--archive", archive),
        ("--target", f"{project_dir}/{data_dir}"),
    )  # fmt: skip
