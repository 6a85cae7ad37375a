"""Converge a persistent Chroma stack on @local or on the hosts of inventory.py.

Reads the host's ``chroma_*`` data (defaults and rules: operations/settings.py),
checks it before anything changes, then declares the engine, the image, the
project and data dirs, the .gitignore lines and the compose file, and brings
the stack up only when something differs. A second run changes nothing.
"""

from operations import engine, image, preflight, project, stack
from operations.render import render_compose
from operations.versions import version_line

settings = preflight.settings_for_host()
owner = preflight.resolve_owner(settings)
preflight.require_docker(settings)
line = version_line(settings.version)

if settings.install_docker:
    engine.docker_engine(name="Docker Engine and Compose v2")

image.chroma_image(
    name=f"Image {settings.image_ref} (source: {settings.image_source})",
    ref=settings.image_ref,
    version=settings.version,
    source=settings.image_source,
    build_dir=settings.image_build_dir,
)

project.directories(
    name=f"Project dir {settings.project_dir} and data dirs",
    project_dir=settings.project_dir,
    data_dirs=settings.data_dirs,
    uid=owner.uid,
    gid=owner.gid,
    dir_mode=settings.dir_mode,
    data_dir_mode=settings.data_dir_mode,
)

if line.log_file:
    project.empty_file(
        name="Log file mounted into the 0.x server",
        path=settings.path(f"{settings.logs_dir}/chroma.log"),
        uid=owner.uid,
        gid=owner.gid,
    )

if settings.manage_gitignore:
    project.gitignore(
        name=".gitignore lines for the data dirs",
        project_dir=settings.project_dir,
        lines=project.gitignore_lines(settings.data_dirs),
        uid=owner.uid,
        gid=owner.gid,
    )

compose = stack.compose_file(
    name=f"{settings.compose_path} from templates/docker-compose.yml.j2",
    project_dir=settings.project_dir,
    content=render_compose(settings, owner.uid, owner.gid),
    uid=owner.uid,
    gid=owner.gid,
)

stack.stack_up(
    name=f"Stack {settings.compose_project} up and healthy",
    project_dir=settings.project_dir,
    project_name=settings.compose_project,
    wait_timeout=settings.wait_timeout,
    file_changed=compose.will_change,
)
