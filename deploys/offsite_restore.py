"""restore.py with chroma_restore_snapshot: a snapshot of the off-host repository, onto any host.

The snapshot is resolved while pyinfra plans wherever the host can read the
repository (facts.snapshots.OffsiteSnapshots): an unknown id, an empty
repository or a repository that does not open is refused with one line before
anything changes, and the snapshot's ``chroma_version=`` tag names the version to
restore on, as an archive's manifest does. On a host the stack never ran on
(no compose file), or one that cannot read the repository yet (also one whose
offsite.json names another repository than the command does), the project is
converged first, without a server (``chroma_stack(start=False)``, which ships
restic and the repository's files): an empty Chroma never serves. Then the snapshot
is restored beside the data dir, checked against its manifest, switched in
with the current data dir moved aside, and the stack brought up on the
snapshot's version and checked through the API (operations/offsite_restore.py).
"""

from __future__ import annotations

from declaration.resources import Declared
from declaration.settings import Settings
from deploys.backup_version import image_of_version, settings_of_version
from deploys.chroma import chroma_stack
from facts.project import ProjectFiles
from facts.snapshots import OffsiteSnapshots
from operations import host_failure, offsite_restore, project
from plumbing import host_state, preflight, report
from plumbing.host_tools import TOOLS_DIR
from plumbing.preflight import Owner


def snapshot_of(settings: Settings) -> dict:
    """The repository's reading of ``chroma_restore_snapshot`` on this host (or the drill's)."""
    wanted = settings.restore_snapshot or "latest"
    return host_state.read(
        OffsiteSnapshots, config=offsite_restore.offsite_config(settings.project_dir),
        tools_dir=TOOLS_DIR, snapshot=wanted,
    )  # fmt: skip


def declared_files_in_place(settings: Settings, owner: Owner) -> bool:
    """Whether the host's repository secrets and offsite.json are the ones this run declares.

    When they are not (the command names another repository, or another password),
    what the host's own config reads is some other repository's answer, not this one's.
    """
    target = preflight.offsite_for_host(settings, owner.uid, owner.gid)
    if target is None:  # not with chroma_restore_snapshot: the settings require a repository
        return False
    found = project.path_states(target.files)
    return all(
        (state := found.get(resource.path)) is not None and state["sha256"] == resource.sha256
        for resource in target.files
    )


def snapshot_settings(settings: Settings, version: str, key: str) -> tuple[Settings, str | None]:
    """This host's settings on the snapshot's Chroma version; or why they do not fit."""
    return settings_of_version(settings, version, key, "the snapshot was taken on", "a snapshot")


def restore_from_repository(settings: Settings, owner: Owner, token: str | None) -> None:
    """Declare the whole restore of ``chroma_restore_snapshot`` on this host."""
    found = snapshot_of(settings)
    if found["readable"] and not declared_files_in_place(settings, owner):
        # The host reads another repository than the one named: decide once this run's
        # files are in place (operations/offsite.py opens the named one first, or refuses).
        found = OffsiteSnapshots.default()
    if found["fault"]:
        host_failure.refused(name="Snapshot of the off-host repository", message=found["fault"])
        return
    chosen = found["chosen"]
    version = chosen["version"] if chosen else settings.version
    then, problem = snapshot_settings(settings, version, "chroma_restore_snapshot")
    if problem:
        host_failure.refused(name="Snapshot of the off-host repository", message=problem)
        return
    files = host_state.read(ProjectFiles, project_dir=settings.project_dir)
    keep = f": keep chroma_version={version}" if version != settings.version else ""
    what = f"snapshot {chosen['short_id']}" if chosen else f"snapshot {settings.restore_snapshot}"
    compose_content = None
    if not files["compose"] or not found["readable"]:
        # Never ran here, or cannot read the repository yet: converge the project (restic,
        # the repository's files) on the snapshot's version if known, and start no server.
        chroma_stack(overrides={"chroma_version": version}, start=False)
    else:
        if not preflight.hold_project_lock(settings, "restore.py"):
            return
        compose_content = image_of_version(
            settings, Declared(then, owner.uid, owner.gid, token), "the snapshot was taken with"
        )
    declared = Declared(then, owner.uid, owner.gid, token)
    restored = offsite_restore.restore_snapshot(
        name=f"Restore {what} into {then.path(then.data_dir)} on Chroma {version}{keep}",
        project_dir=then.project_dir,
        project_name=then.compose_project,
        data_dir=then.data_dir,
        snapshot=settings.restore_snapshot or "latest",
        chosen=chosen["id"] if chosen else None,
        prepared_version=None if chosen else version,
        uid=declared.uid,
        gid=declared.gid,
        mode=then.data_dir_mode,
        url=declared.url,
        token_file=declared.token_file,
        wait_timeout=then.wait_timeout,
        compose_content=compose_content,
        tls_dir=declared.tls_dir,
        schema_server=declared.check_server if declared.validates else None,
    )
    report.show(restored)  # the verification through the API


def restore_drill(settings: Settings, owner: Owner) -> None:
    """Declare prove.py's restore drill of this project's latest snapshot."""
    found = snapshot_of(settings)
    if not found["chosen"]:
        message = found["fault"] or (
            "chroma_restore_drill: this host cannot read the repository yet (no restic, or no "
            f"{offsite_restore.offsite_config(settings.project_dir)}): nothing was changed; "
            "deploy it with chroma_backup_repository set, then drill"
        )
        host_failure.refused(name="Restore drill", message=message)
        return
    chosen = found["chosen"]
    then, problem = snapshot_settings(settings, chosen["version"], "chroma_restore_drill")
    if problem:
        host_failure.refused(name="Restore drill", message=problem)
        return
    server = Declared(then, owner.uid, owner.gid).check_server
    offsite_restore.restore_drill(
        name=f"Restore drill of snapshot {chosen['short_id']}: a throwaway dir and server",
        project_dir=settings.project_dir,
        snapshot=chosen["id"],
        image=server.image,
        persist_path=server.persist_path,
        environment=list(server.environment),
        uid=server.uid,
        gid=server.gid,
        timeout=server.timeout,
    )
