"""The Chroma stack as one pyinfra deploy: what deploy.py runs, and what yours can include.

``chroma_stack()`` declares everything in order: the checks before any change, the
engine, the image, the project's dirs and files, a legacy volume's migration, the
``.gitignore`` block, the version change, the compose file, an upgrade's verification
before the stack is published, the stack, and the verification of migrated data.
Another deploy file calls it with overrides of the data keys, next to operations of
its own::

    from deploys.chroma import chroma_stack
    chroma_stack(overrides={"chroma_port": 8001})
    server.shell(name="My own step", commands=["..."])

Its data defaults are the settings model's (declaration/settings.py), so the keys it
reads show their defaults in ``host.data`` while it runs.
"""

from __future__ import annotations

from typing import Any

from pyinfra import state
from pyinfra.api import deploy
from pyinfra.operations import server

from declaration.render import server_environment
from declaration.resources import Declared
from declaration.runtime import expected_runtime
from declaration.settings import DEFAULTS
from operations import engine, host_failure, image, migrate, project, stack, upgrade
from plumbing import lock, preflight, report

DATA_DEFAULTS = dict(DEFAULTS)


@deploy("Chroma stack", data_defaults=DATA_DEFAULTS)
def chroma_stack(overrides: dict[str, Any] | None = None) -> None:
    """Converge one host's Chroma stack; ``overrides`` win over the host's data keys."""
    settings = preflight.settings_for_host(overrides)
    token = preflight.token_for_host(settings)

    # One run at a time per project, held while this run lives. The host's whole state
    # is read in the same command once the lock is held, so the checks below see what
    # another run (a migration, an upgrade) left, not what it was in the middle of; they
    # and the operations read from it for as long as nothing has changed
    # (plumbing/host_state.py). A no-op run costs the host this one command.
    locked_out = lock.take_project_lock(
        settings.project_dir,
        settings.lock_timeout,
        "deploy.py",
        reads=preflight.deploy_reads(settings, token),
    )
    if locked_out:
        host_failure.refused(name="Project lock", message=locked_out)
        return
    owner = preflight.resolve_owner(settings)
    preflight.require_docker(settings)
    preflight.require_free_port(settings)
    declared = Declared(settings, owner.uid, owner.gid, token)
    preflight.require_dirs(declared)
    preflight.require_one_home(declared)
    preflight.require_own_stack(declared)
    preflight.require_files(declared)
    ship_id = image.control_image_id(settings.image_ref, settings.image_source)

    if settings.install_docker:
        engine.docker_engine(name="Docker Engine and Compose v2")

    image.chroma_image(
        name=f"Image {settings.image_ref} (source: {settings.image_source})",
        ref=settings.image_ref,
        version=settings.version,
        source=settings.image_source,
        build_dir=settings.image_build_dir,
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        ship_id=ship_id,
    )

    migrate.data_safety_guard(
        name="No failed verification, no data dir left empty beside a copy of it",
        project_dir=settings.project_dir,
        data_dir=settings.data_dir,
        accept_failed=settings.accept_failed_verification,
        allow_empty=settings.allow_empty_data_dir,
        stack=preflight.stack_read(settings),
    )

    if settings.create_owner and settings.owner:
        # chroma_create_owner: a system account (no login, no home) before the dirs it owns.
        if settings.group is None:
            server.group(
                name=f"Group {settings.owner} (chroma_create_owner)",
                group=settings.owner,
                gid=owner.gid,
                system=True,
            )
        server.user(  # noqa: S604 (shell= is the login shell, not a subprocess flag)
            name=f"System account {settings.owner} (chroma_create_owner)",
            user=settings.owner,
            uid=owner.uid,
            group=settings.group or settings.owner,
            system=True,
            home="/nonexistent",
            shell="/usr/sbin/nologin",
            ensure_home=False,
        )

    # Read before project.paths creates them: a container that bind-mounts a missing
    # file must start again to see the new one (stack_up below).
    fed_by_new_files = project.services_fed_by_missing_files(declared.paths)
    # Chroma on a data dir moved away under it (chroma_allow_empty_data_dir): on the new one.
    if migrate.services_on_moved_data(
        settings.project_dir, settings.data_dir, preflight.stack_read(settings)
    ):
        fed_by_new_files.append("chroma")
    project.paths(
        name=f"Project dir {settings.project_dir}, data dirs and files",
        resources=declared.paths,
    )

    copied = migrate.copy_legacy_volume(
        name="Data from a legacy named volume (copied, never deleted)",
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        data_dir=declared.data_dir_paths[0],
        volume_names=list(settings.legacy_volumes),
        adopt_volume=settings.adopt_volume,
        uid=declared.uid,
        gid=declared.gid,
        mode=settings.data_dir_mode,
    )

    migrate.stop_leftover_checks(
        name="Check servers a killed run left on the data dir, stopped",
        data_dir=declared.data_dir_paths[0],
    )
    taken = migrate.take_over_data(
        name="Data this project's Chroma serves from elsewhere (copied, never deleted)",
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        data_dir=declared.data_dir_paths[0],
        persist_path=declared.line.persist_path,
        uid=declared.uid,
        gid=declared.gid,
        mode=settings.data_dir_mode,
    )

    if settings.auth_proxy:
        image.proxy_image(
            name=f"Image {settings.proxy_image} (auth proxy)",
            ref=settings.proxy_image,
            build_dir=settings.image_build_dir,
        )

    if declared.gitignore:
        project.gitignore(
            name=".gitignore lines for the data dirs",
            project_dir=settings.project_dir,
            lines=list(declared.gitignore.lines),
            uid=declared.uid,
            gid=declared.gid,
        )

    version_change = upgrade.version_change(
        name=(
            f"Chroma version {settings.version}: backup and rehearsal before an upgrade, "
            "no downgrade"
        ),
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        data_dir=settings.data_dir,
        version=settings.version,
        backup_dir=settings.backup_dir,
        wait_timeout=settings.wait_timeout,
        rehearsal={
            "image": settings.image_ref,
            "persist_path": declared.line.persist_path,
            "environment": [f"{name}={value}" for name, value in server_environment(settings)],
            "uid": declared.uid,
            "gid": declared.gid,
        }
        if settings.upgrade_rehearsal
        else None,
        url=declared.url,
        token_file=declared.token_file,
    )

    compose = stack.compose_file(
        name=f"{settings.compose_path} from templates/docker-compose.yml.j2",
        project_dir=settings.project_dir,
        content=declared.compose_content,
        uid=declared.uid,
        gid=declared.gid,
    )

    # The declared server as a check starts it on the data dir, with no port published:
    # not on the auth proxy's loopback address, it is reached at its bridge address.
    unpublished = {
        "image": settings.image_ref,
        "persist_path": declared.line.persist_path,
        "environment": [
            f"{name}={value}"
            for name, value in server_environment(settings)
            if name != "CHROMA_LISTEN_ADDRESS"
        ],
        "uid": declared.uid,
        "gid": declared.gid,
    }
    checked = upgrade.verify_before_publish(
        name="Upgraded data verified by the new version before the stack is published",
        project_dir=settings.project_dir,
        data_dir=settings.data_dir,
        server=unpublished,
        wait_timeout=settings.wait_timeout,
        upgrading=version_change.will_change if state.should_check_for_changes() else False,
    )
    copy_checked = migrate.verify_copy_before_publish(
        name="Data taken over verified before the stack is published",
        project_dir=settings.project_dir,
        data_dir=declared.data_dir_paths[0],
        server=unpublished,
        wait_timeout=settings.wait_timeout,
    )

    up = stack.stack_up(
        name=f"Stack {settings.compose_project} up and healthy",
        project_dir=settings.project_dir,
        project_name=settings.compose_project,
        wait_timeout=settings.wait_timeout,
        image=settings.image_ref,
        port=settings.port,
        # Asked only when pyinfra plans changes before running (no -y): then the
        # plan shows the restart. With -y this op runs after the file is replaced
        # and its fact sees the new config hash, so asking would cost a round trip.
        file_changed=compose.will_change if state.should_check_for_changes() else False,
        restart=fed_by_new_files,
        runtime=expected_runtime(declared.compose_content, settings.project_dir),
        health=preflight.health_read(declared),
        data={
            "project_dir": settings.project_dir,
            "path": declared.data_dir_paths[0],
            "persist_path": declared.line.persist_path,
            "uid": declared.uid,
            "gid": declared.gid,
            "mode": settings.data_dir_mode,
        },
    )

    # Every up of a run (a start, a recreate, an upgrade's or a migration's switch) is
    # stack_up's: once it ran, Chroma must answer where clients reach it, before a
    # migration is verified there. A run that started nothing asks nothing more.
    stack.published_answers(
        name=f"Chroma answers on {declared.url}",
        project_dir=settings.project_dir,
        wait_timeout=settings.wait_timeout,
        health=preflight.health_read(declared),
        _if=up.did_change,
    )

    verified = migrate.verify_migration(
        name="Migrated data verified on the bind mount",
        project_dir=settings.project_dir,
        data_dir=declared.data_dir_paths[0],
        url=declared.url,
        token_file=declared.token_file,
    )

    # What a migration, an upgrade's backup and its verification found, at default verbosity.
    for step in (copied, taken, version_change, checked, copy_checked, verified):
        report.show(step)
