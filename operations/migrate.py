"""Move Chroma data out of a legacy named volume into the bind-mounted data dir.

The seed's answer to data stuck in a named volume was "re-index". Here the
deploy copies it, and only calls the move done once the server on the bind
mount shows the same collections, counts and id checksums as the volume held.
The volume is never deleted: the README says how to remove it by hand.

Two operations, around the stack's `up`: `copy_legacy_volume` (before) stops
what uses the volume, reads its inventory from chroma.sqlite3 read-only, copies
it and leaves a pending record; `verify_migration` (after) compares, then marks
the migration done, or puts everything back and fails.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import File

from facts.datadirs import DataDirs
from facts.volumes import LegacyVolumes
from operations.data_safety import INVENTORY_TOOL, _inventory, _tool
from operations.host_failure import fail_host
from operations.stack import COMPOSE_FILE, compose_command

STATE_DIR = ".chroma-deploy"


def pending_record(project_dir: str) -> str:
    return f"{project_dir}/{STATE_DIR}/migration-pending.json"


def done_record(project_dir: str, volume: str) -> str:
    return f"{project_dir}/{STATE_DIR}/migrated-{volume}.json"


@operation()
def copy_legacy_volume(
    project_dir: str, data_dir: str, volume_names: list[str], uid: int, gid: int, mode: str
):
    """Copy a legacy volume's Chroma data into an empty data dir (never delete the volume).

    + project_dir: the project dir; data_dir: the bind-mounted data dir's path
    + volume_names: chroma_legacy_volumes (exact, or after any `<project>_` prefix)
    + uid, gid: owner the copied data is given (the container runs as it)
    + mode: the data dir's mode (``cp -a`` would give it the volume root's)
    """
    volumes = host.get_fact(LegacyVolumes, names=volume_names)
    todo = [
        volume for volume in volumes
        if volume["has_chroma_data"]
        and not host.get_fact(File, path=done_record(project_dir, volume["name"]))
    ]  # fmt: skip
    if not todo:
        host.noop("no legacy named volume holds Chroma data that is not migrated yet")
        return
    names = ", ".join(volume["name"] for volume in todo)
    if len(todo) > 1:
        yield fail_host(
            f"several named volumes hold Chroma data ({names}): chroma-deploy "
            "will not guess; name the one to migrate in chroma_legacy_volumes"
        )
        return
    copied = host.get_fact(DataDirs, paths=[data_dir])[data_dir]["has_sqlite"]
    pending = host.get_fact(File, path=pending_record(project_dir))
    if pending and copied:
        # An interrupted run finished the copy: verify_migration finishes the job.
        host.noop("a copied legacy volume is waiting for verification")
        return
    if copied:
        yield fail_host(
            f"both the named volume {names} and {data_dir} hold Chroma data: "
            "chroma-deploy will not merge or choose; move one aside (never delete it), or "
            f"drop {names} from chroma_legacy_volumes to keep the data dir"
        )
        return
    volume = todo[0]
    source = shlex.quote(volume["mountpoint"])
    target = shlex.quote(data_dir)
    record = shlex.quote(pending_record(project_dir))
    state = f"{project_dir}/{STATE_DIR}"
    staging = shlex.quote(f"{state}/staging")
    yield from _tool()
    # The record is written before the copy and the copy lands in a staging dir that
    # replaces the empty data dir in one rename, so a run killed anywhere resumes here.
    yield (
        f"set -e; mkdir -p {shlex.quote(state)}; "
        f"if [ ! -f {record} ]; then "
        f"users=$(docker ps -q --filter volume={shlex.quote(volume['name'])}); "
        '[ -z "$users" ] || docker stop $users >/dev/null; '
        f"before=$(python3 {INVENTORY_TOOL} sqlite:{source}/chroma.sqlite3); "
        f'printf \'{{"volume": "{volume["name"]}", "stopped": "%s", '
        f'"before": %s}}\\n\' "$(echo $users)" "$before" > {record}.tmp; '
        f"mv {record}.tmp {record}; fi; "
        f"if [ -f {shlex.quote(project_dir + '/' + COMPOSE_FILE)} ]; then "
        f"{compose_command(project_dir, 'stop')}; fi; "  # our stack must not hold the old dir
        f"mkdir -p {staging}; cp -a {source}/. {staging}/; "
        f"chown -R {uid}:{gid} {staging}; chmod {mode} {staging}; "
        f"if [ -e {target}/.gitkeep ]; then mv {target}/.gitkeep {staging}/; fi; "
        f"if [ -d {target} ]; then rmdir {target}; fi; "  # only ever an empty dir
        f"mv {staging} {target}; "
        f'echo "copied named volume {volume["name"]} into {data_dir}; verifying after start"'
    )


@operation()
def verify_migration(project_dir: str, data_dir: str, url: str, token_file: str | None):
    """After `up`: the server must hold what the volume, or the pre-upgrade backup, held.

    On a match the pending record becomes `migrated-<volume>.json` or
    `upgraded-<from>-to-<to>.json`. A failed migration stops the stack, moves
    the copy aside and starts the old containers on the volume again; a failed
    upgrade stops the stack and names the backup to restore. Either fails the run.

    + project_dir, data_dir: the project dir and the data dir's path
    + url, token_file: where Chroma answers, and its token file
    """
    pending = pending_record(project_dir)
    if not host.get_fact(File, path=pending):
        host.noop("no migration is pending")
        return
    record = shlex.quote(pending)
    state = shlex.quote(f"{project_dir}/{STATE_DIR}")
    aside = shlex.quote(f"{data_dir}.failed-migration-") + '"$stamp"'
    stop = compose_command(project_dir, "stop")
    yield (
        f"read -r result kind subject to backup <<EOF\n$({_inventory(url, token_file)} "
        f"--verify {record})\nEOF\n"
        "stamp=$(date -u +%Y%m%dT%H%M%SZ); "
        'if [ "$result" = match ] && [ "$kind" = upgrade ]; then '
        f'mv {record} {state}/upgraded-"$subject"-to-"$to".json; '
        'echo "upgraded Chroma $subject -> $to: collections, counts and ids verified"; exit 0; fi; '
        'if [ "$result" = match ]; then '
        f'mv {record} {state}/migrated-"$subject".json; '
        'echo "migrated named volume $subject: collections, counts and ids verified; the volume '
        "was kept: remove it with 'docker volume rm $subject' once satisfied\"; exit 0; fi; "
        f"{stop}; "
        f'mv {record} {state}/failed-"$kind"-"$stamp".json; '
        'if [ "$kind" = upgrade ]; then '
        'echo "upgrade $subject -> $to FAILED verification: the stack is stopped; restore '
        '$backup (restore.py) with chroma_version=$subject" >&2; exit 1; fi; '
        f"mv {shlex.quote(data_dir)} {aside}; install -d -m 750 {shlex.quote(data_dir)}; "
        f"stopped=$(python3 -c \"import json,sys; print(json.load(open(sys.argv[1]))['stopped'])\" "
        f'{state}/failed-"$kind"-"$stamp".json); '
        '[ -z "$stopped" ] || docker start $stopped >/dev/null; '
        'echo "migration of named volume $subject FAILED verification: the stack is back on the '
        f'volume and the copy is in {data_dir}.failed-migration-$stamp" >&2; exit 1'
    )
