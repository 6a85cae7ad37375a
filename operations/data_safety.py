"""Backups, restores and the persistence proof: actions that guard the data.

Each stops Chroma only for as long as it must (Chroma is not safe for two
processes on one data dir) and verifies with the host-side tools
(operations/host_tools.py): collections per tenant and database, record
counts, and checksums of the ids and of every record's document and metadata.
Nothing here deletes data: a restore moves the current data dir aside, and
only backup pruning, when chroma_backup_keep asks for it, removes old backups
of this project (never the way back to before the current version).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import File

from declaration.versions import deployed_version
from facts.chroma import ChromaInventory
from facts.project import ProjectFiles
from operations import host_state
from operations.host_failure import fail_host
from operations.host_tools import (
    STATE_DIR,
    TOOLS_DIR,
    inventory_command,
    safety_command,
    upload_tools,
)
from operations.stack import COMPOSE_FILE, compose_command, compose_up


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
    up = compose_up(project_dir, project_name, wait_timeout)
    start_again = f"{up}; " if restart else ""
    return [
        *upload_tools(project_dir),
        f"set -e; umask 077; mkdir -p {directory}; chmod 700 {directory}; "
        "stamp=$(date -u +%Y%m%dT%H%M%SZ); "
        f"{safety_command('space', ('--source', f'{project_dir}/{data_dir}'), ('--target', backup_dir))}; "  # noqa: E501
        f"{compose_command(project_dir, 'stop')}; "
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
    + version: the declared chroma_version; the manifest records the version the
      compose file runs (the one the data was written by), this one only without a file
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
    deployed = deployed_version(files["compose"]["content"]) if files["compose"] else None
    yield from backup_commands(
        project_dir, project_name, data_dir, backup_dir, wait_timeout, deployed or version
    )
    if keep:
        # The one deletion chroma-deploy does, and only when chroma_backup_keep asks.
        yield safety_command(
            "prune", ("--dir", backup_dir), ("--project", project_name), ("--keep", keep),
            ("--version", deployed or version),
        )  # fmt: skip


def restore_marker(project_dir: str, archive: str) -> str:
    return f"{project_dir}/{STATE_DIR}/restored-{Path(archive).name}"


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
):
    """Restore ``archive`` into the data dir, after moving the current data aside.

    Checks that the archive is there and matches its checksum first, and that
    the disk has room; extracts into a staging dir that replaces the data dir
    by rename (a pending record first, so a killed run is never taken for an
    empty server); verifies the restored server against the backup's manifest.
    Nothing to do when this archive was restored and the server still holds
    exactly what its manifest says.

    + project_dir, data_dir: the project dir and the name of its data dir
    + project_name: the compose project name written in the file
    + archive: a .tar.gz written by backup.py (its .sha256 and .json beside it)
    + uid, gid, mode: owner and mode of the restored data dir
    + url, token_file: where Chroma answers, and its token file
    + wait_timeout: seconds for ``up --wait``
    """
    stem = archive.removesuffix(".tar.gz")
    marker = restore_marker(project_dir, archive)
    if host_state.read(File, path=marker):
        found = host_state.read(
            ChromaInventory, url=url, tools_dir=TOOLS_DIR, token_file=token_file,
            manifest=f"{stem}.json",
        )  # fmt: skip
        live, manifest = found["live"], found["manifest"]
        if live and manifest and live["collections"] == manifest["collections"]:
            host.noop(f"{archive} was restored and the server still holds what it held")
            return
    yield from upload_tools(project_dir)
    target = f"{project_dir}/{data_dir}"
    staging = f"{project_dir}/.{data_dir}.restore-staging"
    pending = f"{project_dir}/{STATE_DIR}/restore-pending.json"
    q = shlex.quote
    yield (
        f"test -f {q(archive)} || {{ echo {q(f'no archive at {archive}: nothing was changed')} >&2;"
        " exit 1; }; "
        f"test -f {q(stem + '.sha256')} && test -f {q(stem + '.json')} || {{ echo "
        f"{q(f'{archive} has no .sha256 or .json beside it (backup.py writes both): nothing was changed')}"  # noqa: E501
        " >&2; exit 1; }"
    )
    yield (
        f"cd {q(str(Path(archive).parent))} && "
        f"sha256sum -c --quiet {q(Path(stem).name + '.sha256')}"
        " || { echo 'the archive does not match its .sha256: nothing was changed' >&2; exit 1; }"
    )
    yield safety_command("space", ("--source", archive), ("--target", project_dir),
                         ("--factor", 4))  # fmt: skip
    yield (
        # The pid keeps two restores within one second from sharing an aside dir.
        "set -e; stamp=$(date -u +%Y%m%dT%H%M%SZ)-$$; "
        f"mkdir -p {q(project_dir + '/' + STATE_DIR)}; "
        f"{compose_command(project_dir, 'stop')}; "
        f"rm -rf {q(staging)}; mkdir -p {q(staging)}; "  # our own half extraction, never user data
        f"tar -C {q(staging)} -xzf {q(archive)}; "
        f"test -d {q(staging + '/' + data_dir)} || {{ echo "
        f"{q(f'the archive holds no {data_dir}/: nothing was changed')} >&2; exit 1; }}; "
        f"chown -R {uid}:{gid} {q(staging + '/' + data_dir)}; "
        f"chmod {q(mode)} {q(staging + '/' + data_dir)}; "
        f'aside={q(target)}.before-restore-"$stamp"; '
        f'printf \'{{"archive": "%s", "aside": "%s"}}\\n\' {q(archive)} "$aside" > {q(pending)}; '
        f'if [ -e {q(target)} ]; then mv {q(target)} "$aside"; fi; '
        f"mv {q(staging + '/' + data_dir)} {q(target)}; rmdir {q(staging)}; "
        f'echo "the data before the restore is in $aside"'
    )
    yield compose_up(project_dir, project_name, wait_timeout)
    yield (
        f"{safety_command('compare', ('--manifest', stem + '.json'), ('--url', url), ('--token-file', token_file))}"  # noqa: E501
        f" || {{ echo {q('restored data does not match the backup manifest; the data before the restore is kept beside ' + target)} >&2; exit 1; }}; "  # noqa: E501
        f"touch {q(marker)}; rm -f {q(pending)}; echo {q(f'restored {archive}: verified against its manifest')}"  # noqa: E501
    )
