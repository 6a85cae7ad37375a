"""backup.py's off-host backup: the host's own program, the one its schedule runs too.

With ``chroma_backup_repository`` set, a backup is files/chroma_offsite.py
``backup`` on the config the deploy wrote (operations/offsite.py): the same
program, the same lock, the same status file and metrics as a scheduled run,
so a backup made by hand and one made by cron are the same thing.
"""

from __future__ import annotations

import shlex

from pyinfra.api import operation
from pyinfra.facts.files import File

from declaration.offsite import backup_argv, config_path
from facts.project import ProjectFiles
from operations.host_failure import fail_host
from plumbing import host_state
from plumbing.host_tools import TOOLS_DIR, upload_tools


@operation(is_idempotent=False)
def offsite_backup(project_dir: str):
    """A snapshot of the data dir in the restic repository (files/chroma_offsite.py).

    Chroma is stopped only for a local copy; the upload runs while it serves.
    Refused, before anything runs, when the deploy has not written the config
    (the repository was set after the last deploy), and while the project's
    .env sets a COMPOSE_ variable (compose obeys it over our ``-f``: the copy
    would stop another project and read a live database).

    + project_dir: the project dir
    """
    compose_env = host_state.read(ProjectFiles, project_dir=project_dir)["env_compose"]
    if compose_env:
        yield fail_host(
            f"chroma_project_dir: {project_dir}/.env sets {compose_env[0]}, which docker compose "
            "obeys over the project's compose file (even with -f: the backup would stop another "
            "project and copy a live database); remove that line (chroma-deploy never edits "
            "your .env), then run again"
        )
        return
    config = config_path(project_dir)
    if not host_state.read(File, path=config):
        yield fail_host(
            f"chroma_backup_repository: {config} is not on the host, so there is no repository "
            "to back up to yet; nothing was stopped: run deploy.py with chroma_backup_repository "
            "set (it writes the config and the repository's secrets), then backup.py again"
        )
        return
    yield from upload_tools(project_dir)
    yield shlex.join(backup_argv(TOOLS_DIR, project_dir))
