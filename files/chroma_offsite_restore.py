#!/usr/bin/env python3
"""Restore a snapshot of the off-host repository into the project, or rehearse one (the drill).

Uploaded next to chroma_restic.py and chroma_safety.py, whose machinery it uses
(restic's calls and verdicts; the staging dir, the switch by rename with the old
data aside, the unpublished server); standard library only.

    chroma_offsite_restore.py snapshots --config C [--snapshot latest|ID]
    chroma_offsite_restore.py restore --config C --snapshot latest|ID [--version V]
                     --data-dir D --uid U --gid G --mode M --pending R --manifest-out F
                     [--switch F] [--url URL [--token-file F] [--tls-dir T] --marker M]
                     --project-dir P --project-name N --compose-file F --wait-timeout T
    chroma_offsite_restore.py drill --config C [--snapshot latest|ID] --image I:VERSION
                     --persist-path P --uid U --gid G [--env NAME=value ...] [--timeout S]

A snapshot (files/chroma_offsite.py backup) holds the staging dir it was taken
from, ``<staging>/manifest.json`` (chroma_safety.manifest_of: collections,
counts, id and content checksums, project, Chroma version) beside
``<staging>/data/`` (the data dir, whatever its name), and is tagged
``project=<name>``, ``host=<host>``, ``chroma_version=<v>``. Each refusal is one
line on stderr that starts with the key it concerns and says that nothing was
changed; exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chroma_restic as restic
import chroma_safety as safety
from chroma_inventory import Chroma, inventory, scopes_of, sqlite_inventory
from chroma_offsite import compose_env
from chroma_safety import Refused

NOTHING = "nothing was changed"
# What a user does about each of restic's faults (chroma_restic.verdict).
FAULT_HINTS = {
    "wrong password": "chroma_backup_password_file: the password does not open the repository; "
    "name the file that holds the password the backups were made with",
    "no repository": "chroma_backup_repository: there is no restic repository there; name the "
    "repository the backups went to",
    "host key": "chroma_backup_known_hosts: the repository host's key is not the pinned one; "
    "check the host, then update the known_hosts file",
    "unreachable": "chroma_backup_repository: the repository host cannot be reached; check the "
    "host, the network and chroma_backup_ssh_key, then run again",
    "locked": "chroma_backup_repository: another restic holds an exclusive lock; run again once "
    "it has finished",
    "disk full": "chroma_backup_repository: no space left; free space, then run again",
    "failed": "chroma_backup_repository: restic failed; see its words, then run again",
}


def fault_line(what: str, done) -> str:  # done: subprocess.CompletedProcess[str]
    fault = restic.verdict(done)
    hint = FAULT_HINTS.get(fault, FAULT_HINTS["failed"])
    key, _, advice = hint.partition(": ")
    said = restic.last_line(done.stderr) or "no output"
    return f"{key}: {what}: {fault} (restic: {said}); {NOTHING}: {advice}"


def snapshots(offsite: restic.Offsite) -> list[dict]:
    """This project's snapshots, oldest first, from every host (read-only)."""
    tags = [arg for tag in offsite.tags for arg in ("--tag", tag)]
    done = restic.run_restic(offsite, "snapshots", "--json", *tags, timeout=900)
    if restic.verdict(done) != "ok":
        raise Refused(fault_line("reading the snapshot list", done))
    found = []
    for item in json.loads(done.stdout or "[]") or []:
        tags_of = dict(tag.split("=", 1) for tag in item.get("tags") or [] if "=" in tag)
        found.append({
            "id": item["id"], "short_id": item.get("short_id") or item["id"][:8],
            "time": item["time"], "hostname": item.get("hostname", ""),
            "paths": item.get("paths") or [], "version": tags_of.get("chroma_version"),
            "records": int(tags_of["records"]) if tags_of.get("records", "").isdigit() else None,
        })  # fmt: skip
    return sorted(found, key=lambda snapshot: snapshot["time"])


def records_of(offsite: restic.Offsite, snapshot: dict) -> int:
    """The records a snapshot's manifest counts: its ``records=`` tag, else its manifest read.

    Snapshots made before the backup program tagged them have no tag: their
    ``manifest.json`` is read from the repository (one ``restic dump``); one that
    cannot be read counts none.
    """
    if snapshot.get("records") is None:
        snapshot["records"] = 0
        if len(snapshot["paths"]) == 1:
            manifest = f"{snapshot['paths'][0]}/manifest.json"
            dumped = restic.run_restic(offsite, "dump", snapshot["id"], manifest, timeout=900)
            if restic.verdict(dumped) not in ("ok", "failed"):  # "failed": no manifest in it
                raise Refused(fault_line(f"reading the manifest of {describe(snapshot)}", dumped))
            with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                snapshot["records"] = sum(int(item["count"]) for item in json.loads(
                    dumped.stdout)["collections"].values())  # fmt: skip
    return snapshot["records"]


def latest(offsite: restic.Offsite, found: list[dict]) -> dict:
    """``latest``: the newest snapshot of the project that holds records, this host's first.

    A snapshot of no records (a data dir emptied before the check that now refuses
    its backup) would restore as an empty database: never latest. This host's own
    snapshots come first: on a host that backs the project up, latest is what it
    saved, not another host's backup of the same project name; on a new machine
    (none of its own) it is the newest of any host.
    """
    host = offsite["host"]
    mine = [snapshot for snapshot in found if snapshot["hostname"] == host]
    others = [snapshot for snapshot in found if snapshot["hostname"] != host]
    for snapshot in [*reversed(mine), *reversed(others)]:
        if records_of(offsite, snapshot) > 0:
            return snapshot
    project, newest = offsite["project_name"], found[-1]
    raise Refused(
        f"chroma_restore_snapshot: none of the {len(found)} snapshots of project {project} holds "
        f"a record (the newest {newest['short_id']} of {newest['time'][:19]}Z), so latest names "
        f"none: {NOTHING}; to restore an empty database, name its id (restic snapshots --tag "
        f"project={project})"
    )


def resolve(offsite: restic.Offsite, wanted: str, found: list[dict] | None = None) -> dict:
    """The snapshot ``wanted`` names (``latest``: :func:`latest`)."""
    project = offsite["project_name"]
    found = snapshots(offsite) if found is None else found
    if not found:
        raise Refused(
            f"chroma_restore_snapshot: the repository holds no snapshot of project {project}: "
            f"{NOTHING}; check chroma_backup_repository and chroma_compose_project (the project "
            "name the backups were tagged with)"
        )
    if wanted == "latest":
        return latest(offsite, found)
    matches = [snapshot for snapshot in found if snapshot["id"].startswith(wanted)]
    if len(matches) != 1:
        newest = found[-1]
        what = "no" if not matches else f"{len(matches)} snapshots"
        raise Refused(
            f"chroma_restore_snapshot: {wanted} names {what} snapshot of project {project} "
            f"({len(found)} in the repository, the newest {newest['short_id']} of "
            f"{newest['time'][:19]}Z): {NOTHING}; name one of them (restic snapshots --tag "
            f"project={project}), or latest"
        )
    return matches[0]


def describe(snapshot: dict) -> str:
    return (f"snapshot {snapshot['short_id']} (taken on {snapshot['hostname'] or 'a host'} "
            f"at {snapshot['time'][:19]}Z, Chroma {snapshot['version']})")  # fmt: skip


def restore_into(offsite: restic.Offsite, snapshot: dict, work: str, data_dir: str) -> tuple:
    """``restic restore --verify`` into ``work``; the data dir copy and its manifest, checked.

    restic restores the staging dir the snapshot was taken from at its own absolute
    path under ``work``. The files are checked against the manifest (collections,
    counts, id and content checksums read from the copy's chroma.sqlite3) before
    anything else happens; ``work`` is ours and removed on any failure.
    """
    if not snapshot["version"]:
        raise Refused(
            f"chroma_restore_snapshot: {describe(snapshot)} has no chroma_version= tag, so the "
            f"version to restore it on is unknown: {NOTHING}; name a snapshot chroma-deploy made"
        )
    if len(snapshot["paths"]) != 1:
        raise Refused(
            f"chroma_restore_snapshot: {describe(snapshot)} holds {len(snapshot['paths'])} paths, "
            f"not the one staging dir chroma-deploy backs up: {NOTHING}; name a snapshot "
            "chroma-deploy made"
        )
    shutil.rmtree(work, ignore_errors=True)  # our own half restore from a killed run
    os.makedirs(work, mode=0o700)
    try:
        size = restic.run_restic(offsite, "stats", snapshot["id"], "--json", "--mode",
                                 "restore-size", timeout=900)  # fmt: skip
        if restic.verdict(size) != "ok":
            raise Refused(fault_line(f"reading the size of {describe(snapshot)}", size))
        safety.check_space(int(json.loads(size.stdout)["total_size"]), work)
        done = restic.run_restic(offsite, "restore", snapshot["id"], "--target", work,
                                 "--verify")  # fmt: skip
        if restic.verdict(done) != "ok":
            raise Refused(fault_line(f"restoring {describe(snapshot)}", done))
        root = f"{work}/{snapshot['paths'][0].lstrip('/')}"
        manifest_path = f"{root}/manifest.json"
        # files/chroma_offsite.py copies the data dir to data/ whatever its name.
        copy = next((f"{root}/{name}" for name in ("data", os.path.basename(data_dir))
                     if os.path.isdir(f"{root}/{name}")), None)  # fmt: skip
        if copy is None or not os.path.isfile(manifest_path):
            held = ", ".join(sorted(os.listdir(root))) if os.path.isdir(root) else "nothing"
            raise Refused(
                f"chroma_restore_snapshot: {describe(snapshot)} holds {held or 'nothing'}, not "
                f"manifest.json and data/ (not a snapshot chroma-deploy made of a data dir): "
                f"{NOTHING}; name a snapshot of this project's data dir"
            )
        manifest = json.loads(Path(manifest_path).read_text())
        sqlite = f"{copy}/chroma.sqlite3"
        found = sqlite_inventory(sqlite) if os.path.isfile(sqlite) else {"collections": {}}
        differs = safety.differences(manifest["collections"], found["collections"])
        if differs:
            raise Refused(
                f"chroma_restore_snapshot: the files of {describe(snapshot)} differ from its "
                f"manifest ({'; '.join(differs[:5])}): {NOTHING}; restore another snapshot, "
                "and run restic check on the repository"
            )
        return copy, manifest
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def counted(manifest: dict) -> str:
    collections = manifest["collections"]
    records = sum(item["count"] for item in collections.values())
    return f"{len(collections)} collections, {records} records"


def restore(args: argparse.Namespace) -> int:
    """Restore the snapshot beside the data dir, check it, then switch it in by rename.

    restic restores and the files are checked while the stack still serves; it
    is stopped only for the switch (chroma_safety.switch_in: a pending record
    first, the current data dir moved aside, never deleted). The manifest is
    kept at ``--manifest-out`` for the check through the API after ``up``
    (chroma_safety.py restored). ``--version``: the Chroma version this run
    prepared the stack for; a snapshot of another version is refused before
    anything changes (the next run reads the snapshot first and prepares its version).
    """
    offsite = restic.Offsite.load(args.config)
    names = compose_env(args.project_dir)
    if names:
        # compose obeys it over -f: `stop` would stop another project, and the data dir
        # would be switched under a Chroma that still serves it.
        raise Refused(
            f"chroma_project_dir: {args.project_dir}/.env sets {names[0]}, which docker compose "
            f"obeys over {args.compose_file} (the restore would stop another project and switch "
            f"the data under a running Chroma): {NOTHING}; remove that line (chroma-deploy never "
            "edits your .env), then run again"
        )
    snapshot = resolve(offsite, args.snapshot)
    if args.version and snapshot["version"] != args.version:
        raise Refused(
            f"chroma_restore_snapshot: {describe(snapshot)} was taken on Chroma "
            f"{snapshot['version']}, and this run prepared Chroma {args.version} (restic and the "
            f"repository's files were not on the host when it started): {NOTHING} to the data; "
            "run the same command again: it restores on the snapshot's version"
        )
    if restored_already(args, snapshot):
        print(f"{describe(snapshot)} was restored here and the server still holds what its "
              "manifest says: nothing was changed")  # fmt: skip
        return 0
    staging = f"{args.project_dir}/.{args.data_dir}.restore-staging"
    copy, manifest = restore_into(offsite, snapshot, staging, args.data_dir)
    try:
        for root, dirs, files in os.walk(copy):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), args.uid, args.gid)
        os.chown(copy, args.uid, args.gid)
        os.chmod(copy, int(args.mode, 8))
        os.makedirs(os.path.dirname(args.manifest_out), exist_ok=True)
        safety.write_json(Path(args.manifest_out), {**manifest, "snapshot": snapshot["id"]})
        stop_stack(args)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"{describe(snapshot)} restored and checked against its manifest: {counted(manifest)}")
    aside = safety.switch_in(args, copy, f"snapshot {snapshot['id']}", safety.stamp())
    shutil.rmtree(staging, ignore_errors=True)  # what is left there: restic's parent dirs
    return 0 if aside else 1


def restored_already(args: argparse.Namespace, snapshot: dict) -> bool:
    """This snapshot was restored last, nothing is pending, and the server still holds it.

    What the control machine checks while it plans, when it can read the repository
    then (operations/offsite_restore.py); asked again here for a run that could not
    (another chroma-deploy's host tools), so that data written since is never moved
    aside by a restore that was done already.
    """
    if not (args.url and args.marker and os.path.isfile(args.marker)) or os.path.exists(
        args.pending
    ):
        return False
    try:
        kept = json.loads(Path(args.manifest_out).read_text())
        if kept.get("snapshot") != snapshot["id"]:
            return False
        live = inventory(Chroma(args.url, args.token_file, args.tls_dir), scopes_of(kept))
    except Exception:  # no manifest, no answer: restore it
        return False
    return not safety.differences(kept["collections"], live["collections"])


def stop_stack(args: argparse.Namespace) -> None:
    """Stop the project's stack for the switch (nothing to stop on a host it never ran on)."""
    if not os.path.isfile(args.compose_file):
        return
    if safety.shown(safety.compose_args(args, "stop")) != 0:
        raise Refused(f"chroma_project_dir: docker compose stop failed in {args.project_dir}: "
                      f"{NOTHING}; see docker's words above, then run again")  # fmt: skip


def metrics_path(offsite: restic.Offsite) -> Path:
    """``<project>-drill.prom`` beside the backup's textfile: its own file, no race with it."""
    return Path(offsite["metrics_file"]).with_name(f"{offsite['project_name']}-drill.prom")


def write_metrics(offsite: restic.Offsite, success: bool) -> Path:
    """The drill's verdict as Prometheus textfile metrics, written atomically."""
    path = metrics_path(offsite)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = json.dumps(str(offsite["project_name"]))  # a quoted label value, escapes included
    text = (
        "# HELP chroma_deploy_restore_drill_success 1 if the last restore drill restored the "
        "latest snapshot and a server read back what its manifest says, else 0.\n"
        "# TYPE chroma_deploy_restore_drill_success gauge\n"
        f"chroma_deploy_restore_drill_success{{project={label}}} {int(success)}\n"
        "# HELP chroma_deploy_restore_drill_timestamp_seconds When the last restore drill ended.\n"
        "# TYPE chroma_deploy_restore_drill_timestamp_seconds gauge\n"
        f"chroma_deploy_restore_drill_timestamp_seconds{{project={label}}} {time.time():.3f}\n"
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)  # node_exporter reads it
    os.replace(tmp, path)
    return path


def drill(args: argparse.Namespace) -> int:
    """A snapshot (the latest) restored into a throwaway dir and container, checked, removed.

    Never touches the live stack: the copy lives in its own dir under the project's
    state dir, the server publishes no port and runs the snapshot's Chroma version
    (``--image``, the declared server of that version) as the data's owner. The
    files are checked against the manifest, then the server's answers
    (collections, counts, id and content checksums). Success or
    not, the throwaway is removed and the verdict written to ``<project>-drill.prom``.
    """
    offsite = restic.Offsite.load(args.config)
    project_dir = offsite["project_dir"]
    work = f"{project_dir}/.chroma-deploy/restore-drill"
    label = f"chroma-deploy.restore-drill={project_dir}"
    safety.stop_unpublished(label)  # from a drill that was killed
    started = time.monotonic()
    problem = snapshot = None
    try:
        snapshot = resolve(offsite, args.snapshot)
        copy, manifest = restore_into(offsite, snapshot, work, offsite["data_dir"])
        for root, dirs, files in os.walk(copy):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), args.uid, args.gid)
        os.chown(copy, args.uid, args.gid)
        if not args.image.endswith(f":{snapshot['version']}"):
            raise Refused(f"chroma_restore_drill: {describe(snapshot)} is not of {args.image}; "
                          "run the drill again")  # fmt: skip
        if not safety.docker("image", "inspect", args.image, check=False).strip():
            raise Refused(
                f"chroma_image: {args.image}, the version {describe(snapshot)} was taken with, "
                "is not on this host; deploy it once, then drill again"
            )
        url = safety.serve_unpublished(f"chroma-deploy-restore-drill-{os.getpid()}", label,
                                       copy, args)  # fmt: skip
        after = inventory(Chroma(url, None), scopes_of(manifest))
        differs = safety.differences(manifest["collections"], after["collections"])
        if differs:
            problem = f"the restored server differs from the manifest: {'; '.join(differs[:5])}"
    except Refused as refusal:
        problem = str(refusal)
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
    finally:
        safety.stop_unpublished(label)
        shutil.rmtree(work, ignore_errors=True)
    path = write_metrics(offsite, problem is None)
    seconds = time.monotonic() - started
    if problem is None and snapshot is not None:
        print(
            f"restore drill: pass: {describe(snapshot)} restored into a throwaway dir and "
            f"server, {counted(manifest)} equal to its manifest ({seconds:.1f} s); {path}"
        )
        return 0
    print(f"restore drill: FAIL: {problem}; the live stack was not touched; {path}",
          file=sys.stderr)  # fmt: skip
    return 1


def list_snapshots(args: argparse.Namespace) -> int:
    """For the control machine's fact: the list, the one ``--snapshot`` names, or the refusal.

    ``{"snapshots": [...], "chosen": {...} | null, "fault": line | null}``, exit 0:
    restore.py decides with it before anything changes (facts/snapshots.py).
    """
    offsite = restic.Offsite.load(args.config)
    found: dict = {"snapshots": [], "chosen": None, "fault": None}
    try:
        found["snapshots"] = snapshots(offsite)
        if args.snapshot:
            found["chosen"] = resolve(offsite, args.snapshot, found["snapshots"])
    except Refused as refusal:
        found["fault"] = str(refusal)
    print(json.dumps(found, sort_keys=True))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listed = commands.add_parser("snapshots")
    listed.add_argument("--snapshot", help="latest or an id: resolve it too")
    restored = commands.add_parser("restore")
    for option in ("--snapshot", "--data-dir", "--mode", "--pending", "--manifest-out",
                   "--project-dir", "--project-name", "--compose-file"):  # fmt: skip
        restored.add_argument(option, required=True)
    restored.add_argument("--version", help="the Chroma version this run prepared")
    restored.add_argument("--url", help="where the stack answers: is it restored already?")
    restored.add_argument("--token-file")
    restored.add_argument("--tls-dir", help="the proxy's ca.pem and name: verify --url with them")
    restored.add_argument("--marker", help="written once a restore was verified")
    restored.add_argument("--switch", help="the snapshot's version's compose file, checked")
    restored.add_argument("--wait-timeout", type=int, required=True)
    drilled = commands.add_parser("drill")
    for option in ("--image", "--persist-path"):
        drilled.add_argument(option, required=True)
    drilled.add_argument("--snapshot", default="latest", help="latest or an id")
    drilled.add_argument("--env", action="append", default=[], help="NAME=value")
    drilled.add_argument("--timeout", type=int, default=120)
    for sub in (restored, drilled):
        sub.add_argument("--uid", type=int, required=True)
        sub.add_argument("--gid", type=int, required=True)
    for sub in (listed, restored, drilled):
        sub.add_argument("--config", required=True, help="the project's offsite.json")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    steps = {"snapshots": list_snapshots, "restore": restore, "drill": drill}
    try:
        return steps[args.command](args)
    except Refused as refusal:
        print(str(refusal), file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{args.command}: {error}; the data dir was not switched, run again once fixed",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
