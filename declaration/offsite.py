"""The off-host backup repository a host declares: its secrets and config files (#23).

With ``chroma_backup_repository`` set, the deploy puts on the host, owned by the
project's owner and 0600 in a 0700 dir: the repository string, its password
and, for an ``sftp:`` repository, the SSH key and the pinned known_hosts lines
(each read on the control machine, plumbing/secrets.py), and
``<project_dir>/.chroma-deploy/offsite.json``, the config the host programs
read (files/chroma_restic.py lists its keys).

The secrets live in ``.chroma-deploy/restic/``, not in ``chroma_secrets_dir``:
the application service mounts the whole secrets dir (to read the token), and
the backup password and the key to the repository host are no business of an
application container. ``.chroma-deploy/`` is in the project's ``.gitignore``.

operations/offsite.py converges these files, and only after the repository
opened with them (a password that does not open it never replaces one that
does); drift.py compares them as it compares every declared file.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

from declaration.resources import Directory, File
from declaration.settings import Settings

STATE_DIR = ".chroma-deploy"
RESTIC_DIR = f"{STATE_DIR}/restic"
CONFIG = f"{STATE_DIR}/offsite.json"
METRICS_DIR = "/var/lib/chroma-deploy/metrics"
BACKUP_PROGRAM = "chroma_offsite.py"  # files/: the backup cron and backup.py both run
RESTIC_LOCK_WAIT = 300  # seconds a backup waits for another restic's lock on the repository
# The secrets, by the key they come from (its name without chroma_backup_), and their file.
SECRET_FILES = (
    ("repository", "restic-repository"),
    ("password_file", "restic-password"),
    ("ssh_key", "restic-ssh-key"),
    ("known_hosts", "restic-known-hosts"),
)


@dataclass(frozen=True)
class OffsiteSecrets:
    """What the control machine's files hold (never shown: ``repr`` leaves them out)."""

    repository: str
    password: str = field(repr=False)
    ssh_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = None

    def content(self, name: str) -> str | None:
        """The host file's content for one of :data:`SECRET_FILES`' names; None: not used."""
        value = {
            "repository": self.repository,
            "password_file": self.password,
            "ssh_key": self.ssh_key,
            "known_hosts": self.known_hosts,
        }[name]
        if value is None:
            return None
        return value if name == "ssh_key" else value.strip() + "\n"


@dataclass(frozen=True)
class OffsiteTarget:
    """One host's off-host backup files: what operations/offsite.py converges."""

    host: str  # the inventory name: the snapshots' --host
    repository: str  # shown in messages (a password in it is refused by the settings)
    password_source: str  # chroma_backup_password_file on the control machine
    known_hosts_source: str | None
    ssh_key_source: str | None
    project_dir: str
    directory: Directory
    secrets: tuple[File, ...] = field(repr=False)
    config: File = field(repr=False)

    @property
    def files(self) -> tuple[File, ...]:
        """The secrets, then offsite.json (last: it names them)."""
        return (*self.secrets, self.config)

    @property
    def resources(self) -> tuple[Directory | File, ...]:
        return (self.directory, *self.files)


def config_path(project_dir: str) -> str:
    """offsite.json of the project: every host program and entry reads it from here."""
    return f"{project_dir}/{CONFIG}"


def backup_argv(tools_dir: str, project_dir: str) -> list[str]:
    """The backup program's command: what backup.py runs and what cron's entry runs."""
    return ["python3", f"{tools_dir}/{BACKUP_PROGRAM}", "backup", "--config",
            config_path(project_dir)]  # fmt: skip


def config_values(
    settings: Settings, host: str, lock_dir: str, paths: dict[str, str | None]
) -> dict[str, Any]:
    """offsite.json's keys (files/chroma_restic.py's docstring), in that order."""
    return {
        "project_dir": settings.project_dir,
        "project_name": settings.compose_project,
        "compose_file": settings.compose_path,
        "data_dir": settings.path(settings.data_dir),
        "host": host,
        "wait_timeout": settings.wait_timeout,
        "repository_file": paths["repository"],
        "password_file": paths["password_file"],
        "ssh_key": paths["ssh_key"],
        "known_hosts": paths["known_hosts"],
        "keep": {
            "daily": settings.backup_keep_daily,
            "weekly": settings.backup_keep_weekly,
            "monthly": settings.backup_keep_monthly,
        },
        "check_subset": settings.backup_check_subset,
        "lock_dir": lock_dir,
        "metrics_file": f"{METRICS_DIR}/{settings.compose_project}-backup.prom",
        "status_file": settings.path(f"{STATE_DIR}/offsite-status.json"),
        "staging_dir": settings.path(f"{STATE_DIR}/offsite-staging"),
        "lock_timeout": settings.lock_timeout,
        "restic_lock_wait": RESTIC_LOCK_WAIT,
        "allow_empty_data_dir": settings.allow_empty_data_dir,
    }


def snapshot_host(inventory_name: str) -> str:
    """The name this host's snapshots carry (restic's ``--host``, the ``host=`` tag).

    The inventory's name, except pyinfra's ``@local``, which is no machine's name:
    two machines each deployed with ``@local`` and the defaults (project chroma in
    /srv/chroma) into one repository would be one host and one path to restic, and
    each one's ``forget --host @local`` would forget the other's snapshots. ``@local``
    is the machine this runs on, so its own host name is the name.
    """
    return socket.gethostname() if inventory_name == "@local" else inventory_name


def offsite_target(
    settings: Settings, uid: int, gid: int, host: str, lock_dir: str, secrets: OffsiteSecrets
) -> OffsiteTarget:
    """The files for ``settings``' repository, owned by the project's owner, 0600 in 0700."""
    assert settings.backup_repository and settings.backup_password_file
    directory = Directory(settings.path(RESTIC_DIR), uid, gid, "700")
    files: list[File] = []
    paths: dict[str, str | None] = {}
    for name, file_name in SECRET_FILES:
        content = secrets.content(name)
        paths[name] = None
        if content is not None:
            paths[name] = path = f"{directory.path}/{file_name}"
            files.append(File(path, uid, gid, "600", content, secret=True))
    host = snapshot_host(host)
    values = config_values(settings, host, lock_dir, paths)
    config = File(
        settings.path(CONFIG), uid, gid, "600", json.dumps(values, indent=2) + "\n", secret=True
    )
    return OffsiteTarget(
        host=host,
        repository=settings.backup_repository,
        password_source=settings.backup_password_file,
        known_hosts_source=settings.backup_known_hosts,
        ssh_key_source=settings.backup_ssh_key,
        project_dir=settings.project_dir,
        directory=directory,
        secrets=tuple(files),
        config=config,
    )
