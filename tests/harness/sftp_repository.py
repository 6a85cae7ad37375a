"""An sftp restic repository host for the off-host backup tests (#23): real sshd, pinned key.

One small container per test process, made from the fleet's "bare" image
(``ssh_hosts.build_images``: Debian with openssh-server, no Docker), started
with its own entrypoint (``sftp-entrypoint.sh``): a ``restic`` user whose only
way in is a key made for this process, a repository root ``/srv/restic`` it
owns, and a 16 MiB tmpfs ``/srv/full`` for the "repository's disk is full"
case. No Docker-in-Docker, no capabilities, no network of its own: it sits on
Docker's default bridge, so this machine (the ``@local`` deploy target) and the
cdfleet SSH hosts reach it at the same address, port 22.

The host key is pinned, never accepted blindly: the known_hosts file is made
with ssh-keyscan and cross-checked against the key file inside the container;
``wrong_known_hosts`` pins another key for the same address (the "host key does
not match" case).

Use it through the fixtures in tests/conftest.py: ``sftp_server`` (one per
session) and ``sftp_repository`` (a fresh repository path per test, removed after).
By hand: ``.venv/bin/python tests/harness/sftp_repository.py`` starts one and
prints the keys for ``--data`` (``--remove`` removes this machine's leftovers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HARNESS_DIR = Path(__file__).resolve().parent
# The repo root (files/) and tests/ (harness), when run by hand too.
sys.path[:0] = [str(HARNESS_DIR.parent.parent), str(HARNESS_DIR.parent)]

from files import chroma_restic  # noqa: E402
from harness import ssh_hosts  # noqa: E402

LABEL = "cdsftp.owner"  # the pid of the test process that made the container
USER = "restic"  # not "backup": Debian has that system user (nologin)
ROOT = "/srv/restic"
FULL_ROOT = "/srv/full"
FULL_SIZE = "16m"


@dataclass(frozen=True)
class SftpServer:
    """The running repository host and the files a deploy needs to reach it."""

    container: str
    address: str  # on Docker's default bridge; sshd on port 22
    key: Path  # the client key the restic user accepts (0600)
    known_hosts: Path  # the host's real key, scanned and cross-checked
    wrong_known_hosts: Path  # another key pinned for the same address
    state_dir: Path

    def exec(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the repository host, as its restic user."""
        return _run(["docker", "exec", "--user", USER, self.container, "sh", "-c", command], check)


@dataclass(frozen=True)
class SftpRepository:
    """One repository path on the server (not initialised: the deploy does that)."""

    server: SftpServer
    path: str  # absolute, inside the repository host

    @property
    def url(self) -> str:
        """restic's spelling: ``sftp:restic@ADDRESS:/srv/restic/NAME``."""
        return f"sftp:{USER}@{self.server.address}:{self.path}"

    @property
    def unreachable_url(self) -> str:
        """The same host and path on a port nothing listens on: connection refused."""
        return f"sftp://{USER}@{self.server.address}:2/{self.path}"

    def settings(self, password_file: Path | str, **extra: Any) -> dict[str, Any]:
        """The deploy's --data for this repository, with the pinned host key."""
        return {
            "chroma_backup_repository": self.url,
            "chroma_backup_password_file": str(password_file),
            "chroma_backup_ssh_key": str(self.server.key),
            "chroma_backup_known_hosts": str(self.server.known_hosts),
            **extra,
        }

    def restic(self, password_file: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run restic from this machine against the repository (the test's own reading).

        Built with files/chroma_restic.py (repository and password from files),
        through the same key and pinned host key as the hosts use.
        """
        with tempfile.TemporaryDirectory() as scratch:
            repository_file = Path(scratch) / "repository"
            repository_file.write_text(self.url + "\n")
            offsite = chroma_restic.Offsite({
                "repository_file": str(repository_file),
                "password_file": str(password_file),
                "ssh_key": str(self.server.key),
                "known_hosts": str(self.server.known_hosts),
            })  # fmt: skip
            return chroma_restic.run_restic(offsite, *args, timeout=120)

    def exists(self) -> bool:
        """Whether restic's config file is there (read inside the repository host)."""
        return self.server.exec(f"test -f {self.path}/config", check=False).returncode == 0

    def remove(self) -> None:
        """Remove this test's own throwaway repository."""
        self.server.exec(f"rm -rf {self.path}", check=False)


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:5])} ... exited {done.returncode}: {done.stderr}")
    return done


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def remove_leftovers(everything: bool = False) -> None:
    """Remove repository hosts whose test process is gone (or all of them: ``everything``)."""
    listed = _run(
        ["docker", "ps", "--all", "--filter", f"label={LABEL}",
         "--format", f'{{{{.Names}}}} {{{{.Label "{LABEL}"}}}}'],
        check=False,
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        name, _, owner = line.partition(" ")
        if everything or not _pid_alive(owner):
            _run(["docker", "rm", "--force", "--volumes", name], check=False)
    for state_dir in ssh_hosts.STATE_DIR.glob("sftp-*"):
        if everything or not _pid_alive(state_dir.name.removeprefix("sftp-")):
            shutil.rmtree(state_dir, ignore_errors=True)


def _host_key(container: str, address: str, deadline: float) -> str:
    """The known_hosts line for the host's ed25519 key, scanned and cross-checked."""
    while True:
        scan = _run(["ssh-keyscan", "-T", "2", "-t", "ed25519", address], check=False)
        lines = [line for line in scan.stdout.splitlines() if not line.startswith("#")]
        if lines:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{container}: sshd did not answer at {address}:22")
        time.sleep(0.2)
    entry, scanned = lines[0].split(" ", 1)
    inside = _run(["docker", "exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
    if inside.stdout.split()[:2] != scanned.split()[:2]:
        raise RuntimeError(f"{container}: the scanned host key is not the container's")
    return f"{entry} {scanned.strip()}\n"


def start_server() -> SftpServer:
    """Start this process's repository host and write its key and known_hosts files."""
    remove_leftovers()
    image = ssh_hosts.build_images()["bare"]
    state_dir = ssh_hosts.STATE_DIR / f"sftp-{os.getpid()}"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = state_dir / "id_ed25519"
    if not key.is_file():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cdsftp", "-f", str(key)])
    other = state_dir / "other_host_ed25519"
    if not other.is_file():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "other", "-f", str(other)])
    container = f"cdsftp-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    entrypoint = HARNESS_DIR / "sftp-entrypoint.sh"
    _run(
        ["docker", "run", "--detach", "--name", container, "--label", f"{LABEL}={os.getpid()}",
         "--network", "bridge",
         "--tmpfs", f"{FULL_ROOT}:rw,size={FULL_SIZE},mode=0755",
         "--volume", f"{entrypoint}:/usr/local/sbin/cdsftp-entrypoint:ro",
         "--env", f"CDSFTP_AUTHORIZED_KEY={key.with_suffix('.pub').read_text().strip()}",
         "--entrypoint", "/usr/local/sbin/cdsftp-entrypoint", image],
    )  # fmt: skip
    address = _run(
        ["docker", "inspect", "--format",
         "{{.NetworkSettings.Networks.bridge.IPAddress}}", container],
    ).stdout.strip()  # fmt: skip
    known_hosts = state_dir / "known_hosts"
    known_hosts.write_text(_host_key(container, address, time.monotonic() + 60))
    wrong = state_dir / "wrong_known_hosts"
    other_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    wrong.write_text(f"{address} {other_key}\n")
    return SftpServer(container, address, key, known_hosts, wrong, state_dir)


def remove_server(server: SftpServer) -> None:
    """Remove the repository host (its repositories are the tests' throwaways) and its files."""
    _run(["docker", "rm", "--force", "--volumes", server.container], check=False)
    for path in sorted(server.state_dir.iterdir(), reverse=True):
        path.unlink()
    server.state_dir.rmdir()


def new_repository(server: SftpServer, root: str = ROOT) -> SftpRepository:
    """A fresh repository path under ``root`` (``FULL_ROOT``: on the small tmpfs)."""
    return SftpRepository(server, f"{root}/repo-{uuid.uuid4().hex[:8]}")


def main(argv: list[str]) -> None:
    if "--remove" in argv:
        remove_leftovers(everything=True)
        return
    start = time.perf_counter()
    server = start_server()
    print(f"{server.container} ready in {time.perf_counter() - start:.1f} s (remove: --remove)")
    repository = new_repository(server)
    for key, value in repository.settings("/path/to/password").items():
        print(f"--data {key}={value}")


if __name__ == "__main__":
    main(sys.argv[1:])
