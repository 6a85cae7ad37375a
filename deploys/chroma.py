"""The Chroma stack as one pyinfra deploy: what deploy.py runs, and what yours can include.

``chroma_stack()`` declares everything in order, one short step each, as README.md
lists them: the checks before any change, the engine, the image, the data-safety
guard, the owner account, the project's dirs and files, data the bind mount would not
see (a legacy volume, data served from elsewhere), the proxy's image, the
``.gitignore`` block, the version change, the compose file, the verifications before
the stack is published, the stack, the verification of migrated data, and the
scheduled off-host backup (cron and this project's entry in root's crontab). Each
operation takes the typed values :class:`declaration.resources.Declared` derives once
(declaration/targets.py), not arguments spelled out again at each call.
Another deploy file calls it with overrides of the data keys, next to operations of
its own::

    from deploys.chroma import chroma_stack
    chroma_stack(overrides={"chroma_port": 8001})
    server.shell(name="My own step", commands=["..."])

Its data defaults are the settings model's (declaration/settings.py), so the keys it
reads show their defaults in ``host.data`` while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from declaration.clients import ProxyClients
from declaration.resources import Declared, File, TlsFiles
from declaration.runtime import expected_runtime
from declaration.schedule import declared_maintain_schedule, declared_schedule
from declaration.settings import DEFAULTS, Settings
from operations import engine, image, migrate, offsite, project, schema, stack, tls, upgrade
from operations.acme import acme_certificate, acme_renewal_schedule
from operations.backup_schedule import backup_schedule, cron_daemon, maintain_schedule
from operations.tokens import clients_served
from plumbing import preflight, report
from plumbing.host_tools import TOOLS_DIR
from plumbing.tls import check_address

DATA_DEFAULTS = dict(DEFAULTS)


@deploy("Chroma stack", data_defaults=DATA_DEFAULTS)
def chroma_stack(overrides: dict[str, Any] | None = None, start: bool = True) -> None:
    """Converge one host's Chroma stack; ``overrides`` win over the host's data keys.

    One step per line, in the order README.md's "What a run declares" lists them.
    ``start=False``: everything up to the compose file, no server (restore.py on a
    host the stack never ran on: an empty Chroma would serve until the data is in).
    """
    settings = preflight.settings_for_host(overrides)
    clients = preflight.clients_for_host(settings)
    token = clients.host_tools if clients else None
    if not _project_lock(settings, token, clients):
        return
    declared, ship_id = _checks_before_any_change(
        settings, clients, preflight.tls_for_host(settings)
    )
    _engine(settings)
    _offsite_repository(declared)
    _image(declared, ship_id)
    _no_unsafe_data(declared)
    _owner_account(declared)
    restart = _project_paths(declared)
    moved = _data_homes(declared)
    _proxy_image(settings)
    _gitignore(declared)
    version_change = _version_change(declared)
    compose = _compose_file(declared)
    _acme_certificate(declared)
    if not start:
        return
    checked = _verified_before_publish(declared, version_change)
    _schema_in_place(declared)
    # Before stack_up's check of the published port, which verifies the new certificate.
    reloaded = _certificate_served(declared)
    # Before stack_up too: its check of the published port uses the host's own token.
    clients_reloaded = _clients_served(declared)
    up = _stack_up(declared, compose, restart)
    reloads = [op for op in (reloaded, clients_reloaded) if op]
    _published_answers(declared, any_changed(up, *reloads) if reloads else up.did_change)
    verified = _migration_verified(declared)
    _backup_schedule(settings)
    _acme_schedule(declared)
    # What a migration, an upgrade's backup and its verification found, at default verbosity.
    for step in (*moved, version_change, *checked, verified):
        report.show(step)


def _changing(op: OperationMeta) -> bool:
    """``op`` will change the host; known only when pyinfra plans changes before running.

    That is without -y: then the plan shows what follows from it. With -y each later
    operation runs after this one and its facts see the change, so asking would cost a
    round trip.
    """
    return op.will_change if state.should_check_for_changes() else False


def _project_lock(settings: Settings, token: str | None, clients: ProxyClients | None) -> bool:
    """One run at a time per project, held while this run lives; False: another run holds it.

    The host's whole state is read in the same command once the lock is held, so the
    checks below see what another run (a migration, an upgrade) left, not what it was in
    the middle of; they and the operations read from it for as long as nothing has
    changed (plumbing/host_state.py). A no-op run costs the host this one command.
    """
    reads = preflight.deploy_reads(settings, token, clients)
    return preflight.hold_project_lock(settings, "deploy.py", reads)


def _checks_before_any_change(
    settings: Settings, clients: ProxyClients | None, tls: TlsFiles | None
) -> tuple[Declared, str | None]:
    """The declaration for the host's owner, once every check passed; and the image to ship."""
    owner = preflight.resolve_owner(settings)
    preflight.require_docker(settings)
    preflight.require_free_port(settings)
    offsite_files = preflight.offsite_for_host(settings, owner.uid, owner.gid)
    token = clients.host_tools if clients else None
    declared = Declared(
        settings, owner.uid, owner.gid, token, offsite=offsite_files, tls=tls, clients=clients
    )
    declared = preflight.with_acme(declared)
    preflight.require_dirs(declared)
    preflight.require_one_home(declared)
    preflight.require_opened_dir_in_place(declared, "deploy.py")
    preflight.require_own_stack(declared)
    preflight.require_files(declared)
    return declared, image.control_image_id(settings.image_ref, settings.image_source)


def _engine(settings: Settings) -> None:
    if settings.install_docker:
        engine.docker_engine(name="Docker Engine and Compose v2")


def _offsite_repository(declared: Declared) -> None:
    """chroma_backup_repository: restic, and the repository opened (or created) with the
    secrets before they replace the host's, and before the stack changes (docs/offsite-backups.md).
    """
    if declared.offsite is None:
        return
    offsite.restic_installed(name="restic (off-host backups)")
    offsite.repository(
        name=f"restic repository {declared.offsite.repository}, its secrets and offsite.json",
        target=declared.offsite,
        paths=declared.paths,
        create=not declared.settings.restore_snapshot,  # a restore never makes an empty one
    )


def _image(declared: Declared, ship_id: str | None) -> None:
    settings = declared.settings
    image.chroma_image(
        name=f"Image {settings.image_ref} (source: {settings.image_source})",
        stack=declared.stack_target,
        version=settings.version,
        source=settings.image_source,
        build_dir=settings.image_build_dir,
        ship_id=ship_id,
    )


def _no_unsafe_data(declared: Declared) -> None:
    settings = declared.settings
    migrate.data_safety_guard(
        name="No failed verification, no data dir left empty beside a copy of it",
        data=declared.data_target,
        accept_failed=settings.accept_failed_verification,
        allow_empty=settings.allow_empty_data_dir,
        stack=declared.stack_target,
    )


def _owner_account(declared: Declared) -> None:
    """chroma_create_owner: a system account (no login, no home) before the dirs it owns."""
    settings = declared.settings
    if not (settings.create_owner and settings.owner):
        return
    if settings.group is None:
        server.group(
            name=f"Group {settings.owner} (chroma_create_owner)",
            group=settings.owner,
            gid=declared.gid,
            system=True,
        )
    server.user(  # noqa: S604 (shell= is the login shell, not a subprocess flag)
        name=f"System account {settings.owner} (chroma_create_owner)",
        user=settings.owner,
        uid=declared.uid,
        group=settings.group or settings.owner,
        system=True,
        home="/nonexistent",
        shell="/usr/sbin/nologin",
        ensure_home=False,
    )


def _project_paths(declared: Declared) -> list[str]:
    """The project's dirs and files; the services that must start again to see new ones.

    Read before project.paths creates them: a container that bind-mounts a missing
    file must start again to see the new one (stack_up). So must Chroma on a data dir
    moved away under it (chroma_allow_empty_data_dir): on the new one.
    """
    restart = project.services_fed_by_missing_files(declared.paths)
    if migrate.services_on_moved_data(declared.data_target, declared.stack_target):
        restart.append("chroma")
    project.paths(
        name=f"Project dir {declared.settings.project_dir}, data dirs and files",
        resources=declared.paths,
    )
    return restart


def _data_homes(declared: Declared) -> tuple[OperationMeta, OperationMeta]:
    """Data the bind mount would not see, copied into the data dir: never deleted."""
    stack, data, settings = declared.stack_target, declared.data_target, declared.settings
    copied = migrate.copy_legacy_volume(
        name="Data from a legacy named volume (copied, never deleted)",
        stack=stack,
        data=data,
        volume_names=list(settings.legacy_volumes),
        adopt_volume=settings.adopt_volume,
    )
    migrate.stop_leftover_checks(
        name="Check servers a killed run left on the data dir, stopped",
        data=data,
        stop_grace=settings.stop_grace_seconds,
    )
    taken = migrate.take_over_data(
        name="Data this project's Chroma serves from elsewhere (copied, never deleted)",
        stack=stack,
        data=data,
    )
    return copied, taken


def _proxy_image(settings: Settings) -> None:
    if settings.auth_proxy:
        image.proxy_image(
            name=f"Image {settings.proxy_image} (auth proxy)",
            ref=settings.proxy_image,
            build_dir=settings.image_build_dir,
        )


def _gitignore(declared: Declared) -> None:
    if declared.gitignore:
        project.gitignore(
            name=".gitignore lines for the data dirs",
            project_dir=declared.settings.project_dir,
            lines=list(declared.gitignore.lines),
            uid=declared.uid,
            gid=declared.gid,
        )


def _version_change(declared: Declared) -> OperationMeta:
    settings = declared.settings
    return upgrade.version_change(
        name=(
            f"Chroma version {settings.version}: backup and rehearsal before an upgrade, "
            "no downgrade"
        ),
        stack=declared.stack_target,
        data=declared.data_target,
        version=settings.version,
        backup_dir=settings.backup_dir,
        rehearsal=declared.rehearsal,
        health=declared.health_check,
    )


def _compose_file(declared: Declared) -> OperationMeta:
    return stack.compose_file(
        name=f"{declared.settings.compose_path} from templates/docker-compose.yml.j2",
        project_dir=declared.settings.project_dir,
        file=declared.compose_file,
    )


def _verified_before_publish(
    declared: Declared, version_change: OperationMeta
) -> tuple[OperationMeta, OperationMeta]:
    """An upgrade and a copy taken over, each checked by a server with no port published."""
    checked = upgrade.verify_before_publish(
        name="Upgraded data verified by the new version before the stack is published",
        data=declared.data_target,
        server=declared.check_server,
        upgrading=_changing(version_change),
    )
    copy_checked = migrate.verify_copy_before_publish(
        name="Data taken over verified before the stack is published",
        data=declared.data_target,
        server=declared.check_server,
    )
    return checked, copy_checked


def _schema_in_place(declared: Declared) -> None:
    """On 1.x the server validates its schema, and so refuses a data dir with none: a new
    stack's (or an emptied) data dir gets it first, from the same image (operations/schema.py)."""
    if declared.validates:
        schema.schema_in_place(
            name="Chroma's schema in the data dir before its server validates it",
            stack=declared.stack_target,
            data=declared.data_target,
            server=declared.check_server,
            allow_empty=declared.settings.allow_empty_data_dir,
        )


def _stack_up(declared: Declared, compose: OperationMeta, restart: list[str]) -> OperationMeta:
    settings = declared.settings
    return stack.stack_up(
        name=f"Stack {settings.compose_project} up and healthy",
        stack=declared.stack_target,
        port=settings.port,
        file_changed=_changing(compose),
        restart=restart,
        runtime=expected_runtime(declared.compose_content, settings.project_dir),
        health=declared.health_check,
        data=declared.data_target,
        schema_guard=declared.validates,
    )


def _certificate_served(declared: Declared) -> OperationMeta | None:
    """With TLS on: a certificate renewed or replaced reaches the running proxy by a reload."""
    if not declared.tls_dir:
        return None
    settings = declared.settings
    return tls.certificate_served(
        name=f"The proxy serves the certificate in {declared.tls_dir}",
        stack=declared.stack_target,
        tls_dir=declared.tls_dir,
        address=check_address(settings),
        port=settings.port,
        uid=declared.uid,
    )


def _acme_certificate(declared: Declared) -> None:
    """chroma_tls=acme: the host obtains its certificate (lego) before the proxy needs it."""
    if declared.acme:
        acme_certificate(
            name=f"Certificate for {' '.join(declared.acme.domains)} from an ACME CA (lego)",
            target=declared.acme,
        )


def _acme_schedule(declared: Declared) -> None:
    """chroma_tls=acme: root's crontab renews the certificate; removed when no longer acme."""
    if declared.acme:
        cron_daemon(name="cron running (it renews the ACME certificate)")
    acme_renewal_schedule(
        name=f"ACME renewal of {declared.settings.project_dir} in root's crontab",
        project_dir=declared.settings.project_dir,
        target=declared.acme,
    )


def _clients_served(declared: Declared) -> OperationMeta | None:
    """With the proxy: a client added, revoked or rotated reaches nginx by a reload."""
    if not (declared.clients and declared.proxy_dir):
        return None
    clients_file = next(
        path for path in declared.paths
        if isinstance(path, File) and path.path == declared.clients_file
    )  # fmt: skip
    assert clients_file.sha256
    return clients_served(
        name=f"The proxy has loaded the clients in {declared.clients_file}",
        stack=declared.stack_target,
        proxy_dir=declared.proxy_dir,
        sha256=clients_file.sha256,
        image=declared.settings.proxy_image,
        uid=declared.uid,
    )


def _published_answers(declared: Declared, changed: Callable[[], bool]) -> None:
    # Every up of a run (a start, a recreate, an upgrade's or a migration's switch) is
    # stack_up's: once it ran, Chroma must answer where clients reach it, before a
    # migration is verified there. A run that started nothing asks nothing more.
    stack.published_answers(
        name=f"Chroma answers on {declared.url}",
        stack=declared.stack_target,
        health=declared.health_check,
        _if=changed,
    )


def _backup_schedule(settings: Settings) -> None:
    """chroma_backup_schedule: the host backs itself up off-host with no control machine.

    The entry's "auto" minute comes from the inventory name (declaration/schedule.py).
    With no repository, or the schedule off, this project's entry is removed if there.
    """
    schedule = declared_schedule(settings, host.name, TOOLS_DIR)
    maintenance = declared_maintain_schedule(settings, host.name, TOOLS_DIR)  # maintain.py
    if schedule is not None or maintenance is not None:
        cron_daemon(name="cron running (it runs the scheduled backups)")
    backup_schedule(
        name=f"Scheduled backup of {settings.project_dir} in root's crontab",
        project_dir=settings.project_dir,
        schedule=schedule,
    )
    maintain_schedule(
        name=f"Scheduled maintenance report of {settings.project_dir} in root's crontab",
        project_dir=settings.project_dir,
        schedule=maintenance,
    )


def _migration_verified(declared: Declared) -> OperationMeta:
    return migrate.verify_migration(
        name="Migrated data verified on the bind mount",
        data=declared.data_target,
        health=declared.health_check,
    )
