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

from declaration.versions import data_written_by, deployed_version, migrates, too_new_for
from facts.chroma import ChromaInventory
from facts.datahomes import DataSchema
from facts.project import ProjectFiles
from operations.host_failure import fail_host, refusing
from operations.stack import COMPOSE_FILE, compose_command, compose_up
from plumbing import host_state
from plumbing.host_tools import (
    STATE_DIR,
    TOOLS_DIR,
    inventory_command,
    safety_command,
    upload_tools,
)


@operation(is_idempotent=False)
def persistence_proof(
    project_dir: str, project_name: str, url: str, token_file: str | None, wait_timeout: int
):
    """Write a canary, ``down``, ``up --wait``, read it back, remove it: pass or fail.

    + project_dir: the project dir
    + project_name: the compose project name written in the file
    + url: where Chroma answers on the host
    + token_file: the auth proxy's token file, if any
    + wait_timeout: seconds for ``up --wait``
    """
    yield from upload_tools(project_dir)
    name = "chroma-deploy-canary"
    canary = [inventory_command(url, token_file, "--canary", action, name)
              for action in ("write", "read", "delete")]  # fmt: skip
    up = compose_up(project_dir, project_name, wait_timeout)
    yield (
        f"{canary[0]} >/dev/null && {compose_command(project_dir, 'down')} "
        f"&& {up} && found=$({canary[1]}); {canary[2]} >/dev/null; "
        'if [ "$found" = \'{"canary": "present"}\' ]; then echo "persistence proof: pass"; '
        'else echo "persistence proof: FAIL: the canary did not survive down/up" >&2; exit 1; fi'
    )


def backup_commands(
    project_dir: str, project_name: str, data_dir: str, backup_dir: str, wait_timeout: int,
    version: str, label: str = "", before_version: str | None = None, restart: bool = True,
    record: str | None = None, record_fields: str = "",
) -> list:  # fmt: skip
    """Stop, archive and manifest the data dir (and start again unless ``restart`` is False).

    The manifest (collections, counts, checksums, and the project and Chroma
    version it belongs to) is read from a copy of chroma.sqlite3 while the
    server is stopped, so it matches the archive exactly. An upgrade keeps the
    stack stopped from the manifest to the switch, so no write can land in
    between. With ``record``, a pending-verification record (``record_fields``
    plus the backup's path and manifest) is written there for verify_migration.
    """
    directory = shlex.quote(backup_dir)
    stem = f'{shlex.quote(backup_dir)}/{shlex.quote(project_name)}-"$stamp"{shlex.quote(label)}'
    # --out comes last, outside shlex.join: the stem holds the shell's "$stamp".
    read = safety_command(
        "manifest", ("--sqlite", f"{project_dir}/{data_dir}/chroma.sqlite3"),
        ("--project", project_name), ("--version", version), ("--before-version", before_version),
    )  # fmt: skip
    manifest = f"{read} --out {stem}.json.tmp"
    # The compose file may be gone (removed by hand, or a takeover whose data says it
    # must be upgraded): the project's containers are then stopped, and started again
    # on a failure, by their compose label, as compose itself finds them.
    compose_file = shlex.quote(f"{project_dir}/{COMPOSE_FILE}")
    label_filter = shlex.quote(f"label=com.docker.compose.project={project_name}")
    stop = (
        f"if [ -f {compose_file} ]; then {compose_command(project_dir, 'stop')}; else "
        f"ids=$(docker ps -q --no-trunc --filter {label_filter}); "
        '[ -z "$ids" ] || docker stop $ids >/dev/null; fi'
    )
    up = (
        f"if [ -f {compose_file} ]; then {compose_up(project_dir, project_name, wait_timeout)}; "
        'else [ -z "${ids:-}" ] || docker start $ids >/dev/null; fi'
    )
    start_again = f"{up}; " if restart else ""
    return [
        *upload_tools(project_dir),
        f"set -e; umask 077; mkdir -p {directory}; chmod 700 {directory}; "
        "stamp=$(date -u +%Y%m%dT%H%M%SZ); "
        f"{safety_command('space', ('--source', f'{project_dir}/{data_dir}'), ('--target', backup_dir))}; "  # noqa: E501
        f"{stop}; "
        f"if ! {{ {manifest} "
        f"&& tar -C {shlex.quote(project_dir)} -czf {stem}.tar.gz.tmp {shlex.quote(data_dir)}; }}; "
        f"then {up}; echo 'the backup failed; the stack was started again' >&2; exit 1; fi; "
        f"{start_again}"
        f"mv {stem}.tar.gz.tmp {stem}.tar.gz; mv {stem}.json.tmp {stem}.json; "
        f'(cd {directory} && sha256sum "$(basename {stem}.tar.gz)" > "$(basename {stem}.sha256)"); '
        f'echo "backup written: $(ls {stem}.tar.gz)"'
        + (
            f'; printf \'{{%s, "backup": "%s", "before": %s}}\\n\' '
            f'{shlex.quote(record_fields)} "$(ls {stem}.tar.gz)" "$(cat {stem}.json)" '
            f"> {shlex.quote(record)}.tmp; "
            f"mv {shlex.quote(record)}.tmp {shlex.quote(record)}"
            if record
            else ""
        ),
    ]


@operation(is_idempotent=False)
def backup(
    project_dir: str,
    project_name: str,
    data_dir: str,
    backup_dir: str,
    keep: int,
    wait_timeout: int,
    version: str,
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
    yield from backup_commands(
        project_dir, project_name, data_dir, backup_dir, wait_timeout, written_by
    )
    if keep:
        # The one deletion chroma-deploy does, and only when chroma_backup_keep asks.
        yield safety_command(
            "prune", ("--dir", backup_dir), ("--project", project_name), ("--keep", keep),
            ("--version", written_by),
        )  # fmt: skip


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
            manifest=f"{stem}.json",
        )  # fmt: skip
        live_inventory, manifest = found["live"], found["manifest"]
        if live_inventory and manifest and live_inventory["collections"] == manifest["collections"]:
            host.noop(f"{archive} was restored and the server still holds what it held")
            return
    yield from upload_tools(project_dir)
    target = f"{project_dir}/{data_dir}"
    staging = f"{project_dir}/.{data_dir}.restore-staging"
    pending = f"{project_dir}/{STATE_DIR}/restore-pending.json"
    q = shlex.quote
    # Its refusal, and an archive tar cannot unpack, are one line (host_failure.refusing).
    yield refusing(safety_command("space", ("--source", archive), ("--target", project_dir),
                                  ("--factor", 4)))  # fmt: skip
    if switch and compose_content is not None:
        check = ["docker", "compose", "--project-directory", project_dir, "-f", switch, "config",
                 "--quiet"]  # fmt: skip
        rejected = f"the compose file for the archive's version was rejected by docker compose; {live} was left as it was"  # noqa: E501
        yield FileUploadCommand(StringIO(compose_content), switch)
        yield (
            f"{shlex.join(check)} || {{ rm -f {q(switch)}; echo {q(rejected)} >&2; exit 1; }}; "
            f"chown {uid}:{gid} {q(switch)} && chmod 640 {q(switch)}"
        )
    up = compose_up(project_dir, project_name, wait_timeout)
    running = compose_command(project_dir, "ps", "--quiet", "--status", "running")
    unpacked = f"{archive} could not be unpacked into {staging}: nothing was changed"
    yield refusing(
        # The pid keeps two restores within one second from sharing an aside dir.
        "set -e; stamp=$(date -u +%Y%m%dT%H%M%SZ)-$$; "
        f"mkdir -p {q(project_dir + '/' + STATE_DIR)}; running=$({running}); "
        f"{compose_command(project_dir, 'stop')}; "
        # Our own half extraction, never user data, is removed before and on failure;
        # the stack is started again only if it ran.
        f"if ! {{ rm -rf {q(staging)} && mkdir -p {q(staging)} "
        f"&& tar -C {q(staging)} -xzf {q(archive)} && test -d {q(staging + '/' + data_dir)} "
        f"&& chown -R {uid}:{gid} {q(staging + '/' + data_dir)} "
        f"&& chmod {q(mode)} {q(staging + '/' + data_dir)}; }}; "
        f"then rm -rf {q(staging)}{' ' + q(switch) if switch else ''}; "
        f'if [ -n "$running" ]; then {up}; fi; echo {q(unpacked)} >&2; exit 1; fi; '
        f'aside={q(target)}.before-restore-"$stamp"; '
        f'printf \'{{"archive": "%s", "aside": "%s"}}\\n\' {q(archive)} "$aside" > {q(pending)}; '
        f'if [ -e {q(target)} ]; then mv {q(target)} "$aside"; fi; '
        f"mv {q(staging + '/' + data_dir)} {q(target)}; "
        # The version that reads the restored data, never before that data is in place.
        + (f"mv -f {q(switch)} {q(live)}; " if switch else "")
        + f"rmdir {q(staging)}; "
        'echo "the data before the restore is in $aside"',
        show_output=True,
    )
    yield up
    yield (
        f"{safety_command('compare', ('--manifest', stem + '.json'), ('--url', url), ('--token-file', token_file))}"  # noqa: E501
        f" || {{ echo {q('restored data does not match the backup manifest; the data before the restore is kept beside ' + target)} >&2; exit 1; }}; "  # noqa: E501
        f"touch {q(marker)}; rm -f {q(pending)}; echo {q(f'restored {archive}: verified against its manifest')}"  # noqa: E501
    )
