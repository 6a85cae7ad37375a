"""A change of chroma_version: backed up first, verified before it is published, never downgraded.

Chroma migrates its SQLite schema forward the first time a newer server opens
it, one way. So before the compose file names a newer image, the deploy reads
a sample of vectors from the old server and takes a backup (the only way back),
and before ``up`` publishes the new version, verify_before_publish starts it
on the data dir with no port published and checks it shows the same
collections, counts, ids, documents, metadata and sampled vectors: what it
compares is the state at the switch, which no client can have written to yet.
Across 0.6 -> 1.x the data dir on the host stays; only the mount target moves
(/chroma/chroma -> /data), which the template derives from the version.
"""

from __future__ import annotations

from typing import NamedTuple

from packaging.version import Version
from pyinfra import host
from pyinfra.api import operation

from checks.empty_data import schema_less
from declaration.targets import CheckServer, DataTarget, HealthCheck, StackTarget
from declaration.versions import (
    data_version_problem,
    data_written_by,
    deployed_version,
    image_version,
    migrates,
    spelled_levels,
)
from facts.compose import ComposeStack
from facts.datahomes import DataHomes, DataSchema, is_ours
from facts.project import ProjectFiles, SafetyState
from facts.schema_guard import SchemaRefusal, not_serving
from operations.data_safety import backup_command
from operations.host_failure import fail_host
from operations.stack import COMPOSE_FILE
from plumbing import host_state
from plumbing.host_tools import (
    STATE_DIR,
    pending_record,
    safety_command,
    upload_tools,
)
from plumbing.report import step


@operation()
def version_change(
    stack: StackTarget,
    data: DataTarget,
    version: str,
    backup_dir: str,
    rehearsal: CheckServer | None = None,
    health: HealthCheck | None = None,
):
    """Back up before moving to a newer Chroma; refuse to move to an older one.

    Before the backup stops it, the old server's answer for a sample of records'
    vectors is kept (``vectors_file``) for verify_before_publish: a stopped
    server keeps vectors in segment files that the upgrade rewrites.

    With ``rehearsal``, the new image is first started on a copy of the data in a
    throwaway container and must show what the backup's manifest says; on a
    mismatch or a failed start the old stack runs again and the host fails
    (files/chroma_safety.py rehearse). The live data dir is never switched then.

    + stack: the compose project, and the seconds for ``up --wait`` after the backup
    + data: the declared data dir (its name)
    + version: the declared chroma_version
    + backup_dir: where the pre-upgrade backup goes
    + rehearsal: the new version as the rehearsal starts it (chroma_upgrade_rehearsal),
      or None to skip it
    + health: where the old server answers (its url, token file and TLS dir), for the vector
      sample
    """
    project_dir, project_name, wait_timeout = (
        stack.project_dir,
        stack.project_name,
        stack.wait_timeout,
    )
    data_dir = data.name
    found = _deployed_and_data(stack, data_dir, version)
    if isinstance(found, str):
        yield fail_host(found)
        return
    old, levels, rebuilt = found
    if old and Version(version) < Version(old):
        if levels and _refused_image(stack):
            # The schema guard: the image named by hand never opened the data, and says why.
            yield fail_host(
                f"chroma_version: Chroma {old} (docker-compose.yml names it, chroma_version "
                f"says {version}) refused to start on {project_dir}/{data_dir}: the data's "
                f"schema lacks migrations {old} would apply, and it validates its schema, so "
                f"the data is as it was; nothing was changed: deploy with chroma_version={old} "
                "so chroma-deploy backs up, rehearses and applies them, or set the compose "
                "file's image back"
            )
            return
        yield fail_host(
            f"chroma_version: {version} is older than the {old} deployed, and Chroma "
            "migrates its data forward only; keep chroma_version=" + old + ", or restore an "
            f"archive taken with {version} (restore.py, from {backup_dir}): it brings back the "
            "version it was taken with"
        )
        return
    where = f"{project_dir}/{data_dir}"
    problem = data_version_problem(version, levels, where) if levels else None
    if problem:
        yield fail_host(
            f"{problem}, or restore an archive taken with {version} (restore.py, from {backup_dir})"
        )
        return
    migrating = migrates(version, levels) if levels else False
    # Its own server refused the data (an unknown release's migrations, say): only an
    # upgrade, with its backup and rehearsal, applies them.
    refused = bool(levels) and old == version and _refused_image(stack)
    if old and old != version:
        label = old  # the pinned version that has been serving the data
    elif refused or rebuilt or migrating is True or (migrating is None and old is None):
        # The release that wrote the data, read from it: the compose file may be gone,
        # name an unpinned image (the seed's :latest), or name this version over data
        # that no server of it has opened yet (another data dir named, a hand-run server).
        label = data_written_by(levels or {}) or "unknown"
    else:
        host.noop(
            f"Chroma {version} is the version deployed"
            if old
            else f"Chroma {version} opens the data as it is (schema {spelled_levels(levels)})"
            if levels
            else "no data yet"
        )
        return
    old = label
    record = pending_record(project_dir, "upgrade")
    if rebuilt:
        yield step(
            f"{stack.image} names another build than {rebuilt[7:19]}, which serves {where}: its "
            "first start on the data is an upgrade's: chroma-deploy backs the data up, rehearses "
            "and applies its migrations"
        )
    if refused:
        yield step(
            f"Chroma {version} refused to start on {where}: the data's schema lacks migrations "
            "it would apply; chroma-deploy backs the data up, rehearses and applies them"
        )
    yield from upload_tools(project_dir)
    if health:
        yield _vector_sample_command(project_dir, data_dir, old, health)
    # The stack stays stopped from the manifest to the switch: stack_up starts the
    # new version, so no write can land after the backup was taken.
    fields = {"kind": "upgrade", "subject": old, "from": old, "to": version}
    yield backup_command(
        project_dir, project_name, data_dir, backup_dir, wait_timeout, old,
        ("--before-version", version), ("--no-restart", True),
        ("--record", record), ("--field", [f"{key}={value}" for key, value in fields.items()]),
        ("--skip-without-data", True), ("--stop-grace", stack.stop_grace),
    )  # fmt: skip
    if rehearsal:
        # No record (no data was backed up): the rehearsal has nothing to compare and says nothing.
        yield safety_command(
            "rehearse", ("--record", record), ("--data-dir", f"{project_dir}/{data_dir}"),
            ("--image", rehearsal.image), ("--persist-path", rehearsal.persist_path),
            ("--work-dir", f"{project_dir}/{STATE_DIR}/rehearsal"),
            ("--uid", rehearsal.uid), ("--gid", rehearsal.gid),
            ("--timeout", rehearsal.timeout), ("--env", rehearsal.environment),
            ("--compose-file", f"{project_dir}/{COMPOSE_FILE}"), ("--project-dir", project_dir),
        )  # fmt: skip


class Deployed(NamedTuple):
    """What serves the data dir now (_deployed_and_data)."""

    old: str | None  # the release serving it, else the one our compose file names
    levels: dict | None  # its schema level, when read
    rebuilt: str | None  # the other build of ``old``'s reference that serves it (its id)


def _deployed_and_data(stack: StackTarget, data_dir: str, version: str) -> Deployed | str:
    """The version the data is served with now, and the schema level of the data dir.

    The version is the running server's, read from its container, when this project's
    Chroma serves the data dir (by inode; running, its last start not refused by the
    schema guard); else the one our compose file names. The
    file says only what was last written: it may have been edited by hand to a newer
    release under a server that still serves the old one, and a recreate would then
    start the new release on data it was never shown (with the schema guard, refused
    and down). The level is what says which release wrote the data (the compose
    file may be gone, name an unpinned image, or name a version no server has opened
    this data with). It is read when the data dir holds a database, unless this
    project's Chroma runs on it from the very image ``version`` names (its reference
    and its id: a tag moved to another build is another image): that server opened
    this data already, and a no-op run costs no second command. One that runs from
    another build of the same reference (a tag pulled or built again) is ``rebuilt``:
    that build may carry a migration the data lacks, which no table of releases
    knows, so its first start is an upgrade's (backup, rehearsal, migration applied).
    A database that cannot be read is a refusal (a string), never a guess.
    """
    project_dir = stack.project_dir
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    old = deployed_version(files["compose"]["content"]) if files["compose"] else None
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)
    if not state["data_has_sqlite"]:
        return Deployed(old, None, None)
    homes = host_state.read(DataHomes, data_dir=f"{project_dir}/{data_dir}")
    here = (homes["data_dir"] or {}).get("inode")
    rebuilt = None
    serving = {
        m["name"] for m in homes["mounts"]
        if is_ours(m, stack.project_name) and m["state"] == "running" and here
        and m["inode"] == here
    }  # fmt: skip
    if serving:
        found = host_state.read(ComposeStack, **stack.read)
        servers = [c for c in found["containers"] if c["name"] in serving]
        if any(c["health"] != "healthy" for c in servers) and _refused_image(stack):
            # Running is not serving: a server the schema guard refused is "running" for
            # a moment in each turn of its restart loop, and never opened the data (its
            # levels are read). One that is only starting (restarted, a slow host) has.
            servers = []
        running = {image_version(c["image"]) for c in servers} - {None}
        if len(running) == 1:
            old = running.pop()  # what serves the data, whatever the file says now
        if servers and old == version and all(c["image"] == stack.image for c in servers):
            other = {c["image_id"] for c in servers} - {found["image_id"]}
            if not other:
                return Deployed(old, None, None)
            rebuilt = other.pop()
    schema = host_state.read(DataSchema, data_dir=f"{project_dir}/{data_dir}")
    if schema_less(schema):
        return Deployed(old, None, None)  # a validating server left it on an empty dir
    if schema["levels"] is None:
        return (
            f"chroma_version: cannot read which Chroma version wrote {project_dir}/{data_dir}"
            f"/chroma.sqlite3 ({schema['error'] or 'no migrations table'}); install python3 "
            "on the host, or check the file, then deploy again"
        )
    return Deployed(old, schema["levels"], rebuilt)


def _refused_image(stack: StackTarget) -> str | None:
    """The image of this project's chroma container when its last start was refused by the
    schema guard (facts.schema_guard), else None. Read only for a container that is not
    running healthy: one that serves has opened its data."""
    containers = host_state.read(ComposeStack, **stack.read)["containers"]
    stopped = not_serving(containers)
    if stopped and host_state.read(SchemaRefusal, container=stopped)["refused"]:
        return next(str(c["image"]) for c in containers if c["name"] == stopped)
    return None


def vectors_file(project_dir: str) -> str:
    return f"{project_dir}/{STATE_DIR}/upgrade-vectors.json"


def _vector_sample_command(project_dir: str, data_dir: str, old: str, health: HealthCheck) -> str:
    """Read the old server's vectors of a sample of records, right before the backup stops it.

    A client that changes a sampled record's vector between this read and the
    stop (the next command) shows as a difference. A server that does not
    answer (stopped already) leaves no sample, and the verification says that
    it compared no vectors (files/chroma_safety.py sample-vectors).
    """
    return safety_command(
        "sample-vectors", ("--url", health.url), ("--token-file", health.token_file),
        ("--tls-dir", health.tls_dir),
        ("--sqlite", f"{project_dir}/{data_dir}/chroma.sqlite3"),
        ("--out", vectors_file(project_dir)), ("--version", old),
    )  # fmt: skip


@operation()
def verify_before_publish(data: DataTarget, server: CheckServer, upgrading: bool = False):
    """An upgraded data dir, verified by the new version before ``up`` publishes it.

    Runs between the compose file and stack_up whenever an upgrade's pending
    record is there (this run's, or one a killed or failed run left: the stack
    stays stopped until it passes). files/chroma_safety.py verify-upgrade starts
    the new image on the live data dir with no port published, compares it
    with the backup's manifest and the old server's vector sample, and stops
    it; only a match lets stack_up publish. So a client writing through the
    upgrade never makes the verification fail, and a failed one never advises
    a restore that would drop writes: none can have been made.

    + data: the declared data dir
    + server: the new version as it listens on its own bridge address
    + upgrading: version_change will run in this run (known when pyinfra plans first)
    """
    project_dir, data_dir = data.project_dir, data.name
    records = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)["records"]
    if "upgrade-pending.json" not in records and not upgrading:
        host.noop("no upgrade is waiting for verification")
        return
    record = pending_record(project_dir, "upgrade")
    check = safety_command(
        "verify-upgrade", ("--record", record), ("--data-dir", f"{project_dir}/{data_dir}"),
        ("--image", server.image), ("--persist-path", server.persist_path),
        ("--uid", server.uid), ("--gid", server.gid), ("--timeout", server.timeout),
        ("--env", server.environment), ("--vectors", vectors_file(project_dir)),
        ("--stop-grace", server.stop_grace),
    )  # fmt: skip
    yield from upload_tools(project_dir)
    yield check  # no record (an upgrade of a data dir with no data yet): nothing to verify
