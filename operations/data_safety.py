"""Backups, restores and the persistence proof: actions that guard the data.

Each stops Chroma only for as long as it must (Chroma is not safe for two
processes on one data dir) and verifies with files/chroma_inventory.py, run
on the host: collections, record counts and a checksum of the sorted ids.
Nothing here deletes data: a restore moves the current data dir aside, and
only backup pruning, when chroma_backup_keep asks for it, removes old backups.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import File

from operations.stack import compose_command, compose_up

TOOLS_DIR = "/usr/local/lib/chroma-deploy"
LOCAL_INVENTORY_TOOL = Path(__file__).resolve().parent.parent / "files" / "chroma_inventory.py"
# Named by content: control machines with other versions never overwrite each other's.
INVENTORY_TOOL = (
    f"{TOOLS_DIR}/chroma_inventory-"
    f"{hashlib.sha256(LOCAL_INVENTORY_TOOL.read_bytes()).hexdigest()[:12]}.py"
)


def _tool() -> list:
    """Upload the inventory tool (needs python3 on the host: a clear error if absent)."""
    return [
        "command -v python3 >/dev/null || { echo 'python3 is needed on the host to verify "
        "Chroma data (apt-get install python3-minimal)' >&2; exit 1; }",
        f"mkdir -p {TOOLS_DIR}",
        FileUploadCommand(str(LOCAL_INVENTORY_TOOL), INVENTORY_TOOL),
    ]


def _inventory(url: str, token_file: str | None) -> str:
    token = f" --token-file {shlex.quote(token_file)}" if token_file else ""
    return f"python3 {INVENTORY_TOOL} {shlex.quote(url)}{token}"


@operation(is_idempotent=False)
def persistence_proof(project_dir: str, url: str, token_file: str | None, wait_timeout: int):
    """Write a canary, ``down``, ``up --wait``, read it back, remove it: pass or fail.

    + project_dir: the project dir
    + url: where Chroma answers on the host
    + token_file: the auth proxy's token file, if any
    + wait_timeout: seconds for ``up --wait``
    """
    yield from _tool()
    name = "chroma-deploy-canary"
    canary = f"{_inventory(url, token_file)} --canary"
    up = compose_up(project_dir, wait_timeout)
    yield (
        f"{canary} write {name} >/dev/null && {compose_command(project_dir, 'down')} "
        f"&& {up} && found=$({canary} read {name}); {canary} delete {name} >/dev/null; "
        'if [ "$found" = \'{"canary": "present"}\' ]; then echo "persistence proof: pass"; '
        'else echo "persistence proof: FAIL: the canary did not survive down/up" >&2; exit 1; fi'
    )


def backup_commands(
    project_dir: str, project_name: str, data_dir: str, backup_dir: str, wait_timeout: int,
    label: str = "", record: str | None = None, record_fields: str = "",
) -> list:  # fmt: skip
    """Stop, archive and manifest the data dir, start again: one command after the tool.

    The manifest (collections, counts, id checksums) is read from chroma.sqlite3
    while the server is stopped, so it works for every version and matches the
    archive exactly; restores and upgrades verify the running server against it.
    With ``record``, a pending-verification record (``record_fields`` plus the
    backup's path and manifest) is written there for verify_migration.
    """
    directory = shlex.quote(backup_dir)
    stem = f'{shlex.quote(backup_dir)}/{project_name}-"$stamp"{shlex.quote(label)}'
    sqlite = shlex.quote(f"{project_dir}/{data_dir}/chroma.sqlite3")
    up = compose_up(project_dir, wait_timeout)
    return [
        *_tool(),
        f"set -e; umask 077; mkdir -p {directory}; chmod 700 {directory}; "
        "stamp=$(date -u +%Y%m%dT%H%M%SZ); "
        f"{compose_command(project_dir, 'stop')}; "
        f"if ! {{ python3 {INVENTORY_TOOL} sqlite:{sqlite} > {stem}.json.tmp "
        f"&& tar -C {shlex.quote(project_dir)} -czf {stem}.tar.gz.tmp {shlex.quote(data_dir)}; }}; "
        f"then {up}; echo 'the backup failed; the stack was started again' >&2; exit 1; fi; "
        f"{up}; "
        f"mv {stem}.tar.gz.tmp {stem}.tar.gz; mv {stem}.json.tmp {stem}.json; "
        f'(cd {directory} && sha256sum "$(basename {stem}.tar.gz)" > "$(basename {stem}.sha256)"); '
        f'echo "backup written: $(ls {stem}.tar.gz)"'
        + (
            f'; printf \'{{{record_fields}, "backup": "%s", "before": %s}}\\n\' '
            f'"$(ls {stem}.tar.gz)" "$(cat {stem}.json)" > {shlex.quote(record)}'
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
):
    """A consistent archive of the data dir, with a checksum and a manifest of counts.

    Chroma is stopped only while the manifest is read and tar reads the data dir.

    + project_dir, project_name: the project dir and compose project
    + data_dir: name of the bind-mounted data dir
    + backup_dir: where archives go; keep: newest archives to keep (0: all)
    + wait_timeout: seconds for ``up --wait`` after the archive is written
    """
    yield from backup_commands(project_dir, project_name, data_dir, backup_dir, wait_timeout)
    if keep:
        # The one deletion chroma-deploy does, and only when chroma_backup_keep asks.
        pattern = shlex.quote(f"{backup_dir}/{project_name}-") + "*.tar.gz"
        yield (
            f"ls -1t {pattern} | tail -n +{keep + 1} | while read -r old; do "
            'rm -f -- "$old" "${old%.tar.gz}.sha256" "${old%.tar.gz}.json"; '
            'echo "pruned: $old"; done'
        )


@operation()
def restore(
    project_dir: str,
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

    Checks the archive's checksum first, verifies the restored counts and ids
    against its manifest after Chroma is up, and records the restore so a
    second run with the same archive changes nothing.

    + project_dir, data_dir: the project dir and the name of its data dir
    + archive: a .tar.gz written by backup.py (its .sha256 and .json beside it)
    + uid, gid, mode: owner and mode of the restored data dir
    + url, token_file: where Chroma answers, and its token file
    + wait_timeout: seconds for ``up --wait``
    """
    stem = archive.removesuffix(".tar.gz")
    marker = f"{project_dir}/.chroma-deploy/restored-{Path(stem).name}"
    if host.get_fact(File, path=marker):
        host.noop(f"{archive} was restored already ({marker})")
        return
    yield from _tool()
    target = shlex.quote(f"{project_dir}/{data_dir}")
    aside = shlex.quote(f"{project_dir}/{data_dir}.before-restore-") + '"$stamp"'
    up = compose_up(project_dir, wait_timeout)
    yield (
        f"set -e; cd {shlex.quote(str(Path(archive).parent))}; "
        f"sha256sum -c --quiet {shlex.quote(Path(stem).name + '.sha256')} "
        "|| { echo 'the archive does not match its .sha256: nothing was changed' >&2; exit 1; }; "
        "stamp=$(date -u +%Y%m%dT%H%M%SZ); "
        f"{compose_command(project_dir, 'stop')}; "
        f"mv {target} {aside}; "
        f"install -d -o {uid} -g {gid} -m {mode} {target}; "
        f"tar -C {shlex.quote(project_dir)} -xzf {shlex.quote(archive)}; "
        f"chown -R {uid}:{gid} {target}; chmod {mode} {target}; "
        f"{up}; "
        f"{_inventory(url, token_file)} > /tmp/chroma-restore-check.$$.json; "
        f"if ! cmp -s /tmp/chroma-restore-check.$$.json {shlex.quote(stem + '.json')}; then "
        "rm -f /tmp/chroma-restore-check.$$.json; "
        f"echo \"restored data does not match the backup's manifest; the data before the "
        f'restore is in {project_dir}/{data_dir}.before-restore-$stamp" >&2; exit 1; fi; '
        "rm -f /tmp/chroma-restore-check.$$.json; "
        f"mkdir -p {shlex.quote(project_dir + '/.chroma-deploy')}; touch {shlex.quote(marker)}; "
        f'echo "restored {archive}; the data before it is in '
        f'{project_dir}/{data_dir}.before-restore-$stamp"'
    )
