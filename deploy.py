"""Converge a persistent Chroma stack on @local or on the hosts of inventory.py.

Reads the host's ``chroma_*`` data (defaults and rules: declaration/settings.py),
checks it before anything changes, then declares the engine, the image, the
project and data dirs, the .gitignore lines and the compose file, and brings
the stack up only when something differs. A second run changes nothing.
"""

import sys
from pathlib import Path

# pyinfra puts only the working dir on sys.path: make `pyinfra @local /path/to/deploy.py`
# find facts/ and operations/ from any dir, ahead of any other module of that name.
ROOT = str(Path(__file__).resolve().parent)
if ROOT not in sys.path:  # once, though pyinfra runs this file for every host
    sys.path.insert(0, ROOT)

from pyinfra import state  # noqa: E402
from pyinfra.operations import server  # noqa: E402

from declaration.render import server_environment  # noqa: E402
from declaration.resources import Declared  # noqa: E402
from operations import (  # noqa: E402
    engine,
    host_failure,
    host_state,
    image,
    lock,
    migrate,
    preflight,
    project,
    report,
    stack,
    upgrade,
)

settings = preflight.settings_for_host()
token = preflight.token_for_host(settings)
# The host's whole state in one command; the checks and operations below read from it
# for as long as nothing has changed (operations/host_state.py).
host_state.prefetch(preflight.deploy_reads(settings, token))
owner = preflight.resolve_owner(settings)
preflight.require_docker(settings)
preflight.require_free_port(settings)
declared = Declared(settings, owner.uid, owner.gid, token)
preflight.require_dirs(declared)
ship_id = image.control_image_id(settings.image_ref, settings.image_source)

# One run at a time per project: taken now, before any operation, held while this run lives.
locked_out = lock.take_project_lock(settings.project_dir, settings.lock_timeout, "deploy.py")
if locked_out:
    host_failure.refused(name="Project lock", message=locked_out)

if settings.install_docker:
    engine.docker_engine(name="Docker Engine and Compose v2")

image.chroma_image(
    name=f"Image {settings.image_ref} (source: {settings.image_source})",
    ref=settings.image_ref,
    version=settings.version,
    source=settings.image_source,
    build_dir=settings.image_build_dir,
    ship_id=ship_id,
)

migrate.data_safety_guard(
    name="No failed verification, no data dir left empty beside a copy of it",
    project_dir=settings.project_dir,
    data_dir=settings.data_dir,
    accept_failed=settings.accept_failed_verification,
    allow_empty=settings.allow_empty_data_dir,
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
    name=f"Chroma version {settings.version}: backup and rehearsal before an upgrade, no downgrade",
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
)

compose = stack.compose_file(
    name=f"{settings.compose_path} from templates/docker-compose.yml.j2",
    project_dir=settings.project_dir,
    content=declared.compose_content,
    uid=declared.uid,
    gid=declared.gid,
)

stack.stack_up(
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
    data={
        "project_dir": settings.project_dir,
        "path": declared.data_dir_paths[0],
        "persist_path": declared.line.persist_path,
        "uid": declared.uid,
        "gid": declared.gid,
        "mode": settings.data_dir_mode,
    },
)

verified = migrate.verify_migration(
    name="Migrated data verified on the bind mount",
    project_dir=settings.project_dir,
    data_dir=declared.data_dir_paths[0],
    url=declared.url,
    token_file=declared.token_file,
)

# What a migration, an upgrade's backup and its verification found, at default verbosity.
for step in (copied, version_change, verified):
    report.show(step)
