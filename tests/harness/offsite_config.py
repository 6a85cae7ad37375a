"""A project's off-host backup config and secrets, written as the deploy will write them.

Until operations/offsite.py ships them, the tests of files/chroma_offsite.py
write ``<project_dir>/.chroma-deploy/offsite.json`` and the 0600 secret files
with this one function (the keys of files/chroma_restic.py's docstring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plumbing.lock import lock_dir  # noqa: E402


def write_offsite(
    project_dir: Path,
    *,
    project_name: str,
    host: str,
    repository: str,
    password: str,
    data_dir: str = "chroma_data",
    keep: dict[str, int] | None = None,
    metrics_file: Path | None = None,
    wait_timeout: int = 60,
    lock_timeout: int = 300,
    restic_lock_wait: int = 300,
    check_subset: str = "5%",
    allow_empty_data_dir: bool = False,
) -> Path:
    """Write the secrets (0600, in a 0700 dir) and offsite.json (0600); return its path."""
    secrets = project_dir / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    for name, text in (("restic-repository", repository), ("restic-password", password)):
        path = secrets / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
    state = project_dir / ".chroma-deploy"
    state.mkdir(exist_ok=True)
    config = {
        "project_dir": str(project_dir),
        "project_name": project_name,
        "compose_file": str(project_dir / "docker-compose.yml"),
        "data_dir": data_dir,
        "host": host,
        "wait_timeout": wait_timeout,
        "lock_timeout": lock_timeout,
        "restic_lock_wait": restic_lock_wait,
        "repository_file": str(secrets / "restic-repository"),
        "password_file": str(secrets / "restic-password"),
        "ssh_key": None,
        "known_hosts": None,
        "keep": {"daily": 0, "weekly": 0, "monthly": 0, **(keep or {})},
        "check_subset": check_subset,
        "lock_dir": lock_dir(str(project_dir)),
        "metrics_file": str(
            metrics_file or f"/var/lib/chroma-deploy/metrics/{project_name}-backup.prom"
        ),
        "status_file": str(state / "offsite-status.json"),
        "staging_dir": str(state / "offsite-staging"),
        "allow_empty_data_dir": allow_empty_data_dir,
    }
    path = state / "offsite.json"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle, indent=1)
    return path


def init_repository(repository: Path, password: str) -> None:
    """A local restic repository, as the deploy initialises a missing one."""
    secret = repository.with_name(f".{repository.name}.password")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    subprocess.run(
        ["restic", "--repo", str(repository), "--password-file", str(secret), "init", "--quiet"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    secret.unlink()


def restic_on(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """restic on the config's repository, as the host tools call it (files/chroma_restic.py)."""
    sys.path.insert(0, str(ROOT / "files"))
    from chroma_restic import Offsite, run_restic

    return run_restic(Offsite.load(str(config)), *args)
