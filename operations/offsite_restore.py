"""A snapshot of the off-host repository restored into the project, and the restore drill.

Both run files/chroma_offsite_restore.py on the host, which restores with restic
into a staging dir beside the data dir and checks the files against the
snapshot's manifest before anything else happens. A restore then switches the
copy in the way restore.py's archive restore does (files/chroma_safety.py
switch_in: a pending record first, the current data dir moved aside, never
deleted), starts the stack and checks it again through the API; the drill
starts a throwaway server on its copy instead, and removes both.
"""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import File

from declaration.offsite import config_path
from declaration.targets import CheckServer
from facts.chroma import ChromaInventory
from facts.project import ProjectFiles
from operations.data_safety import compose_switch, inventory_tls
from operations.host_failure import refusing
from operations.schema import init_schema
from operations.stack import COMPOSE_FILE, compose_up
from plumbing import host_state
from plumbing.host_tools import STATE_DIR, TOOLS_DIR, safety_command, upload_tools

TOOL = "chroma_offsite_restore.py"


offsite_config = config_path  # the project's off-host backup config, as the deploy writes it


def offsite_command(subcommand: str, *options: tuple[str, object]) -> str:
    """``chroma_offsite_restore.py SUBCOMMAND --option value ...`` (safety_command's rules)."""
    return safety_command(subcommand, *options, tool=TOOL)


def restored_manifest(project_dir: str) -> str:
    """The manifest of the snapshot restored last (its id inside, as ``snapshot``)."""
    return f"{project_dir}/{STATE_DIR}/restored-snapshot.json"


@operation()
def restore_snapshot(
    project_dir: str,
    project_name: str,
    data_dir: str,
    snapshot: str,
    chosen: str | None,
    prepared_version: str | None,
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
    """Restore ``snapshot`` into the data dir, after moving the current data aside.

    The snapshot was resolved before anything changed where the host could read
    the repository (``chosen``, facts.snapshots.OffsiteSnapshots); on a host the
    stack never ran on, the host tool resolves it once restic and the repository's
    files are in place, and refuses a snapshot of another version than the one
    this run prepared (``prepared_version``), before the data changes. A compose
    file for the snapshot's version is put in place only right after the data it
    reads (as data_safety.restore). Nothing to do when ``chosen`` was restored last,
    nothing is pending, and the server holds exactly what its manifest says.

    + project_dir, data_dir: the project dir and the name of its data dir
    + project_name: the compose project name written in the file
    + snapshot: latest or an id, as given; chosen: the full id it names, if known
    + prepared_version: the Chroma version a first run prepared, else None
    + uid, gid, mode: owner and mode of the restored data dir
    + url, token_file: where Chroma answers, and its token file
    + wait_timeout: seconds for ``up --wait``
    + compose_content: the compose file for the snapshot's version, when the
      deployed one is another version; None keeps the compose file
    + tls_dir: with chroma_tls on, the host's dir of the proxy's ca.pem and name,
      which verify the https url (files/chroma_inventory.py --tls-dir)
    + schema_server: when the stack's server validates its schema (1.x), that version as a
      check starts it: the restored data gets its migrations before ``up``
      (operations/schema.py init_schema)
    """
    live = f"{project_dir}/{COMPOSE_FILE}"
    manifest = restored_manifest(project_dir)
    marker = f"{project_dir}/{STATE_DIR}/restored-snapshot"
    pending = f"{project_dir}/{STATE_DIR}/restore-pending.json"
    switch = None
    if compose_content is not None:
        files = host_state.read(ProjectFiles, project_dir=project_dir)
        wanted = hashlib.sha256(compose_content.encode()).hexdigest()
        if not files["compose"] or files["compose"]["sha256"] != wanted:
            switch = f"{live}.chroma-deploy.restore"
    if (
        chosen
        and switch is None
        and host_state.read(File, path=marker)
        and not host_state.read(File, path=pending)
    ):
        found = host_state.read(
            ChromaInventory, url=url, tools_dir=TOOLS_DIR, token_file=token_file,
            manifest=manifest, **inventory_tls(tls_dir),
        )  # fmt: skip
        live_inventory, kept = found["live"], found["manifest"]
        if (
            live_inventory
            and kept
            and kept.get("snapshot") == chosen
            and live_inventory["collections"] == kept["collections"]
        ):
            host.noop(f"snapshot {chosen[:8]} was restored and the server still holds what it held")
            return
    yield from upload_tools(project_dir)
    if switch and compose_content is not None:
        yield from compose_switch(project_dir, compose_content, switch, uid, gid)
    # Resolve, check the room, restic restore --verify into staging, check the files
    # against the manifest, stop, switch by rename (the old data aside, a pending
    # record first). Each refusal is one line (host_failure.refusing).
    yield refusing(offsite_command(
        "restore", ("--config", offsite_config(project_dir)), ("--snapshot", chosen or snapshot),
        ("--version", prepared_version), ("--url", url), ("--token-file", token_file),
        ("--tls-dir", tls_dir),
        ("--marker", marker), ("--data-dir", data_dir), ("--uid", uid),
        ("--gid", gid), ("--mode", mode), ("--pending", pending), ("--manifest-out", manifest),
        ("--switch", switch), ("--project-dir", project_dir), ("--project-name", project_name),
        ("--compose-file", live), ("--wait-timeout", wait_timeout),
    ), show_output=True)  # fmt: skip
    if schema_server:
        yield init_schema(f"{project_dir}/{data_dir}", schema_server, restored=True)
    yield compose_up(project_dir, project_name, wait_timeout)
    yield safety_command(
        "restored", ("--manifest", manifest), ("--url", url), ("--token-file", token_file),
        ("--tls-dir", tls_dir),
        ("--marker", marker), ("--pending", pending),
        ("--archive", f"snapshot {chosen[:8] if chosen else snapshot}"),
        ("--target", f"{project_dir}/{data_dir}"),
    )  # fmt: skip


@operation(is_idempotent=False)
def restore_drill(
    project_dir: str,
    snapshot: str,
    image: str,
    persist_path: str,
    environment: list[str],
    uid: int,
    gid: int,
    timeout: int,
):
    """Restore ``snapshot`` into a throwaway dir and container, check it, remove both.

    Never touches the live stack. The verdict goes to ``<project>-drill.prom``
    beside the backup's metrics; a failure is one line (host_failure.refusing).

    + project_dir: the project dir (its offsite.json names the repository)
    + snapshot: the id the drill restores (the latest, resolved while planning)
    + image, persist_path, environment, uid, gid, timeout: the server of the
      snapshot's version, as a check starts it (declaration.targets.CheckServer)
    """
    yield from upload_tools(project_dir)
    yield refusing(offsite_command(
        "drill", ("--config", offsite_config(project_dir)), ("--snapshot", snapshot),
        ("--image", image), ("--persist-path", persist_path), ("--uid", uid), ("--gid", gid),
        ("--timeout", timeout), ("--env", list(environment)),
    ), show_output=True)  # fmt: skip
