"""Move Chroma data that a bind mount would not see into the bind-mounted data dir.

Two sources hold data that a deploy would otherwise hide or lose:

- a legacy named volume (the seed's BEFORE state): hidden, since the new
  stack mounts the data dir instead;
- a container of this compose project that keeps its data outside every
  mount (the seed's AFTER file on a 1.x image writes /data in the container's
  own layer): lost, since ``up`` recreates that container.

Either is copied (stage), the server is started on the copy, and only a
verification of collections, counts, ids, documents and metadata through the
API marks the move done (verify_migration); a mismatch puts things back and
blocks further deploys of the host until the user acts. Sources are never
deleted: volumes stay, and a container's layer is committed to an image first.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation

from checks.compare import served_without_data
from checks.empty_data import (
    data_left_aside,
    database_damaged,
    database_lost,
    database_names_none,
    schema_less,
)
from declaration.targets import CheckServer, DataTarget, HealthCheck, StackTarget
from facts.compose import ComposeStack
from facts.datadirs import DataDirs
from facts.datahomes import (
    DataHomes,
    DataSchema,
    data_elsewhere,
    leftover_checks,
    spelled,
    users_of,
)
from facts.project import SafetyState
from facts.volumes import LegacyVolumes, legacy_volume_names
from operations.host_failure import fail_host
from operations.stack import COMPOSE_FILE
from plumbing import host_state, preflight
from plumbing.host_tools import (
    STATE_DIR,
    safety_command,
    stage_command,
    upload_tools,
)
from plumbing.report import step

PENDING = ("migration-pending.json", "rescue-pending.json", "upgrade-pending.json")
# An upgrade's record is verified before the stack is published (upgrade.verify_before_publish),
# never after `up`: by then clients may have written.
VERIFIED_AFTER_UP = ("migration-pending.json", "rescue-pending.json")


def done_record(volume: str) -> str:
    return f"migrated-{volume}.json"


def _found(volume: dict) -> str:
    contents = volume.get("contents") or "Chroma data"
    return f"{volume['name']} (compose project {volume['compose_project'] or 'none'}, {contents})"


@operation()
def copy_legacy_volume(
    stack: StackTarget, data: DataTarget, volume_names: list[str], adopt_volume: str | None
):
    """Copy this project's legacy volume's Chroma data into an empty data dir.

    A volume is this project's when compose made it for this compose project,
    or when ``adopt_volume`` names it; another project's volume is reported and
    left alone, and a volume that another project's container uses is never
    taken (its containers are never stopped).

    + stack: the compose project
    + data: the bind-mounted data dir, and the owner and mode the copied data is given
    + volume_names: chroma_legacy_volumes (exact, or after any `<project>_` prefix)
    + adopt_volume: chroma_adopt_volume, a full volume name to take over
    """
    project_dir, project_name, data_dir = stack.project_dir, stack.project_name, data.path
    names = legacy_volume_names(volume_names, adopt_volume)
    volumes = [v for v in host_state.read(LegacyVolumes, names=names) if v["has_chroma_data"]]
    if not volumes:
        host.noop("no legacy named volume holds Chroma data")
        return
    records = host_state.read(SafetyState, project_dir=project_dir, data_dir=data.name)["records"]
    todo = [v for v in volumes if done_record(v["name"]) not in records]
    ours = [v for v in todo if v["compose_project"] == project_name or v["name"] == adopt_volume]
    others = [v for v in todo if v not in ours]
    if not ours:
        found = "; ".join(_found(v) for v in others) or "only volumes migrated already"
        host.noop(
            f"named volumes of other projects left alone: {found}. To take one over, set "
            "chroma_adopt_volume=<its name>"
            if others
            else found
        )
        return
    if len(ours) > 1:
        listed = ", ".join(v["name"] for v in ours)
        yield fail_host(
            f"chroma_adopt_volume: several named volumes of this project hold Chroma data "
            f"({listed}); chroma-deploy will not guess: name the one to migrate in "
            "chroma_adopt_volume"
        )
        return
    volume = ours[0]
    foreign = [u for u in volume["users"] if u["project"] != project_name]
    if foreign:
        users = ", ".join(f"{u['name']} (project {u['project'] or 'none'})" for u in foreign)
        yield fail_host(
            f"chroma_adopt_volume: the volume {volume['name']} is used by containers of another "
            f"project: {users}; chroma-deploy never stops them. Remove those containers "
            "(docker compose down, without -v, keeps the volume), then deploy again"
        )
        return
    pending = "migration-pending.json" in records
    has_data = host_state.read(DataDirs, paths=[data_dir])[data_dir]
    if has_data and has_data["has_sqlite"] and not pending:
        yield fail_host(
            f"chroma_adopt_volume: both the named volume {volume['name']} and {data_dir} hold "
            "Chroma data: chroma-deploy will not merge or choose; move one aside (never delete "
            "it), or drop the volume from chroma_legacy_volumes to keep the data dir"
        )
        return
    if has_data and has_data["has_sqlite"]:
        host.noop("a copied legacy volume is waiting for verification")
        return
    yield from upload_tools(project_dir)
    yield stage_command(
        project_dir, "volume", volume["name"], volume["mountpoint"], data_dir, data.uid,
        data.gid, data.mode, [u["name"] for u in volume["users"]],
        compose_file=f"{project_dir}/{COMPOSE_FILE}", stop_grace=stack.stop_grace,
    )  # fmt: skip


@operation()
def stop_leftover_checks(data: DataTarget, stop_grace: int | None = None):
    """Stop and remove the unpublished check servers a killed run left on the data dir.

    files/chroma_safety.py starts them itself (a verification before ``up``
    publishes) and removes them when done; a run killed meanwhile leaves one
    running, and ``up`` must never start a second server beside it.

    + data: the declared data dir
    + stop_grace: seconds each gets after SIGTERM (chroma_stop_grace_seconds: it has the live
      data open); None: the stop timeout it was started with
    """
    left = sorted(
        {m["name"] for m in leftover_checks(host_state.read(DataHomes, data_dir=data.path))}
    )
    if not left:
        host.noop("no check server a killed run left on the data dir")
        return
    for name in left:
        grace = [] if stop_grace is None else ["--time", str(stop_grace)]
        yield shlex.join(["docker", "stop", *grace, name])
        yield shlex.join(["docker", "rm", name])


@operation()
def take_over_data(stack: StackTarget, data: DataTarget):
    """Copy the data this project's Chroma serves from elsewhere into the empty data dir.

    A changed ``chroma_project_dir`` or ``chroma_data_dir``, or a taken-over stack
    whose data is in a volume or dir of any name, leaves this project's Chroma
    serving data the declared data dir does not hold: ``up`` would replace it with
    an empty server. Found from the containers' mounts (facts/datahomes.py), the
    source is copied (stage: the containers stopped, a staging copy checked file
    by file, one rename), the source kept as it is, and the server started on the
    copy is verified (verify_migration). The cases that cannot be taken over were
    refused before any change (preflight.require_one_home).

    + stack: the compose project
    + data: the declared data dir, where the declared version persists (a mount target
      to look at), and the owner and mode the copy is given
    """
    project_dir, project_name, data_dir = stack.project_dir, stack.project_name, data.path
    homes = host_state.read(DataHomes, data_dir=data_dir)
    records = host_state.read(SafetyState, project_dir=project_dir, data_dir=data.name)["records"]
    elsewhere = preflight.with_collections(
        preflight.copied_already(data_elsewhere(homes, project_name, data.persist_path), records)
    )
    copied = (homes["data_dir"] or {}).get("has_sqlite") and any(n in records for n in PENDING)
    if not elsewhere or copied:
        # A pending record with an empty data dir is a copy a killed run did not finish:
        # stage resumes it from the record.
        host.noop(
            "a copy of the data is waiting for its verification"
            if elsewhere
            else f"this project's Chroma serves no data from outside {data_dir}"
        )
        return
    source = elsewhere[0]
    kind = "volume" if source["type"] == "volume" else "bind"
    users = sorted({m["name"] for m in users_of(homes, source)})
    yield step(f"taking over {spelled(source)}, which this project's Chroma served")
    yield from upload_tools(project_dir)
    yield stage_command(
        project_dir, kind, source["volume"] if kind == "volume" else source["source"],
        source["source"], data_dir, data.uid, data.gid, data.mode, users,
        compose_file=f"{project_dir}/{COMPOSE_FILE}", stop_grace=stack.stop_grace,
    )  # fmt: skip


@operation()
def verify_copy_before_publish(data: DataTarget, server: CheckServer):
    """A copy taken over this run (or a run before), verified before ``up`` publishes it.

    The server is started on the copy with no port published (files/chroma_safety.py
    verify --image), so an application that keeps writing through the takeover
    cannot make the comparison differ, and a mismatch is found before any client
    wrote to the copy: it is moved aside and the old containers start again on
    the data they served. A copy made later in the run (a container's layer,
    rescued inside stack_up) is verified after ``up`` by verify_migration.

    + data: the declared data dir
    + server: the declared version as it listens on its own bridge address
    """
    project_dir, data_dir = data.project_dir, data.path
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data.name)
    pending = [
        n for n in ("migration-pending.json", "rescue-pending.json") if n in state["records"]
    ]
    if not pending or not state["data_has_sqlite"]:
        host.noop("no copy is waiting for its verification")
        return
    homes = host_state.read(DataHomes, data_dir=data_dir)
    here = (homes["data_dir"] or {}).get("inode")
    if any(m["state"] == "running" and here and m["inode"] == here for m in homes["mounts"]):
        # Published already (a run before this one started it): verify_migration compares
        # it after `up`, as it serves; a second server must never open the data dir.
        host.noop("the copy is served already: verified after the stack is up")
        return
    yield from upload_tools(project_dir)
    for name in pending:
        yield safety_command(
            "verify", ("--record", f"{project_dir}/{STATE_DIR}/{name}"),
            ("--image", server.image), ("--persist-path", server.persist_path),
            ("--uid", server.uid), ("--gid", server.gid), ("--timeout", server.timeout),
            ("--env", server.environment), ("--data-dir", data_dir),
            ("--compose-file", f"{project_dir}/{COMPOSE_FILE}"), ("--project-dir", project_dir),
            ("--stop-grace", server.stop_grace),
        )  # fmt: skip


@operation()
def verify_migration(data: DataTarget, health: HealthCheck):
    """After `up`: the server must hold what the moved data held.

    Each pending record (migration, rescue: one file each, so one run
    may do several) is checked by files/chroma_safety.py verify. A server that
    cannot be read changes nothing and fails the run; a mismatch stops the
    stack and leaves a ``failed-*`` record that blocks later deploys.

    + data: the declared data dir
    + health: where Chroma answers (its url, token file and TLS dir)
    """
    project_dir, data_dir = data.project_dir, data.path
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data.name)
    pending = [name for name in VERIFIED_AFTER_UP if name in state["records"]]
    if not pending:
        host.noop("no migration is pending")
        return
    yield from upload_tools(project_dir)
    for name in pending:
        yield safety_command(
            "verify", ("--record", f"{project_dir}/{STATE_DIR}/{name}"), ("--url", health.url),
            ("--token-file", health.token_file), ("--tls-dir", health.tls_dir),
            ("--data-dir", data_dir),
            ("--compose-file", f"{project_dir}/{COMPOSE_FILE}"), ("--project-dir", project_dir),
        )  # fmt: skip


def services_on_moved_data(
    data: DataTarget, stack: StackTarget | None, state: dict | None = None
) -> list[str]:
    """Running chroma containers whose data dir holds no Chroma data now (moved away)."""
    state = state or host_state.read(SafetyState, project_dir=data.project_dir, data_dir=data.name)
    if stack is None or state["data_has_sqlite"]:
        return []
    found = host_state.read(ComposeStack, **stack.read)
    return served_without_data(found, data.path)


@operation()
def data_safety_guard(
    data: DataTarget,
    accept_failed: bool,
    allow_empty: bool,
    stack: StackTarget | None = None,
    allow_unnamed_segments: bool = False,
):
    """Stop a deploy that would serve an empty or unverified data dir.

    A ``failed-*`` record (a verification that did not match) blocks the host
    until the user restores, or sets chroma_accept_failed_verification=true,
    which renames the records ``accepted-*``. A data dir without Chroma data
    while a copy of it was moved aside (a restore or migration that did not
    finish) blocks until the user puts it back, or sets
    chroma_allow_empty_data_dir=true. So do segment dirs without the
    ``chroma.sqlite3`` that names them: a new database (a 1.x server's, or the
    schema made before it validates) would serve none of their records, or one with no
    schema (emptied, even under a server that still has the old file open), or one SQLite
    cannot read; and segment dirs beside a database with collections of its own that names
    none of them (another stack's put back: checks/empty_data.database_names_none). So does a
    data dir without Chroma data while Chroma runs on it: moved aside (or removed)
    under the running server, which still serves the dir it opened; its next start
    would serve an empty database (allowed: it starts again on the empty one,
    services_on_moved_data).

    + data: the declared data dir
    + accept_failed, allow_empty: the two keys above
    + stack: the compose project, to find a Chroma running on a data dir moved away
    + allow_unnamed_segments: maintain.py --apply orphans, which moves the segment dirs a
      database names none of aside (their collections deleted): not refused for those
    """
    project_dir, data_dir = data.project_dir, data.name
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)
    failed = [name for name in state["records"] if name.startswith("failed-")]
    if failed and not accept_failed:
        yield fail_host(
            f"chroma_accept_failed_verification: {len(failed)} verification(s) failed on this "
            f"host ({', '.join(failed)} in {project_dir}/{STATE_DIR}); restore the backup or the "
            "copy it names, or set chroma_accept_failed_verification=true to go on as it is"
        )
        return
    moved = None if allow_empty else data_left_aside(state, data, state["data_has_sqlite"])
    if moved:
        yield fail_host(moved)
        return
    path = f"{project_dir}/{data_dir}"
    serving = services_on_moved_data(data, stack, state)
    if serving and not allow_empty:
        yield fail_host(
            f"chroma_allow_empty_data_dir: {path} holds no Chroma data while the running "
            f"{serving[0]} serves the data it opened there (moved aside or removed while it "
            f"ran; its next start would serve an empty database); put the data back at {path}, "
            "or set chroma_allow_empty_data_dir=true to start an empty server"
        )
        return
    lost = None if allow_empty else database_lost(state, data, state["data_has_sqlite"])
    if not lost and not allow_empty and state["data_has_sqlite"]:
        schema = host_state.read(DataSchema, data_dir=path)
        if state["data_segment_dirs"] and schema_less(schema):
            lost = database_lost(state, data, False)  # emptied, even under a live server
        elif not allow_unnamed_segments:
            # maintain.py --apply orphans is the line's own second answer (the collections
            # that had those dirs were deleted, and the new ones hold no vector yet): asked
            # for by name, it moves them aside (kept, never deleted).
            lost = database_names_none(state, schema, data)
        lost = lost or database_damaged(schema, data)
    if lost:
        yield fail_host(lost)
        return
    if failed:
        state_dir = f"{project_dir}/{STATE_DIR}"
        for name in failed:
            accepted = name.replace("failed-", "accepted-", 1)
            yield shlex.join(["mv", f"{state_dir}/{name}", f"{state_dir}/{accepted}"])
        return
    host.noop(
        "no failed verification; no data dir emptied beside a copy moved aside, no segment dirs "
        "without the database that names them (or allowed)"
    )
