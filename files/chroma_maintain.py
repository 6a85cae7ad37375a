#!/usr/bin/env python3
"""A live Chroma's upkeep on its host: what leaks and what runs out, and its two repairs.

Standard library only; uploaded next to chroma_inventory.py and chroma_safety.py
(whose private SQLite copy, inventory, stack start and checks it reuses).

    chroma_maintain.py report --project-dir P --data-dir D [--backup-target DIR]
                       [--mem-limit BYTES] [--textfile PATH --host NAME --project-name N]
    chroma_maintain.py apply --what orphans|vacuum --project-dir P --project-name N
                       --compose-file F --wait-timeout T [--verdict FILE] --data-dir D
                       --version V --persist-path PATH --url URL [--token-file F]
                       [--tls-dir T]

``report`` prints one JSON document (maintain.py's per-host ``report``, shape in
schemas/maintain.schema.json) and, with ``--textfile``, writes the same numbers as
Prometheus metrics (the host's own schedule, chroma_maintain_schedule). It reads a
private copy of chroma.sqlite3 and its WAL (never the live file) and only SQLite's
aggregate queries over it: its cost does not grow with the records beyond theirs.

- orphaned segment dirs: dirs of the data dir named like a segment (a UUID) that
  chroma.sqlite3's ``segments`` table does not name. Chroma 1.x leaves a deleted
  collection's HNSW dir behind (single-node has no garbage collection).
- the SQLite file, its reclaimable bytes (``freelist_count * page_size``), the WAL.
- free disk beside what a vacuum (a new copy of the file, written through the WAL),
  a backup's staging copy (the data dir) and an upgrade's rehearsal copy need.
- the HNSW indexes' memory, estimated from the record count and dimension of each
  collection (hnswlib's layout: the vector, the level-0 links and a label).

``apply`` runs with the project lock held by maintain.py's pyinfra run, after its
backup, which leaves the stack stopped (a local archive: one stop for both; the
downtime is counted from the chroma container's stop). It stops the stack (a no-op
then; a failure from here on starts it again), takes the inventory of the stopped server
(chroma_inventory.sqlite_inventory), writes a pending record
(``<project>/.chroma-deploy/maintain-pending.json``; ``begin`` wrote a first one
before the backup stopped the stack) before anything moves, does
the repair, starts the stack and compares the served data with that inventory.
A run killed at any step is finished by the next ``apply`` from the record: moves
left half-way are completed (orphans), a vacuum SQLite rolled back or finished
itself is verified, and the stack started. A mismatch puts moved dirs back.

Exit codes: 0 done (or nothing to do), 1 error or refusal (one line on stderr).
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What Chroma's HNSW segment dir holds (hnswlib's four files; 0.x adds its pickle).
HNSW_FILES = {"header.bin", "data_level0.bin", "length.bin", "link_lists.bin",
              "index_metadata.pickle"}  # fmt: skip
MARGIN_BYTES = 64 * 1024 * 1024  # as chroma_safety.check_space
HNSW_M = 16  # hnswlib's and Chroma's default max_neighbors
LABEL_BYTES = 8
ID_MAP_BYTES = 64  # Chroma's id <-> label maps, per record (an estimate)
MEMORY_SHARE = 0.8  # an index estimate above this share of the memory is a finding
RECLAIMABLE_SHARE = 0.2  # free pages above this share of the file (and 1 MiB) are a finding
RECLAIMABLE_MIN = 1024 * 1024
PENDING = "maintain-pending.json"
STATE_DIR = ".chroma-deploy"
# Tests only: SIGKILL this program when it reaches the named step (a real kill, at a
# known point, for the resume test); never set by chroma-deploy.
KILL_AT = "CHROMA_DEPLOY_MAINTAIN_KILL_AT"


class Refused(Exception):
    """A step that must not go on; the message says why and what to do."""


# --- the report ------------------------------------------------------------------------


def tree_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # gone while walking
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def private_copy(path: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
    """A connection to a copy of ``path`` and its ``-wal``: chroma_inventory's, beside this
    tool in its dir (the tools are uploaded together)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import chroma_inventory

    return chroma_inventory.private_copy(path)


def segment_ids(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT id FROM segments")}


def hnsw_files_only(path: str) -> bool:
    """Whether ``path`` holds nothing but an HNSW segment's files: a UUID-named dir of
    another tool (other files, subdirs) is never called an orphan, nor moved."""
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        return all(e.is_file(follow_symlinks=False) and e.name in HNSW_FILES for e in entries)
    return False


def segment_like_dirs(data_dir: str) -> set[str]:
    """The names of the data dir's dirs named like a segment (a UUID)."""
    with os.scandir(data_dir) as entries:
        return {
            entry.name
            for entry in entries
            if entry.is_dir(follow_symlinks=False) and SEGMENT_DIR.fullmatch(entry.name)
        }


def orphaned_dirs(data_dir: str, named: set[str], listed: set[str] | None = None) -> list[dict]:
    """Dirs named like a segment, holding only HNSW files, that ``segments`` does not
    name, with their bytes. ``listed``: only these (the dirs seen before ``named`` was read)."""
    candidates = segment_like_dirs(data_dir) if listed is None else listed
    found = [
        {"name": name, "bytes": tree_size(os.path.join(data_dir, name))}
        for name in candidates
        if name not in named and hnsw_files_only(os.path.join(data_dir, name))
    ]
    return sorted(found, key=lambda item: item["name"])


def _max_neighbors(config: object) -> int:
    """M of a collection's HNSW config (1.x JSON ``hnsw.max_neighbors``), else the default."""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        value = json.loads(str(config)).get("hnsw", {}).get("max_neighbors")
        if isinstance(value, int) and value > 0:
            return value
    return HNSW_M


def index_bytes(records: int, dimension: int, m: int = HNSW_M) -> int:
    """hnswlib's memory for ``records`` vectors: the float32 vector, level-0 links
    (2*M neighbours and a count, 4 bytes each), a label, and Chroma's id maps."""
    return records * (dimension * 4 + (2 * m + 1) * 4 + LABEL_BYTES + ID_MAP_BYTES)


def collections(db: sqlite3.Connection) -> list[dict]:
    """Records and dimension of every collection, by aggregate queries only."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(collections)")}
    config = "c.config_json_str" if "config_json_str" in columns else "NULL"
    counts = dict(
        db.execute(
            "SELECT s.collection, COUNT(*) FROM embeddings e JOIN segments s "
            "ON e.segment_id = s.id WHERE s.scope = 'METADATA' GROUP BY s.collection"
        ).fetchall()
    )
    found = []
    for collection_id, name, dimension, config_json in db.execute(
        f"SELECT c.id, c.name, c.dimension, {config} FROM collections c"  # noqa: S608
    ):
        records = int(counts.get(collection_id, 0))
        found.append(
            {
                "name": name,
                "records": records,
                "dimension": int(dimension or 0),
                "index_bytes": index_bytes(
                    records, int(dimension or 0), _max_neighbors(config_json)
                ),
            }
        )
    return sorted(found, key=lambda item: item["name"])


def host_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def existing_ancestor(path: str) -> str:
    """``path``, or its nearest parent that exists: the disk a dir the backup has not made
    yet will be made on (a new backup dir is not a disk of no free space)."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def report(data_dir: str, backup_target: str | None, mem_limit: int | None) -> dict:
    """Everything the report says about one data dir (see the module docstring)."""
    if not os.path.isdir(data_dir):
        raise Refused(f"{data_dir} is not a directory: deploy first")
    sqlite = os.path.join(data_dir, "chroma.sqlite3")
    result: dict = {"data_dir": data_dir, "collections": [], "orphans": [], "unfinished": None}
    pending = os.path.join(os.path.dirname(data_dir.rstrip("/")), STATE_DIR, PENDING)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError), open(pending) as handle:
        result["unfinished"] = str(json.load(handle)["what"])
    if os.path.isfile(sqlite):
        # The dirs are listed before the database is copied: a collection made between the
        # two has its segment row committed before its first flush makes its dir, so every
        # dir listed is named by the copy if it is a live segment's (listed after the copy,
        # a new collection's dir looked like an orphan: the attack's row 6).
        listed = segment_like_dirs(data_dir)
        with private_copy(sqlite) as db:
            named = segment_ids(db)
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            freelist = db.execute("PRAGMA freelist_count").fetchone()[0]
            result["collections"] = collections(db)
        result["orphans"] = orphaned_dirs(data_dir, named, listed)
    else:
        page_size = freelist = 0
    data_bytes = tree_size(data_dir)
    sqlite_bytes, wal_bytes = file_size(sqlite), file_size(sqlite + "-wal")
    disk = shutil.disk_usage(data_dir)
    target = backup_target or data_dir
    result.update(
        data_bytes=data_bytes,
        sqlite_bytes=sqlite_bytes,
        wal_bytes=wal_bytes,
        reclaimable_bytes=page_size * freelist,
        orphaned_bytes=sum(item["bytes"] for item in result["orphans"]),
        disk_free_bytes=disk.free,
        disk_total_bytes=disk.total,
        backup_target=target,
        backup_target_free_bytes=shutil.disk_usage(existing_ancestor(target)).free,
        # A vacuum writes a new copy of the database (through the WAL, beside it).
        vacuum_needs_bytes=sqlite_bytes + wal_bytes + MARGIN_BYTES,
        # A backup's archive (local) or staging copy (off-host) holds the data dir.
        backup_needs_bytes=data_bytes + MARGIN_BYTES,
        # An upgrade rehearses on a copy of the data dir beside it, after its backup.
        upgrade_needs_bytes=data_bytes + MARGIN_BYTES,
        records=sum(item["records"] for item in result["collections"]),
        index_memory_bytes=sum(item["index_bytes"] for item in result["collections"]),
        memory_limit_bytes=mem_limit or host_memory(),
        memory_limit_source="chroma_mem_limit" if mem_limit else "host memory",
    )
    return result


def finding(kind: str, size: int, message: str) -> dict:
    return {"kind": kind, "bytes": size, "message": message}


def findings(found: dict) -> list[dict]:
    """What the report asks a person (or ``--apply``) to act on: kind, bytes, one line."""
    items = []
    if found["unfinished"]:
        message = (f"a killed maintain.py run left its {found['unfinished']} unfinished: "
                   f"maintain.py --apply {found['unfinished']} finishes it")  # fmt: skip
        items.append(finding("unfinished_repair", 0, message))
    orphaned = found["orphaned_bytes"]
    if found["orphans"]:
        message = (f"{len(found['orphans'])} orphaned segment dir(s) hold {orphaned} bytes: "
                   "maintain.py --apply orphans moves them out of the data dir")  # fmt: skip
        items.append(finding("orphaned_segments", orphaned, message))
    reclaimable, sqlite_bytes = found["reclaimable_bytes"], found["sqlite_bytes"]
    if reclaimable >= RECLAIMABLE_MIN and reclaimable >= RECLAIMABLE_SHARE * sqlite_bytes:
        message = (f"{reclaimable} of the {sqlite_bytes} bytes of chroma.sqlite3 are free "
                   "pages: maintain.py --apply vacuum reclaims them")  # fmt: skip
        items.append(finding("sqlite_reclaimable", reclaimable, message))
    places = [("vacuum", found["data_dir"], found["disk_free_bytes"]),
              ("upgrade", found["data_dir"], found["disk_free_bytes"]),
              ("backup", found["backup_target"], found["backup_target_free_bytes"])]  # fmt: skip
    for what, where, free in places:
        need = found[f"{what}_needs_bytes"]
        if free < need:
            message = f"a {what} needs {need} bytes free on {where}'s disk and {free} are"
            message += ": free space there"
            items.append(finding("disk_headroom", need - free, message))
    limit, estimate = found["memory_limit_bytes"], found["index_memory_bytes"]
    if limit and estimate > MEMORY_SHARE * limit:
        message = (f"the HNSW indexes need about {estimate} bytes of memory, over "
                   f"{int(MEMORY_SHARE * 100)}% of {limit} ({found['memory_limit_source']}): "
                   "raise chroma_mem_limit or the host's memory")  # fmt: skip
        items.append(finding("index_memory", estimate, message))
    return items


# The metrics, as checks/maintain_metrics.py writes them with prometheus_client on the
# control machine (a unit test compares both): name, help, the report's field.
METRIC = "chroma_deploy"
METRICS = (
    ("data_bytes", "Bytes in the Chroma data dir.", "data_bytes"),
    ("disk_free_bytes", "Free bytes on the data dir's filesystem.", "disk_free_bytes"),
    ("orphaned_segment_bytes",
     "Bytes in segment dirs that chroma.sqlite3 no longer names (maintain.py --apply orphans).",
     "orphaned_bytes"),
    ("sqlite_reclaimable_bytes",
     "Free pages of chroma.sqlite3 a vacuum would give back (maintain.py --apply vacuum).",
     "reclaimable_bytes"),
    ("index_memory_estimate_bytes",
     "Estimated memory of the HNSW indexes: records x dimension x 4 bytes plus links.",
     "index_memory_bytes"),
    ("collections", "Collections in chroma.sqlite3.", "collections"),
    ("records", "Records in chroma.sqlite3.", "records"),
)  # fmt: skip


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(host: str, project: str, found: dict) -> str:
    labels = f'host="{label_value(host)}",project="{label_value(project)}"'
    values = dict(found, collections=len(found["collections"]))
    lines = []
    for name, help_text, field in METRICS:
        lines += [f"# HELP {METRIC}_{name} {help_text}", f"# TYPE {METRIC}_{name} gauge",
                  f"{METRIC}_{name}{{{labels}}} {int(values[field])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Replace ``path`` whole (unique temporary name, fsync, rename), mode 0644."""
    directory = os.path.dirname(path) or "."
    umask = os.umask(0o022)  # node_exporter, another user, must reach the dir
    try:
        os.makedirs(directory, exist_ok=True)
    finally:
        os.umask(umask)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as stream:
            os.fchmod(stream.fileno(), 0o644)
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def run_report(args: argparse.Namespace) -> int:
    data_dir = os.path.join(args.project_dir, args.data_dir)
    try:
        found = report(data_dir, args.backup_target, args.mem_limit)
    except (Refused, OSError, sqlite3.Error) as error:
        print(f"chroma_data_dir: {error}", file=sys.stderr)
        return 1
    found["findings"] = findings(found)
    print(json.dumps(found, sort_keys=True))
    if args.textfile:
        write_textfile(args.textfile, metrics_text(args.host or socket.gethostname(),
                                                   args.project_name or "", found))  # fmt: skip
    return 0


# --- the repairs -------------------------------------------------------------------------


def reached(step: str) -> None:
    """Say the step (the apply's log), and die here when the resume test asks for it."""
    print(f"step: {step}")
    if os.environ.get(KILL_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def write_json(path: str, value: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(value, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _safety():  # imported when used: the report needs only chroma_inventory
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import chroma_inventory
    import chroma_safety

    return chroma_safety, chroma_inventory


def stop(args: argparse.Namespace) -> None:
    safety, _ = _safety()
    if safety.shown(safety.compose_args(args, "stop")) != 0:
        raise Refused("docker compose stop failed; nothing was changed")
    args.stopped, args.serving = True, False  # a failure from here on starts it again (main)


def stopped_since(args: argparse.Namespace) -> float | None:
    """When the chroma service's container stopped (epoch seconds), or None while it runs.

    maintain.py's backup leaves the stack stopped for the repair (as an upgrade's backup
    does): the downtime the repair reports is counted from that stop, and a failure
    from here on must start the stack again as if the repair had stopped it.
    """
    safety, _ = _safety()
    listed = subprocess.run(safety.compose_args(args, "ps", "--all", "--quiet", "chroma"),
                            capture_output=True, text=True, check=False)  # fmt: skip
    ids = listed.stdout.split()
    if listed.returncode != 0 or not ids:
        return None
    state = safety.docker("inspect", "-f", "{{.State.Running}} {{.State.FinishedAt}}", ids[0],
                          check=False).split()  # fmt: skip
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", state[1]) if (
        len(state) == 2 and state[0] == "false") else None  # fmt: skip
    if not found:
        return None
    since = calendar.timegm(time.strptime(found[1], "%Y-%m-%dT%H:%M:%S"))
    return since + float(found[2] or 0) if since > 0 else None  # 0001-01-01: never ran


def stop_counting(args: argparse.Namespace) -> float:
    """Stop the stack (a no-op if the backup left it stopped); the ``time.monotonic()``
    its downtime began: when the chroma container stopped, else now."""
    since = stopped_since(args)
    began = time.monotonic() - max(0.0, time.time() - since) if since else time.monotonic()
    stop(args)
    return began


def start(args: argparse.Namespace) -> None:
    safety, _ = _safety()
    if not safety.start_stack(args):
        raise Refused(f"docker compose up did not get the stack healthy in {args.wait_timeout} s; "
                      "see `docker compose logs chroma` in the project dir")  # fmt: skip
    args.serving = True


def served(args: argparse.Namespace, before: dict) -> list[str]:
    """How the running server differs from the inventory taken before (empty: the same)."""
    safety, inventory = _safety()
    chroma = inventory.Chroma(args.url, args.token_file, args.tls_dir)
    after = inventory.inventory(chroma, inventory.scopes_of(before))
    return safety.differences(before["collections"], after["collections"])


def move(source: str, target: str) -> None:
    """Rename ``source`` to ``target``; across filesystems, copy whole first, then rename in.

    A copy a killed run left half-done at ``target``'s temporary name is replaced.
    """
    try:
        os.rename(source, target)
        return
    except OSError as error:
        if error.errno != 18:  # EXDEV: another filesystem
            raise
    partial = f"{target}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # our own half copy, never the source
    shutil.copytree(source, partial, symlinks=True)
    os.rename(partial, target)
    shutil.rmtree(source)  # the whole copy is in place: the source is what was moved


def counts(found: dict) -> int:
    return sum(item["count"] for item in found["collections"].values())


def plan_orphans(args: argparse.Namespace, data_dir: str) -> dict | None:
    """The record of a move of the orphans the stopped server's ``segments`` does not name."""
    _, inventory = _safety()
    sqlite = os.path.join(data_dir, "chroma.sqlite3")
    if not os.path.isfile(sqlite):
        return None
    with private_copy(sqlite) as db:
        named = segment_ids(db)
    orphans = orphaned_dirs(data_dir, named)
    if not orphans:
        return None
    when = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = os.path.join(args.project_dir, STATE_DIR, f"orphans-{when}")
    return {
        "what": "orphans",
        "aside": aside,
        "moves": [[os.path.join(data_dir, o["name"]), os.path.join(aside, o["name"]), o["bytes"]]
                  for o in orphans],
        "before": inventory.sqlite_inventory(sqlite),
    }  # fmt: skip


def do_moves(record: dict) -> None:
    os.makedirs(record["aside"], mode=0o700, exist_ok=True)
    for source, target, _bytes in record["moves"]:
        if os.path.isdir(source) and not os.path.exists(target):
            move(source, target)
            reached("moved")
        elif os.path.isdir(source) and os.path.isdir(target):
            raise Refused(f"{source} and {target} both exist; nothing more was moved: compare "
                          "them, keep one, then run again")  # fmt: skip


def undo_moves(record: dict) -> None:
    for source, target, _bytes in record["moves"]:
        if os.path.isdir(target) and not os.path.exists(source):
            move(target, source)


def vacuum_argv(args: argparse.Namespace) -> list[str]:
    """The image's own vacuum: ``chroma vacuum`` on 1.x, ``chroma utils vacuum`` on 0.x.

    Run by the build that serves the data: the stopped chroma container's own image (by
    id), mounts and user. The image the compose file names may be another build since
    (a tag built or pulled again), and ``chroma vacuum`` applies its image's migrations
    whatever the migration mode says (tried on 1.5.9): that is an upgrade's, after its
    backup and rehearsal, never a vacuum's. Without that container, a one-off container
    of the chroma service (compose's mounts and user).
    """
    safety, _ = _safety()
    words = ["vacuum"] if int(args.version.split(".")[0]) >= 1 else ["utils", "vacuum"]
    vacuum = [*words, "--path", args.persist_path, "--force"]
    labels = (
        f"label=com.docker.compose.project={args.project_name}",
        "label=com.docker.compose.service=chroma",
        "label=com.docker.compose.oneoff=False",
    )
    filters = [word for label in labels for word in ("--filter", label)]
    found = safety.docker("ps", "-aq", "--no-trunc", *filters, check=False).split()
    if found:
        # Those that ever ran (one created by hand and never started served nothing).
        fields = "{{.Id}}|{{.Image}}|{{.Config.User}}|{{.State.StartedAt}}"
        ran = [line.split("|") for line in safety.docker("inspect", "-f", fields, *found,
                                                         check=False).split()]  # fmt: skip
        ran = [item for item in ran if len(item) == 4 and not item[3].startswith("0001-")]
        builds = {item[1] for item in ran}
        if len(builds) != 1:
            raise Refused(f"chroma_data_dir: {args.project_name} has {len(found)} chroma "
                          f"containers of {len(builds)} builds that ran, and a vacuum runs in "
                          "the build that serves the data; nothing was vacuumed: remove the "
                          "extra container (docker compose up --scale chroma=1), then run "
                          "maintain.py --apply vacuum again")  # fmt: skip
        container, image, user, _ = ran[0]
        return ["docker", "run", "--rm", "--volumes-from", container,
                *(["--user", user] if user else []), "--entrypoint", "chroma", image,
                *vacuum]  # fmt: skip
    run = ["run", "--rm", "--no-deps", "-T", "--entrypoint", "chroma", "chroma"]
    return safety.compose_args(args, *run, *vacuum)


def sqlite_total(data_dir: str) -> int:
    sqlite = os.path.join(data_dir, "chroma.sqlite3")
    return file_size(sqlite) + file_size(sqlite + "-wal")


def check_vacuum_space(data_dir: str, stopped: bool) -> None:
    need = sqlite_total(data_dir) + MARGIN_BYTES
    free = shutil.disk_usage(data_dir).free
    if free < need:
        # Stopped already: by the backup, whose archive may have taken the room; main starts it.
        state = "Chroma was started again" if stopped else "Chroma was not stopped"
        raise Refused(f"chroma_data_dir: a vacuum needs {need} bytes free on {data_dir}'s disk "
                      f"and {free} are; {state}: free space there, then run "
                      "maintain.py --apply vacuum again")  # fmt: skip


def finish(args: argparse.Namespace, record: dict, record_path: str, started: float) -> int:
    """Start the stack, compare with ``before``, and close the record (or roll back)."""
    start(args)
    downtime = time.monotonic() - started
    reached("started")
    differs = served(args, record["before"])
    if differs:
        undone = ""
        if record["what"] == "orphans":
            stop(args)
            undo_moves(record)
            start(args)
            undone = "the moved dirs were put back; "
        os.replace(record_path, record_path.replace("pending", "failed"))
        raise Refused("chroma_data_dir: the served data differs from the inventory taken before "
                      f"the {record['what']}: " + "; ".join(differs[:5]) + f"; {undone}the "
                      "backup taken before is kept: restore it if records are missing")  # fmt: skip
    records = counts(record["before"])
    data_dir = os.path.join(args.project_dir, args.data_dir)
    if record["what"] == "orphans":
        moved = sum(item[2] for item in record["moves"])
        print(f"orphans: moved {len(record['moves'])} dir(s), {moved} bytes, to "
              f"{record['aside']}; {records} records before and after, the same ids and "
              f"content; downtime {downtime:.1f} s")  # fmt: skip
    else:
        after = sqlite_total(data_dir)
        print(f"vacuum: chroma.sqlite3 {record['sqlite_bytes']} -> {after} bytes "
              f"({record['sqlite_bytes'] - after} reclaimed); {records} records before and "
              f"after, the same ids and content; downtime {downtime:.1f} s")  # fmt: skip
    done = record_path.replace("pending", time.strftime("done-%Y%m%dT%H%M%SZ", time.gmtime()))
    os.replace(record_path, done)
    return 0


def resume(args: argparse.Namespace, record_path: str) -> int:
    """Finish what a killed run left: its moves completed, its vacuum verified, the stack up."""
    with open(record_path) as handle:
        record = json.load(handle)
    print(f"resuming the {record['what']} a killed run left ({record_path})")
    if "before" not in record:  # killed between its stop and its inventory: nothing changed
        start(args)
        os.unlink(record_path)
        return 0
    began = stop_counting(args)
    if record["what"] == "orphans":
        do_moves(record)
    return finish(args, record, record_path, began)


def begin(args: argparse.Namespace) -> int:
    """Record the repair as begun, before the backup that stops the stack: a run killed
    between that backup and the repair then leaves a record the report shows (the stack
    stopped, nothing repaired) and the next --apply starts it. A record already there (a
    killed run's) is kept: the apply finishes it first."""
    state = os.path.join(args.project_dir, STATE_DIR)
    os.makedirs(state, exist_ok=True)
    record_path = os.path.join(state, PENDING)
    if not os.path.exists(record_path):
        write_json(record_path, {"what": args.what, "begun": True})
    return 0


def apply(args: argparse.Namespace) -> int:
    reached("apply")
    data_dir = os.path.join(args.project_dir, args.data_dir)
    state = os.path.join(args.project_dir, STATE_DIR)
    os.makedirs(state, exist_ok=True)
    record_path = os.path.join(state, PENDING)
    if os.path.exists(record_path):
        with open(record_path) as handle:
            unfinished = json.load(handle)
        # A record `begin` wrote (this run's, before its backup, or a killed run's) says
        # nothing was repaired yet: the stack the backup stopped stays stopped, and the
        # repair goes on (the record is overwritten below).
        if not unfinished.get("begun"):
            resume(args, record_path)
            # What was asked for is done now; a vacuum killed before it ran is run again,
            # a run killed before its inventory had done nothing but stop the stack.
            if (unfinished["what"] == args.what and "before" in unfinished
                    and unfinished.get("vacuumed", True)):  # fmt: skip
                return 0
    args.stopped = stopped_since(args) is not None  # by the backup: any failure starts it
    if args.what == "vacuum":
        check_vacuum_space(data_dir, args.stopped)  # before anything (more) stops
    # Said before the stop: a run killed from here on leaves a record the report shows
    # and the next run finishes (at least, starts the stack again).
    write_json(record_path, {"what": args.what})
    started = stop_counting(args)
    reached("stopped")
    _, inventory = _safety()
    if args.what == "orphans":
        record = plan_orphans(args, data_dir)
        if record is None:
            start(args)
            os.unlink(record_path)
            print("orphans: no orphaned segment dirs; nothing was moved")
            return 0
        write_json(record_path, record)
        reached("recorded")
        do_moves(record)
    else:
        sqlite = os.path.join(data_dir, "chroma.sqlite3")
        if not os.path.isfile(sqlite):
            start(args)
            os.unlink(record_path)
            print("vacuum: no chroma.sqlite3 yet; nothing to vacuum")
            return 0
        record = {"what": "vacuum", "before": inventory.sqlite_inventory(sqlite),
                  "sqlite_bytes": sqlite_total(data_dir)}  # fmt: skip
        write_json(record_path, dict(record, vacuumed=False))
        reached("recorded")
        safety, _ = _safety()
        if safety.shown(vacuum_argv(args), stdout=subprocess.DEVNULL) != 0:
            start(args)
            raise Refused("the image's chroma vacuum failed (its output is above); SQLite "
                          "rolled it back, the stack was started again")  # fmt: skip
        write_json(record_path, record)  # it ran: a resume verifies, it does not run again
        reached("vacuumed")
    return finish(args, record, record_path, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    reported = commands.add_parser("report")
    applied = commands.add_parser("apply")
    begun = commands.add_parser("begin")
    for sub in (applied, begun):
        sub.add_argument("--what", choices=("orphans", "vacuum"), required=True)
    begun.add_argument("--project-dir", required=True)
    for sub in (reported, applied):
        sub.add_argument("--project-dir", required=True)
        sub.add_argument("--data-dir", required=True)
    reported.add_argument("--backup-target")
    reported.add_argument("--mem-limit", type=int)
    reported.add_argument("--textfile")
    reported.add_argument("--host")
    reported.add_argument("--project-name")
    for option in ("--project-name", "--compose-file", "--version", "--persist-path", "--url"):
        applied.add_argument(option, required=True)
    applied.add_argument("--wait-timeout", type=int, required=True)
    applied.add_argument("--verdict")
    applied.add_argument("--token-file")
    applied.add_argument("--tls-dir")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.command == "report":
        return run_report(args)
    if args.command == "begin":
        return begin(args)
    args.stopped = args.serving = False
    try:
        return apply(args)
    except Refused as refusal:
        said = str(refusal)
    except (OSError, sqlite3.Error, ValueError) as error:
        said = (f"maintain {args.what}: {type(error).__name__}: {error}; the pending record "
                "says what was done: run again")  # fmt: skip
    if args.stopped:  # serve again: moved orphans are unused, a failed vacuum rolled back
        with contextlib.suppress(Refused, OSError):
            start(args)
    record_path = os.path.join(args.project_dir, STATE_DIR, PENDING)
    with contextlib.suppress(OSError, ValueError, KeyError), open(record_path) as handle:
        if args.serving and "before" not in json.load(handle):  # failed, nothing changed
            os.unlink(record_path)
    print(said, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
