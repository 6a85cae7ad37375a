#!/usr/bin/env python3
"""Host-side steps that move, verify or prune Chroma data, one subcommand each.

Uploaded next to chroma_inventory.py and run by the operations with their
values as arguments (never pasted into a shell string). Standard library only.

    chroma_safety.py stage --record R --kind volume|layer --subject S --source SRC
                     --data-dir D --uid U --gid G --mode M [--container C ...]
                     [--compose-file F --project-dir P] [--stop-grace S]
    chroma_safety.py verify --record R --url URL [--token-file F] [--tls-dir T] --data-dir D
                     [--compose-file F --project-dir P]
    chroma_safety.py verify --record R --image I --persist-path P --uid U --gid G
                     --data-dir D [--env NAME=value ...] [--compose-file F --project-dir P]
                     [--stop-grace S]
    chroma_safety.py prune --dir D --project P --keep K --version V
    chroma_safety.py space --source PATH --target DIR [--factor N]
    chroma_safety.py compare --manifest FILE --url URL [--token-file F] [--tls-dir T]
    chroma_safety.py rehearse --record R --data-dir D --image I --persist-path P --work-dir W
                     --uid U --gid G --compose-file F --project-dir P [--env NAME=value ...]
    chroma_safety.py verify-upgrade --record R --data-dir D --image I --persist-path P
                     --uid U --gid G [--vectors FILE] [--env NAME=value ...] [--stop-grace S]
    chroma_safety.py init-schema --data-dir D --image I --persist-path P --uid U --gid G
                     [--env NAME=value ...] [--stop-grace S]
    chroma_safety.py backup --project-dir P --project-name N --compose-file F --wait-timeout T
                     --data-dir D --backup-dir B --version V [--before-version V]
                     [--no-restart] [--record R --field NAME=value ... --skip-without-data]
                     [--verdict FILE] [--stop-grace S]
    chroma_safety.py restore --project-dir P --project-name N --compose-file F --wait-timeout T
                     --archive A --data-dir D --uid U --gid G --mode M --pending R
                     [--switch F] [--verdict FILE]
    chroma_safety.py restored --manifest FILE --url URL [--token-file F] [--tls-dir T] --marker M
                     --pending R --archive A --target D
    chroma_safety.py prove --url URL [--token-file F] [--tls-dir T] --project-dir P --project-name N
                     --compose-file F --wait-timeout T [--verdict FILE]
    chroma_safety.py sample-vectors --url URL [--token-file F] [--tls-dir T] --sqlite DB --out FILE
                     --version V

``--tls-dir``: with chroma_tls on, the host's ``<secrets>/tls`` (the proxy's
``ca.pem`` and ``name``), which verify the https URL (chroma_inventory.Chroma).

``--stop-grace``: the seconds a ``docker stop`` made here gives a server after SIGTERM
(chroma_stop_grace_seconds): the containers not stopped through the compose file, whose
stop_grace_period compose applies itself. Without it, a container's own stop timeout.

Exit codes: 0 done (or match), 1 error (nothing was changed by the failing
step; say what), 3 verification mismatch (handled: see ``verify``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chroma_inventory import (
    Chroma,
    canary,
    inventory,
    sample_size,
    sampled_vectors_now,
    scopes_of,
    sqlite_inventory,
    sqlite_scopes,
    vector_differences,
    vector_sample,
)

MARGIN_BYTES = 64 * 1024 * 1024
TLS_DIR_HELP = "the proxy's ca.pem and name (<secrets>/tls): verify the https URL with them"
STOP_GRACE_HELP = "seconds a docker stop gives a server after SIGTERM (chroma_stop_grace_seconds)"


class Refused(Exception):
    """A step that must not go on; the message says why and what to do."""


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` to ``path`` atomically (unique temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise Refused(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def bind_mount(source: str, target: str) -> list[str]:
    """``--mount`` of ``source`` at ``target``, each field quoted as CSV where it needs it.

    Not ``-v source:target``: a path may hold ``:`` and ``,`` (settings allow both), which
    ``-v`` takes for its separators ("invalid mode"); ``--mount`` reads CSV (tried on the
    engine with ``/srv/my project+v2,@x=1:y``).
    """
    spec = io.StringIO()
    csv.writer(spec, lineterminator="").writerow(
        ["type=bind", f"source={source}", f"target={target}"]
    )
    return ["--mount", spec.getvalue()]


def stop_time(grace: int | None) -> list[str]:
    """``docker stop``'s ``--time``: the declared grace, else the container's own timeout."""
    return [] if grace is None else ["--time", str(grace)]


def compose(project_dir: str | None, compose_file: str | None, *args: str) -> None:
    if not (project_dir and compose_file and os.path.isfile(compose_file)):
        return
    done = subprocess.run(
        ["docker", "compose", "--project-directory", project_dir, "-f", compose_file, *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise Refused(f"docker compose {args[0]} failed: {done.stderr.strip()[:300]}")


# A segment dir's name (a UUID), as facts/project.py's SEGMENT_GLOB and files/chroma_schema.py
# match it (tests/unit/test_host_programs.py holds the three to one list of names).
SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Where a Chroma server persists: facts/datahomes.py's PERSIST_TARGETS.
PERSIST_TARGETS = ("/data", "/chroma/chroma")


def database_problem(data_dir: str) -> str | None:
    """What makes ``data_dir``'s chroma.sqlite3 no database of its segment dirs, else None:
    the deploy's data-safety guard (checks/empty_data.py) for a run without pyinfra (the
    schedule's backup). A file SQLite cannot read; segment dirs beside one with no schema,
    or beside one that names none of them (another stack's, a new server's). A lock held
    a while is no problem: the copy reads it again with Chroma stopped."""
    database = os.path.join(data_dir, "chroma.sqlite3")
    try:
        names = os.listdir(data_dir)
    except OSError:
        return None
    dirs = [n for n in names if SEGMENT_DIR.fullmatch(n) and os.path.isdir(f"{data_dir}/{n}")]
    try:
        db = sqlite3.connect(f"file:{quote(database)}?mode=ro", uri=True, timeout=10)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            named = {row[0] for row in db.execute("SELECT id FROM segments")} if dirs else set()
            collections = db.execute("SELECT COUNT(*) FROM collections").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError as error:
        if dirs and "no such table" in str(error):
            return (f"{data_dir} holds {len(dirs)} segment dir(s) beside a chroma.sqlite3 with "
                    "no schema")  # fmt: skip
        return None
    except sqlite3.DatabaseError as error:
        return f"{database} cannot be read as a database (DatabaseError: {error})"
    # No collection at all: a new server's database, or every collection deleted (their
    # dirs leak on 1.x): not told apart, not refused (checks/empty_data.names_none).
    if dirs and collections and not named & set(dirs):
        return (f"{data_dir} holds {len(dirs)} segment dir(s) beside a chroma.sqlite3 that "
                "names none of them")  # fmt: skip
    return None


def replaced_under(container: str) -> str | None:
    """The source of ``container``'s bind mount at a persist path whose dir was moved away
    while it ran and another put at its path (compared by device and inode through
    ``/proc/<pid>/root``, the container's own view), else None: what the deploy's
    preflight.require_opened_dir_in_place refuses, for a run without pyinfra."""
    found = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Pid}} {{json .Mounts}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    pid, _, mounts = found.stdout.strip().partition(" ")
    if found.returncode != 0 or not pid.isdigit() or pid == "0":
        return None
    try:
        listed = json.loads(mounts)
    except ValueError:
        return None
    for mount in listed if isinstance(listed, list) else []:
        target, source = mount.get("Destination"), mount.get("Source")
        if mount.get("Type") != "bind" or target not in PERSIST_TARGETS or not source:
            continue
        try:
            opened, now = os.stat(f"/proc/{pid}/root{target}"), os.stat(source)
        except OSError:
            continue
        if (opened.st_dev, opened.st_ino) != (now.st_dev, now.st_ino):
            return str(source)
    return None


def tree_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # gone while walking: nothing to copy
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def check_space(need: int, target: str) -> None:
    """Refuse before anything is copied when ``target``'s filesystem lacks ``need`` + margin."""
    free = shutil.disk_usage(target).free
    if free < need + MARGIN_BYTES:
        raise Refused(
            f"not enough space on {target}: the copy needs {need} bytes plus a "
            f"{MARGIN_BYTES} byte margin and {free} are free; nothing was moved: free space and "
            "run again"
        )


def file_digests(path: str) -> dict[str, tuple[int, str]]:
    """Size and sha256 of every regular file under ``path``, by relative name."""
    found = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            digest = hashlib.sha256()
            with open(full, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            found[os.path.relpath(full, path)] = (os.path.getsize(full), digest.hexdigest())
    return found


def restart_policies(containers: list[str]) -> dict[str, str]:
    """Each container's restart policy, by id (so a replacement is never mistaken for it)."""
    policies = {}
    for name in containers:
        found = docker("inspect", "--format", "{{.Id}} {{.HostConfig.RestartPolicy.Name}}", name)
        container_id, _, policy = found.strip().partition(" ")
        policies[container_id] = policy or "no"
    return policies


def layer_holds_records(source: str) -> bool:
    """Whether CONTAINER:PATH's chroma.sqlite3 holds any collection (read from a copy)."""
    import tempfile

    container, path = source.split(":", 1)
    with tempfile.TemporaryDirectory(prefix="chroma-layer-") as work:
        for name in ("chroma.sqlite3", "chroma.sqlite3-wal"):
            docker("cp", f"{container}:{path.rstrip('/')}/{name}", work, check=name.endswith("3"))
        found = sqlite_inventory(os.path.join(work, "chroma.sqlite3"))
    return bool(found["collections"])


def stop_users(policies: dict[str, str], grace: int | None) -> None:
    """Stop the containers for the copy, after turning their restart policy off.

    A container with ``restart: always`` would come back after a reboot or an
    engine restart and write during the copy. The policies were recorded
    before this, so a run killed here still knows what to put back.
    """
    for container_id in policies:
        docker("update", "--restart=no", container_id, check=False)
    if policies:
        docker("stop", *stop_time(grace), *policies, check=False)
    running = docker("ps", "-q", "--no-trunc", *(f"--filter=id={i}" for i in policies))
    if policies and running.strip():
        raise Refused(f"containers still running after docker stop: {running.split()}")


def restart_users(policies: dict[str, str]) -> list[str]:
    """Start the stopped containers again with their policies; return those that are gone."""
    gone = []
    for container_id, policy in policies.items():
        docker("update", f"--restart={policy}", container_id, check=False)
        if docker("start", container_id, check=False) == "":
            gone.append(container_id[:12])
    return gone


def stage(args: argparse.Namespace) -> int:
    """Copy data that would be lost or hidden into the empty data dir, record first.

    The record is written before anything is stopped, so a run killed at any
    point resumes (or rolls back) from it. The copy goes to a staging dir that
    replaces the empty data dir in one rename; a half copy is never the data dir.
    """
    record_path = Path(args.record)
    data_dir = Path(args.data_dir)
    staging = data_dir.parent / f".{data_dir.name}.chroma-deploy-staging"
    if (data_dir / "chroma.sqlite3").exists():
        if record_path.exists() and json.loads(record_path.read_text()).get("before"):
            print(f"{args.subject}: copied already; verified after the stack starts")
            return 0
        if args.kind == "layer" and not layer_holds_records(args.source):
            # A server started on a wrong mount made an empty database in its layer:
            # nothing there to lose, and the data dir's own data is what is declared.
            print(f"{args.subject}: its own layer holds an empty Chroma database; nothing "
                  "to rescue")  # fmt: skip
            return 0
        raise Refused(
            f"both {args.subject} and {data_dir} hold Chroma data: chroma-deploy will not merge "
            "or choose; move one aside (never delete it)"
        )
    # Room for the copy is checked before the record is written or anything stopped: a
    # disk too small refuses with the stack still serving (the layer's size is known
    # before it is committed, a dir's by reading it).
    if args.kind == "layer":
        container = args.source.split(":", 1)[0]
        size = docker("inspect", "--size", "--format", "{{.SizeRw}}", container).strip()
        check_space(int(size or 0), str(data_dir.parent))
    else:
        check_space(tree_size(args.source), str(data_dir.parent))
    record_path.parent.mkdir(parents=True, exist_ok=True)
    if record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        record = {"kind": args.kind, "subject": args.subject, "containers": args.container,
                  "started": stamp()}  # fmt: skip
        write_json(record_path, record)
    if "policies" not in record:
        record["policies"] = restart_policies(args.container)
        write_json(record_path, record)
    stop_users(record["policies"], args.stop_grace)  # again on a resumed run: they stay down
    compose(args.project_dir, args.compose_file, "stop")  # ours must not hold the old dir
    if staging.exists():
        shutil.rmtree(staging)  # our own half copy from a killed run, never user data
    if args.kind == "layer":
        container, path = args.source.split(":", 1)
        if "kept_as" not in record:
            image = f"chroma-deploy-rescue/{container.lower()}:{stamp().lower()}"
            docker("commit", container, image)  # the layer outlives the container
            record["kept_as"] = image
            write_json(record_path, record)
        docker("cp", f"{container}:{path.rstrip('/')}/.", str(staging))
        copied = file_digests(str(staging))
    else:
        done = subprocess.run(["cp", "-a", f"{args.source}/.", str(staging)], check=False,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise Refused(f"copying {args.source} failed: {done.stderr.strip()[:300]}")
        copied = file_digests(str(staging))
        if file_digests(args.source) != copied:
            raise Refused(f"the copy of {args.source} differs from it; nothing was switched")
    record["before"] = sqlite_inventory(str(staging / "chroma.sqlite3"))
    record["files"] = len(copied)
    for root, dirs, files in os.walk(staging):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), args.uid, args.gid)
    os.chown(staging, args.uid, args.gid)
    os.chmod(staging, int(args.mode, 8))
    write_json(record_path, record)
    if (data_dir / ".gitkeep").exists():
        os.replace(data_dir / ".gitkeep", staging / ".gitkeep")
    if data_dir.is_dir():
        data_dir.rmdir()  # only ever empty here: chroma.sqlite3 was checked above
    os.replace(staging, data_dir)
    counts = {name: item["count"] for name, item in record["before"]["collections"].items()}
    print(f"copied {args.subject} into {data_dir}: {len(counts)} collections, "
          f"{sum(counts.values())} records; verifying after the stack starts")  # fmt: skip
    return 0


def differences(before: dict, after: dict) -> list[str]:
    found = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            found.append(f"{name}: not there before")
        elif new is None:
            found.append(f"{name}: missing ({old['count']} records before)")
        elif old["count"] != new["count"]:
            found.append(f"{name}: {old['count']} records before, {new['count']} now")
        elif old["ids_sha256"] != new["ids_sha256"]:
            found.append(f"{name}: other record ids")
        else:
            found.append(f"{name}: documents or metadata differ")
    return found


def done_name(record: dict) -> str:
    kind, subject = record["kind"], record["subject"]
    if kind == "upgrade":
        return f"upgraded-{record['from']}-to-{record['to']}.json"
    if kind == "volume":
        return f"migrated-{subject}.json"
    return f"rescued-{kind}-{re.sub(r'[^A-Za-z0-9_.-]', '_', subject)}-{stamp()}.json"


def verify(args: argparse.Namespace) -> int:
    """Compare the running server with the record's ``before``; act on the answer.

    match: the record becomes the done record. An error (no answer, 401, a
    crash) changes nothing: the record stays pending and the next run checks
    again. mismatch: the stack is stopped, the record becomes ``failed-*``
    (which blocks later deploys until the user acts), and a moved volume's
    containers are started on it again; nothing is deleted.
    """
    record_path = Path(args.record)
    record = json.loads(record_path.read_text())
    if "before" not in record:  # a copy a killed run did not finish: stage resumes it
        print(
            f"could not verify {record['kind']} {record['subject']}: its copy did not finish; "
            "nothing was changed and the next deploy copies it again",
            file=sys.stderr,
        )
        return 1
    before = record["before"]
    label = f"chroma-deploy.migration-check={args.data_dir}"
    try:
        if args.image:
            # Before `up` publishes it: the server is started on the copy where only this
            # check reaches it, so no client's write can make the comparison differ.
            stop_unpublished(label, args.stop_grace)  # one a killed run left on this data dir
            others = servers_on(args.data_dir)
            if others:
                raise Refused(f"{', '.join(others)} runs on {args.data_dir}, and two servers "
                              "must never open one data dir")  # fmt: skip
            url = serve_unpublished(f"chroma-deploy-migration-check-{os.getpid()}", label,
                                    args.data_dir, args, args.stop_grace)  # fmt: skip
            tls_dir = None  # plain http on its bridge address
        else:
            url, tls_dir = args.url, args.tls_dir
        after = inventory(Chroma(url, args.token_file, tls_dir), scopes_of(before))
    except Exception as error:
        print(
            f"could not verify {record['kind']} {record['subject']}: {type(error).__name__}: "
            f"{error}; nothing was changed and the check runs again on the next deploy",
            file=sys.stderr,
        )
        return 1
    finally:
        if args.image:
            stop_unpublished(label, args.stop_grace)
    found = differences(before["collections"], after["collections"])
    counts = sum(item["count"] for item in after["collections"].values())
    if not found:
        os.replace(record_path, record_path.with_name(done_name(record)))
        print(f"{record['kind']} {record['subject']} verified: {len(after['collections'])} "
              f"collections, {counts} records, ids, documents and metadata equal")  # fmt: skip
        return 0
    compose(args.project_dir, args.compose_file, "stop")
    failed = record_path.with_name(f"failed-{record['kind']}-{stamp()}.json")
    record["differences"] = found
    write_json(failed, record)
    record_path.unlink()
    detail = "; ".join(found[:5])
    if record["kind"] == "upgrade":
        print(f"upgrade {record['from']} -> {record['to']} FAILED verification ({detail}): the "
              f"stack is stopped. Restore {record.get('backup')} with restore.py, then see "
              f"{failed}", file=sys.stderr)  # fmt: skip
        return 3
    aside = f"{args.data_dir}.failed-{record['kind']}-{stamp()}-{os.getpid()}"
    os.replace(args.data_dir, aside)
    done = record_path.with_name(done_name(record))
    if record["kind"] == "volume" and done.exists():  # an earlier move is no longer in place
        os.replace(done, done.with_name(f"undone-{stamp()}-{done.name}"))
    os.mkdir(args.data_dir, 0o750)
    gone = restart_users(record.get("policies", {}))
    kept = f"; the old container's layer is kept as image {record['kept_as']}" if record.get(
        "kept_as") else ""  # fmt: skip
    restarted = (f"the old containers {', '.join(gone)} are gone (the data they used is kept)"
                 if gone else "the old containers were started again")  # fmt: skip
    print(f"{record['kind']} {record['subject']} FAILED verification ({detail}): the copy is in "
          f"{aside}{kept}; {restarted}. Deploys of this host stop here until you act: see "
          f"{failed}", file=sys.stderr)  # fmt: skip
    return 3


def prune(args: argparse.Namespace) -> int:
    """Delete this project's oldest archives beyond ``keep``; keep everything else.

    Only archives whose manifest names this project count. The newest archive
    taken before the upgrade to the current version (the way back) is never pruned.
    """
    directory = Path(args.dir)
    ours = []
    for manifest_path in sorted(directory.glob("*.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        archive = manifest_path.with_suffix(".tar.gz")
        if manifest.get("project") == args.project and archive.is_file():
            ours.append((manifest.get("created", ""), manifest, archive))
    ours.sort(key=lambda item: item[0], reverse=True)
    way_back = next((a for _, m, a in ours if m.get("before_version") == args.version), None)
    candidates = [archive for _, _, archive in ours if archive != way_back]
    for archive in candidates[args.keep :]:
        stem = str(archive).removesuffix(".tar.gz")
        for path in (archive, Path(stem + ".sha256"), Path(stem + ".json")):
            path.unlink(missing_ok=True)
        print(f"pruned: {archive}")
    kept = [str(a) for a in candidates[: args.keep]] + ([str(way_back)] if way_back else [])
    note = f" (one of them {way_back}, the way back to before {args.version})" if way_back else ""
    print(f"kept {len(kept)} archives of {args.project}{note}")
    return 0


def space(args: argparse.Namespace) -> int:
    """Room on ``target`` for ``factor`` times the size of ``source`` (file or tree)."""
    source = args.source
    size = os.path.getsize(source) if os.path.isfile(source) else tree_size(source)
    check_space(size * args.factor, args.target)
    return 0


def manifest_of(sqlite: str, project: str, version: str, before_version: str | None) -> dict:
    """A backup's manifest: the stopped server's inventory, its project and version."""
    found = sqlite_inventory(sqlite) if os.path.exists(sqlite) else {"collections": {}}
    found.update(project=project, version=version, created=stamp())
    if before_version:
        found["before_version"] = before_version
    return found


def compare(args: argparse.Namespace) -> int:
    """The running server against a manifest: 0 equal, 3 different, 1 not readable."""
    expected = json.loads(Path(args.manifest).read_text())
    try:
        after = inventory(Chroma(args.url, args.token_file, args.tls_dir), scopes_of(expected))
    except Exception as error:
        print(f"could not read the server: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    found = differences(expected["collections"], after["collections"])
    if found:
        print("the server differs from the manifest: " + "; ".join(found[:5]), file=sys.stderr)
        return 3
    return 0


def wait_for_heartbeat(url: str, seconds: int, pause: float = 0.5) -> bool:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=3):  # noqa: S310
                return True
        except OSError:
            time.sleep(pause)
    return False


def rehearse(args: argparse.Namespace) -> int:
    """Start the new image on a copy of the data, compare, remove the copy: before any switch.

    The live data dir is only read (copied); the throwaway container publishes no
    port and runs as the data's owner. On a mismatch or a start failure the old
    stack is started again from its unchanged compose file and the upgrade's
    pending record is set aside, so the host fails with the new server's own
    words while it goes on serving the old data.
    """
    record_path = Path(args.record)
    if not record_path.is_file():
        return 0  # no data was backed up (an upgrade of an empty data dir): nothing to rehearse
    before = json.loads(record_path.read_text())["before"]
    work = Path(args.work_dir)
    copy = work / "data"
    name = f"chroma-deploy-rehearsal-{os.getpid()}"
    label = f"chroma-deploy.rehearsal={args.data_dir}"
    for leftover in docker("ps", "-aq", "--filter", f"label={label}").split():
        docker("rm", "-f", leftover, check=False)  # from a rehearsal that was killed
    check_space(tree_size(args.data_dir), str(work.parent))
    if work.exists():
        shutil.rmtree(work)  # our own copy from a killed rehearsal, never user data
    work.mkdir(parents=True)
    started = time.monotonic()
    problem = None
    try:
        shutil.copytree(args.data_dir, copy, symlinks=True)
        for root, dirs, files in os.walk(copy):
            for entry in [*dirs, *files]:
                os.lchown(os.path.join(root, entry), args.uid, args.gid)
        os.chown(copy, args.uid, args.gid)
        env = [item for pair in args.env for item in ("-e", pair)]
        docker("run", "-d", "--name", name, "--label", label,
               "--user", f"{args.uid}:{args.gid}",
               *bind_mount(copy, args.persist_path), *env, args.image)  # fmt: skip
        address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).strip()
        url = f"http://{address}:8000"
        if not address or not wait_for_heartbeat(url, args.timeout):
            logs = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True,
                                  text=True, check=False)  # fmt: skip
            said = " ".join((logs.stdout + logs.stderr).split())[-400:]
            problem = f"the new server did not start on a copy of the data: {said or 'no output'}"
        else:
            after = inventory(Chroma(url, None), scopes_of(before))
            found = differences(before["collections"], after["collections"])
            if found:
                problem = "the new server shows other data: " + "; ".join(found[:5])
    except Refused as error:
        problem = str(error)
    finally:
        docker("rm", "-f", name, check=False)
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    if problem is None:
        counts = sum(item["count"] for item in before["collections"].values())
        print(f"rehearsal passed: {args.image} serves the same {len(before['collections'])} "
              f"collections and {counts} records from a copy ({seconds:.1f} s)")  # fmt: skip
        return 0
    # The old stack as it was (start_stack's --no-recreate): the compose file may name the
    # new build already (a tag built again), whose start is what the rehearsal refused.
    compose(args.project_dir, args.compose_file, "up", "--detach", "--no-recreate", "--wait")
    os.replace(record_path, record_path.with_name(f"rehearsal-failed-{stamp()}.json"))
    print(f"upgrade rehearsal FAILED, nothing was switched and the old stack is running again: "
          f"{problem}", file=sys.stderr)  # fmt: skip
    return 3


def serve_unpublished(
    name: str,
    label: str,
    data_dir: str,
    args: argparse.Namespace,
    grace: int | None = None,
    pause: float = 0.5,
) -> str:
    """Start ``args.image`` on ``data_dir`` as the data's owner, no port published: its URL.

    Only the host reaches it, at its bridge address; Refused with the server's
    last words when it does not answer within ``args.timeout`` seconds.
    """
    env = [item for pair in args.env for item in ("-e", pair)]
    # Its own stop timeout as well: a leftover a killed run left is stopped (migrate's
    # stop_leftover_checks) as gently as this run would have stopped it.
    timeout = [] if grace is None else ["--stop-timeout", str(grace)]
    docker("run", "-d", "--name", name, "--label", label, "--user", f"{args.uid}:{args.gid}",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", *timeout,
           *bind_mount(data_dir, args.persist_path), *env, args.image)  # fmt: skip
    address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).strip()
    url = f"http://{address}:8000"
    if address and wait_for_heartbeat(url, args.timeout, pause):
        return url
    logs = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True,
                          text=True, check=False)  # fmt: skip
    said = " ".join((logs.stdout + logs.stderr).split())[-400:]
    raise Refused(f"{args.image} did not answer on the data dir: {said or 'no output'}")


def servers_on(data_dir: str) -> list[str]:
    """Running containers that mount ``data_dir``: none may, while the check opens it."""
    running = docker("ps", "-q").split()
    if not running:
        return []
    real = os.path.realpath(data_dir)
    found = []
    # check=False: a container that ended between ps and inspect is left out, not an error.
    for container in json.loads(docker("inspect", *running, check=False) or "[]"):
        sources = [mount.get("Source") or "" for mount in container.get("Mounts") or []]
        if any(os.path.realpath(source) == real for source in sources):
            found.append(container["Name"].lstrip("/"))
    return found


def stop_unpublished(label: str, grace: int | None = None) -> None:
    """Stop (SIGTERM, as compose would) and remove this check's containers, also a killed run's.

    One on the live data dir gets the grace the stack's own server gets (``grace``);
    None: its own stop timeout (a drill's throwaway copy).
    """
    for container in docker("ps", "-aq", "--filter", f"label={label}").split():
        docker("stop", *stop_time(grace), container, check=False)
        docker("rm", container, check=False)


def verify_upgrade(args: argparse.Namespace) -> int:
    """Start the new version on the live data dir, unpublished, and compare: then it may publish.

    Runs after the backup (the stack stopped since) and before ``up``: nothing
    but this check reaches the server it starts, so what it finds is what the
    upgrade did, not what clients wrote since. It compares the backup's
    manifest (collections, counts, ids, documents, metadata) and the vectors
    sampled from the old server before it stopped (``--vectors``, from
    chroma_inventory.py --vector-sample). Match: the record becomes
    ``upgraded-*.json`` and ``up`` publishes. Mismatch: a ``failed-*`` record,
    the stack stays stopped, and the backup is the way back with every write in
    it (none can have been made since). A server that does not start or answer
    changes nothing: the record stays pending and the next deploy checks again.
    """
    record_path = Path(args.record)
    if not record_path.is_file():
        print("no upgrade is waiting for verification (there was no data to back up)")
        return 0
    record = json.loads(record_path.read_text())
    before = record["before"]
    vectors = Path(args.vectors) if args.vectors else None
    sample = json.loads(vectors.read_text()) if vectors and vectors.is_file() else None
    transition = f"upgrade {record['from']} -> {record['to']}"
    label = f"chroma-deploy.upgrade-check={args.data_dir}"
    stop_unpublished(label, args.stop_grace)  # one a killed run left on this data dir
    others = servers_on(args.data_dir)
    if others:
        print(f"could not verify {transition}: {', '.join(others)} runs on {args.data_dir}, and "
              "two servers must never open one data dir; nothing was changed: stop it and "
              "deploy again", file=sys.stderr)  # fmt: skip
        return 1
    try:
        chroma = Chroma(serve_unpublished(f"chroma-deploy-upgrade-check-{os.getpid()}", label,
                                          args.data_dir, args, args.stop_grace), None)  # fmt: skip
        after = inventory(chroma, scopes_of(before))
        now = sampled_vectors_now(chroma, sample) if sample else None
    except Exception as error:
        print(f"could not verify {transition}: {type(error).__name__}: {error}; nothing was "
              "published and the stack stays stopped: the next deploy checks again",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        stop_unpublished(label, args.stop_grace)
    found = differences(before["collections"], after["collections"])
    if sample is not None and now is not None:
        found += vector_differences(sample, now)
    record["vectors"] = sample
    if vectors:
        vectors.unlink(missing_ok=True)  # kept in the record from here on
    if not found:
        write_json(record_path, record)
        os.replace(record_path, record_path.with_name(done_name(record)))
        counts = sum(item["count"] for item in after["collections"].values())
        compared = (
            f"counts, ids, documents, metadata and {sample_size(sample)} sampled vectors equal"
            if sample is not None
            else f"counts, ids, documents and metadata equal; vectors not compared: the "
            f"{record['from']} server did not answer before it was stopped"
        )
        print(f"{transition} verified before it was published: {len(after['collections'])} "
              f"collections, {counts} records; {compared}")  # fmt: skip
        return 0
    failed = record_path.with_name(f"failed-upgrade-{stamp()}.json")
    record["differences"] = found
    write_json(failed, record)
    record_path.unlink()
    print(f"{transition} FAILED verification before it was published ({'; '.join(found[:5])}): "
          f"no client has written to it and the stack stays stopped. Restore "
          f"{record.get('backup')} with restore.py (it holds every write, on {record['from']}), "
          f"then see {failed}", file=sys.stderr)  # fmt: skip
    return 3


def has_schema(database: Path) -> bool:
    """Whether ``database`` records a migration: a server made its schema (read-only).

    False when there is no file, or no ``migrations`` table or no row in it (a 1.x server
    that validates and refused an empty data dir leaves such a file). Any other fault
    of the file is Refused: a schema is never made over a database that cannot be read.
    """
    if not database.is_file():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True)
        ) as db:
            return bool(db.execute("SELECT COUNT(*) FROM migrations").fetchone()[0])
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return False
        raise Refused(f"cannot read {database}: {error}; nothing was changed") from None
    except sqlite3.Error as error:
        raise Refused(f"cannot read {database}: {error}; nothing was changed") from None


RESTORED_HELP = "a restored archive's data: its migrations applied too"


def init_schema(args: argparse.Namespace) -> int:
    """Make a first start's schema with the image in ``apply`` mode, before the stack validates.

    The stack's own 1.x server validates its schema (sqlitedb.migration_mode), which
    also refuses a data dir with no schema: every migration is pending there. With
    ``--restored`` a database with a schema is opened too: the data a restore just
    switched in (its archive is its backup) may be behind the image its version's
    server runs (an archive labelled with the oldest known release that opens its data),
    and this start after the restore is where its migrations belong. So
    before the first ``up`` the same image starts on the data dir as its owner, with
    no port published and the check servers' ``--env`` (``apply``), and is stopped as
    soon as it answers: it commits its migrations before it listens. A database
    with a schema is never opened here, and neither is a data dir a container mounts.
    """
    database = Path(args.data_dir) / "chroma.sqlite3"
    restored = args.restored
    if has_schema(database) and not restored:
        print(f"{database} has its schema already")
        return 0
    label = f"chroma-deploy.schema-init={args.data_dir}"
    stop_unpublished(label, args.stop_grace)  # one a killed run left on this data dir
    others = servers_on(args.data_dir)
    if others:
        raise Refused(f"{', '.join(others)} runs on {args.data_dir}, and two servers "
                      "must never open one data dir; nothing was changed: stop it and deploy "
                      "again")  # fmt: skip
    started = time.monotonic()
    try:
        serve_unpublished(f"chroma-deploy-schema-init-{os.getpid()}", label, args.data_dir, args,
                          args.stop_grace, pause=0.1)  # fmt: skip
    finally:
        stop_unpublished(label, args.stop_grace)
    if not has_schema(database):
        raise Refused(f"{args.image} answered on {args.data_dir} but made no schema there")
    made = "brought to its level" if restored else "made"
    print(f"Chroma's schema {made} in {args.data_dir} by {args.image} (apply), before the "
          f"stack validates it ({time.monotonic() - started:.1f} s)")  # fmt: skip
    return 0


def compose_args(args: argparse.Namespace, *words: str) -> list[str]:
    """``docker compose`` on the project's file, as operations/stack.compose_command spells it."""
    return ["docker", "compose", "--project-directory", args.project_dir, "-f",
            args.compose_file, *words]  # fmt: skip


def shown(argv: list[str], **options: object) -> int:
    """Run ``argv`` with its output shown as the operation's (as the shell steps did)."""
    return subprocess.run(argv, check=False, **options).returncode  # type: ignore[call-overload]


def record_verdict(args: argparse.Namespace) -> None:
    """Compose's verdict on the stack it just started (operations/stack.record_verdict).

    Written as that shell writes it, so facts/compose.ComposeStack reads it: the
    sha256 of the compose file and the .env beside it, the project's container ids
    (sorted, each followed by a space), then ``config --hash``'s lines; to a name
    of its own, renamed. Not recorded is no failure: the next run asks compose.
    """
    if not args.verdict:
        return
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter",
         f"label=com.docker.compose.project={args.project_name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    hashes = subprocess.run(compose_args(args, "config", "--hash", "*"), capture_output=True,
                            text=True, check=False)  # fmt: skip
    digest = hashlib.sha256()
    for path in (args.compose_file, f"{args.project_dir}/.env"):
        with contextlib.suppress(OSError):  # cat 2>/dev/null: a missing .env adds nothing
            digest.update(Path(path).read_bytes())
    ids = "".join(f"{found} " for found in sorted(listed.stdout.split())) or " "
    tmp = f"{os.path.dirname(args.verdict)}/.compose-verdict.{os.getpid()}"
    try:
        if listed.returncode or hashes.returncode:
            raise OSError("docker did not answer")
        os.makedirs(os.path.dirname(args.verdict), exist_ok=True)
        with open(tmp, "w") as handle:
            handle.write(f"{digest.hexdigest()}\n{ids}\n{hashes.stdout.rstrip(chr(10))}\n")
        os.replace(tmp, args.verdict)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        print("chroma-deploy: could not record compose's verdict; the next run asks compose "
              "again", file=sys.stderr)  # fmt: skip


def start_stack(args: argparse.Namespace) -> bool:
    """``up --detach --no-recreate --wait`` (every service healthy), then its verdict
    (stack.compose_up).

    The containers a stop left are started as they were, never recreated: the compose file
    may name another build since they started (a tag built or pulled again, the file edited
    by hand), whose first start on the data is an upgrade's, with its backup and rehearsal
    (the deploy's); with the schema guard it would refuse the data and leave the stack
    down. Containers that are gone (``down``, a restore) are created from the file.
    """
    up = compose_args(args, "up", "--detach", "--no-recreate", "--wait", "--wait-timeout",
                      str(args.wait_timeout))  # fmt: skip
    if shown(up) != 0:
        return False
    record_verdict(args)
    return True


def backup(args: argparse.Namespace) -> int:
    """Stop, archive and manifest the data dir, start again (unless --no-restart), checksum.

    The manifest is read from the stopped server's chroma.sqlite3, so it matches
    the archive exactly; archive and manifest are written under ``.tmp`` names
    and renamed after, so a killed backup is never taken for one. Without the
    compose file (removed by hand, or a takeover whose data must be upgraded),
    the project's containers are stopped, and started again, by their compose
    label, as compose itself finds them. With ``--record``, an upgrade's pending
    record (``--field``s, the archive's path and its manifest as ``before``) is
    written for the verification; the stack then stays stopped (--no-restart)
    from the manifest to the switch, so no write can land in between.
    """
    source = f"{args.project_dir}/{args.data_dir}"
    if args.record:
        os.makedirs(os.path.dirname(args.record), exist_ok=True)  # with the mode deploys give it
    os.umask(0o077)  # the archive, its manifest and checksum, and the record: the owner's only
    if args.skip_without_data and not os.path.isfile(f"{source}/chroma.sqlite3"):
        print(f"no data yet: Chroma {args.version} -> {args.before_version} needs no backup")
        return 0
    os.makedirs(args.backup_dir, exist_ok=True)
    os.chmod(args.backup_dir, 0o700)
    label = f"-before-{args.before_version}" if args.before_version else ""
    stem = f"{args.backup_dir}/{args.project_name}-{stamp()}{label}"
    try:
        check_space(tree_size(source), args.backup_dir)
    except Refused as refusal:
        print(f"space: {refusal}", file=sys.stderr)
        return 1
    by_label: list[str] = []
    if os.path.isfile(args.compose_file):
        if shown(compose_args(args, "stop")) != 0:
            return 1
    else:
        label = f"label=com.docker.compose.project={args.project_name}"
        by_label = docker("ps", "-q", "--no-trunc", "--filter", label).split()
        stop = ["docker", "stop", *stop_time(args.stop_grace), *by_label]
        if by_label and shown(stop, stdout=subprocess.DEVNULL):
            return 1

    def start_again() -> int:
        if os.path.isfile(args.compose_file):
            return 0 if start_stack(args) else 1
        return shown(["docker", "start", *by_label], stdout=subprocess.DEVNULL) if by_label else 0

    try:
        found = manifest_of(f"{source}/chroma.sqlite3", args.project_name, args.version,
                            args.before_version)  # fmt: skip
        write_json(Path(f"{stem}.json.tmp"), found)
        archived = shown(["tar", "-C", args.project_dir, "-czf", f"{stem}.tar.gz.tmp",
                          args.data_dir]) == 0  # fmt: skip
    except Exception as error:  # the stack must run again, whatever stopped the manifest
        print(f"manifest: {type(error).__name__}: {error}", file=sys.stderr)
        archived = False
    if not archived:
        start_again()
        print("the backup failed; the stack was started again", file=sys.stderr)
        return 1
    # A failed start does not undo the archive: it is written, and the exit says the stack
    # is not serving (an attack: "backup written" and exit 0 over a stack left down).
    down = not args.no_restart and start_again() != 0
    os.replace(f"{stem}.tar.gz.tmp", f"{stem}.tar.gz")
    os.replace(f"{stem}.json.tmp", f"{stem}.json")
    name = os.path.basename(f"{stem}.tar.gz")
    with open(f"{stem}.sha256", "w") as checksum:
        if shown(["sha256sum", name], cwd=args.backup_dir, stdout=checksum) != 0:
            if args.no_restart:  # no backup to go on from: serve again, as on any failure
                start_again()
            return 1
    print(f"backup written: {stem}.tar.gz")
    if down:
        print(f"Chroma did not start again after the backup: {args.project_name}'s chroma "
              "container is not healthy (`docker compose logs chroma` in the project dir says "
              "why); the archive is written", file=sys.stderr)  # fmt: skip
        return 1
    if args.record:
        fields = dict(field.split("=", 1) for field in args.field)
        before = json.loads(Path(f"{stem}.json").read_text())
        write_json(Path(args.record), {**fields, "backup": f"{stem}.tar.gz", "before": before})
    return 0


def restore(args: argparse.Namespace) -> int:
    """Unpack an archive beside the data dir and switch it in by rename, the old data aside.

    The archive was checked on the control machine (operations/data_safety.archive_problem)
    and the disk has room. The stack is stopped for the switch; a pending record
    names the archive and where the old data goes before anything moves, so a
    killed run is never taken for an empty server. Our own half extraction is
    removed before and on failure, never user data; the stack is started again
    only if it ran. A compose file for the archive's version (``--switch``) is put
    in place right after the data it reads, never before.
    """
    staging = f"{args.project_dir}/.{args.data_dir}.restore-staging"
    unpacked = f"{staging}/{args.data_dir}"
    when = f"{stamp()}-{os.getpid()}"  # the pid: two restores in one second get two asides
    os.makedirs(os.path.dirname(args.pending), exist_ok=True)
    listed = subprocess.run(compose_args(args, "ps", "--quiet", "--status", "running"),
                            stdout=subprocess.PIPE, text=True, check=False)  # fmt: skip
    if listed.returncode != 0 or shown(compose_args(args, "stop")) != 0:
        return 1
    steps = (["rm", "-rf", staging], ["mkdir", "-p", staging],
             ["tar", "-C", staging, "-xzf", args.archive])  # fmt: skip
    owned = (["chown", "-R", f"{args.uid}:{args.gid}", unpacked], ["chmod", args.mode, unpacked])
    if not (all(shown(step) == 0 for step in steps) and os.path.isdir(unpacked)
            and all(shown(step) == 0 for step in owned)):  # fmt: skip
        shown(["rm", "-rf", staging, *([args.switch] if args.switch else [])])
        if listed.stdout.strip():
            start_stack(args)
        print(f"{args.archive} could not be unpacked into {staging}: nothing was changed",
              file=sys.stderr)  # fmt: skip
        return 1
    if switch_in(args, unpacked, args.archive, when) is None:
        return 1
    os.rmdir(staging)
    return 0


def switch_in(args: argparse.Namespace, unpacked: str, source: str, when: str) -> str | None:
    """Rename ``unpacked`` into the data dir, the current one aside: where it went, or None.

    A pending record naming ``source`` and the aside is written before anything
    moves, so a killed run is never taken for an empty server; a compose file for
    the source's version (``--switch``) follows the data it reads, never before.
    The stack is stopped already (restore; files/chroma_offsite_restore.py).
    """
    target = f"{args.project_dir}/{args.data_dir}"
    aside = f"{target}.before-restore-{when}"
    write_json(Path(args.pending), {"archive": source, "aside": aside})
    try:
        if os.path.exists(target):
            os.rename(target, aside)
        os.rename(unpacked, target)
        if args.switch:
            os.replace(args.switch, args.compose_file)  # the version that reads the restored data
    except OSError as error:  # the pending record says where everything is
        print(f"restore: {error}; the data before the restore is in {aside}", file=sys.stderr)
        return None
    print(f"the data before the restore is in {aside}")
    return aside


def restored(args: argparse.Namespace) -> int:
    """The restored server against the archive's manifest; a match marks the restore done."""
    try:
        differs = compare(args)
    except (OSError, ValueError, KeyError) as error:
        print(f"could not read {args.manifest}: {type(error).__name__}: {error}", file=sys.stderr)
        differs = 1
    if differs:
        print("restored data does not match the backup manifest; the data before the restore "
              f"is kept beside {args.target}", file=sys.stderr)  # fmt: skip
        return 1
    Path(args.marker).touch()
    Path(args.pending).unlink(missing_ok=True)
    print(f"restored {args.archive}: verified against its manifest")
    return 0


def prove(args: argparse.Namespace) -> int:
    """Write a canary, ``down``, ``up --wait``, read it back, remove it: pass or fail."""
    chroma = Chroma(args.url, args.token_file, args.tls_dir)
    name = "chroma-deploy-canary"
    found = None
    try:
        canary(chroma, "write", name)
        if shown(compose_args(args, "down")) == 0 and start_stack(args):
            found = canary(chroma, "read", name)
    except Exception as error:
        print(f"chroma_inventory: {args.url}: {type(error).__name__}: {error}", file=sys.stderr)
    try:
        canary(chroma, "delete", name)
    except Exception as error:
        print(f"chroma_inventory: {args.url}: {type(error).__name__}: {error}", file=sys.stderr)
    if found == {"canary": "present"}:
        print("persistence proof: pass")
        return 0
    print("persistence proof: FAIL: the canary did not survive down/up", file=sys.stderr)
    return 1


def sample_vectors(args: argparse.Namespace) -> int:
    """The old server's vectors of a sample of records, right before an upgrade's backup stops it.

    A client that changes a sampled record's vector between this read and the
    stop shows as a difference. A server that does not answer (stopped already)
    leaves no sample, and the verification says that it compared no vectors.
    """
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    Path(args.out).unlink(missing_ok=True)
    if not os.path.isfile(args.sqlite):
        return 0
    try:
        sample = vector_sample(
            Chroma(args.url, args.token_file, args.tls_dir), sqlite_scopes(args.sqlite)
        )
    except Exception as error:
        print(f"chroma_inventory: {args.url}: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"Chroma {args.version} did not answer: the upgrade's verification compares no "
              "vectors")  # fmt: skip
        return 0
    write_json(Path(args.out), sample)
    print(f"vectors of a sample of records read from Chroma {args.version}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    staged = commands.add_parser("stage")
    for option in ("--record", "--kind", "--subject", "--source", "--data-dir", "--mode"):
        staged.add_argument(option, required=True)
    staged.add_argument("--uid", type=int, required=True)
    staged.add_argument("--gid", type=int, required=True)
    staged.add_argument("--container", action="append", default=[])
    checked = commands.add_parser("verify")
    for option in ("--record", "--data-dir"):
        checked.add_argument(option, required=True)
    url = checked.add_mutually_exclusive_group(required=True)
    url.add_argument("--url", help="the published server's")
    url.add_argument("--image", help="start this image on the data dir, unpublished")
    checked.add_argument("--token-file")
    checked.add_argument("--tls-dir", help=TLS_DIR_HELP)
    checked.add_argument("--persist-path")
    checked.add_argument("--uid", type=int)
    checked.add_argument("--gid", type=int)
    checked.add_argument("--timeout", type=int, default=120)
    checked.add_argument("--env", action="append", default=[], help="NAME=value")
    for sub in (staged, checked):
        sub.add_argument("--compose-file")
        sub.add_argument("--project-dir")
        sub.add_argument("--stop-grace", type=int, help=STOP_GRACE_HELP)
    pruned = commands.add_parser("prune")
    for option in ("--dir", "--project", "--version"):
        pruned.add_argument(option, required=True)
    pruned.add_argument("--keep", type=int, required=True)
    spaced = commands.add_parser("space")
    spaced.add_argument("--source", required=True)
    spaced.add_argument("--target", required=True)
    spaced.add_argument("--factor", type=int, default=1)
    compared = commands.add_parser("compare")
    for option in ("--manifest", "--url"):
        compared.add_argument(option, required=True)
    compared.add_argument("--token-file")
    compared.add_argument("--tls-dir", help=TLS_DIR_HELP)
    rehearsed = commands.add_parser("rehearse")
    for option in ("--record", "--data-dir", "--image", "--persist-path", "--work-dir",
                   "--compose-file", "--project-dir"):  # fmt: skip
        rehearsed.add_argument(option, required=True)
    rehearsed.add_argument("--uid", type=int, required=True)
    rehearsed.add_argument("--gid", type=int, required=True)
    rehearsed.add_argument("--timeout", type=int, default=120)
    rehearsed.add_argument("--env", action="append", default=[], help="NAME=value")
    checked_upgrade = commands.add_parser("verify-upgrade")
    for option in ("--record", "--data-dir", "--image", "--persist-path"):
        checked_upgrade.add_argument(option, required=True)
    checked_upgrade.add_argument("--uid", type=int, required=True)
    checked_upgrade.add_argument("--gid", type=int, required=True)
    checked_upgrade.add_argument("--timeout", type=int, default=120)
    checked_upgrade.add_argument("--env", action="append", default=[], help="NAME=value")
    checked_upgrade.add_argument("--vectors", help="chroma_inventory.py --vector-sample's answer")
    checked_upgrade.add_argument("--stop-grace", type=int, help=STOP_GRACE_HELP)
    initialised = commands.add_parser("init-schema")
    for option in ("--data-dir", "--image", "--persist-path"):
        initialised.add_argument(option, required=True)
    initialised.add_argument("--uid", type=int, required=True)
    initialised.add_argument("--gid", type=int, required=True)
    initialised.add_argument("--timeout", type=int, default=120)
    initialised.add_argument("--env", action="append", default=[], help="NAME=value")
    initialised.add_argument("--stop-grace", type=int, help=STOP_GRACE_HELP)
    initialised.add_argument("--restored", action="store_true", help=RESTORED_HELP)
    stack_commands = []
    backed_up = commands.add_parser("backup")
    for option in ("--data-dir", "--backup-dir", "--version"):
        backed_up.add_argument(option, required=True)
    backed_up.add_argument("--before-version", help="an upgrade's new version (in the name)")
    backed_up.add_argument("--no-restart", action="store_true", help="leave the stack stopped")
    backed_up.add_argument("--record", help="write an upgrade's pending record here")
    backed_up.add_argument("--field", action="append", default=[], help="NAME=value, in --record")
    backed_up.add_argument("--skip-without-data", action="store_true",
                           help="no chroma.sqlite3: say so and back up nothing")  # fmt: skip
    backed_up.add_argument("--stop-grace", type=int, help=STOP_GRACE_HELP)
    stack_commands.append(backed_up)
    restored_into = commands.add_parser("restore")
    for option in ("--archive", "--data-dir", "--mode", "--pending"):
        restored_into.add_argument(option, required=True)
    restored_into.add_argument("--uid", type=int, required=True)
    restored_into.add_argument("--gid", type=int, required=True)
    restored_into.add_argument("--switch", help="the archive's version's compose file, checked")
    stack_commands.append(restored_into)
    proved = commands.add_parser("prove")
    proved.add_argument("--url", required=True)
    proved.add_argument("--token-file")
    proved.add_argument("--tls-dir", help=TLS_DIR_HELP)
    stack_commands.append(proved)
    for sub in stack_commands:
        for option in ("--project-dir", "--project-name", "--compose-file"):
            sub.add_argument(option, required=True)
        sub.add_argument("--wait-timeout", type=int, required=True)
        sub.add_argument("--verdict", help="where compose's verdict is recorded after up")
    checked_restore = commands.add_parser("restored")
    for option in ("--manifest", "--url", "--marker", "--pending", "--archive", "--target"):
        checked_restore.add_argument(option, required=True)
    checked_restore.add_argument("--token-file")
    checked_restore.add_argument("--tls-dir", help=TLS_DIR_HELP)
    sampled = commands.add_parser("sample-vectors")
    for option in ("--url", "--sqlite", "--out", "--version"):
        sampled.add_argument(option, required=True)
    sampled.add_argument("--token-file")
    sampled.add_argument("--tls-dir", help=TLS_DIR_HELP)
    args = parser.parse_args()
    # Lines in the order they happen, between the outputs of the programs run here.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    steps = {"stage": stage, "verify": verify, "prune": prune, "space": space,
             "compare": compare, "rehearse": rehearse,
             "verify-upgrade": verify_upgrade, "init-schema": init_schema,
             "backup": backup, "restore": restore,
             "restored": restored, "prove": prove, "sample-vectors": sample_vectors}  # fmt: skip
    try:
        return steps[args.command](args)
    except Refused as refusal:
        print(f"{args.command}: {refusal}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. a data dir that holds other files than .gitkeep
        print(f"{args.command}: {error}; nothing was switched, run again once fixed",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
