"""Converge a persistent Chroma stack on @local or on the hosts of inventory.py.

Reads the host's ``chroma_*`` data (defaults and rules: operations/settings.py),
checks it before anything changes, then declares the engine, the image, the
project and data dirs, the .gitignore lines and the compose file, and brings
the stack up only when something differs. A second run changes nothing.
"""

from pyinfra import state

from operations import (
    engine,
    host_failure,
    image,
    lock,
    migrate,
    preflight,
    project,
    secrets,
    stack,
    upgrade,
)
from operations.declared import Declared
from operations.render import server_environment

settings = preflight.settings_for_host()
token = preflight.token_for_host(settings)
owner = preflight.resolve_owner(settings)
preflight.require_docker(settings)
declared = Declared(settings, owner.uid, owner.gid)
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

project.directories(
    name=f"Project dir {settings.project_dir} and data dirs",
    project_dir=settings.project_dir,
    data_dirs=settings.data_dirs,
    uid=declared.uid,
    gid=declared.gid,
    dir_mode=settings.dir_mode,
    data_dir_mode=settings.data_dir_mode,
)

migrate.copy_legacy_volume(
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

if declared.token_file and token:
    project.directories(
        name=f"Secrets dir {declared.secrets_dir}",
        project_dir=settings.project_dir,
        data_dirs=(settings.secrets_dir,),
        uid=declared.uid,
        gid=declared.gid,
        dir_mode=settings.dir_mode,
        data_dir_mode="700",
        gitkeep=False,
    )
    secrets.token_file(
        name=f"Token file {declared.token_file} (0600)",
        path=declared.token_file,
        token=token,
        uid=declared.uid,
        gid=declared.gid,
    )

if declared.log_file:
    project.empty_file(
        name="Log file mounted into the 0.x server",
        path=declared.log_file,
        uid=declared.uid,
        gid=declared.gid,
    )

if declared.gitignore_lines:
    project.gitignore(
        name=".gitignore lines for the data dirs",
        project_dir=settings.project_dir,
        lines=declared.gitignore_lines,
        uid=declared.uid,
        gid=declared.gid,
    )

upgrade.version_change(
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

migrate.verify_migration(
    name="Migrated data verified on the bind mount",
    project_dir=settings.project_dir,
    data_dir=declared.data_dir_paths[0],
    url=declared.url,
    token_file=declared.token_file,
)
