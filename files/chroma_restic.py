#!/usr/bin/env python3
"""How the host-side tools call restic: the repository's config, the argument list, the verdict.

Uploaded next to chroma_safety.py; standard library only. The deploy writes the
project's off-host backup config (``<project_dir>/.chroma-deploy/offsite.json``,
0600, JSON) and the secrets it names (0600 files in the project's secrets dir).
Every restic call is built here, so each one reads the repository and its
password from files (``--repository-file``, ``--password-file``): neither is ever
on a command line, in an environment, or in what this prints. An ``sftp:``
repository is reached with the shipped key and the pinned known_hosts file only
(``StrictHostKeyChecking=yes``, ``BatchMode=yes``: no question, no other key).

restic 0.14 (Debian bookworm) exits 1 for most failures; :func:`verdict` tells
them apart by restic's own words on stderr.

lock_timeout is chroma_lock_timeout, the seconds a backup waits for the project lock;
restic_lock_wait the seconds it waits for another restic's lock on the repository;
allow_empty_data_dir is chroma_allow_empty_data_dir (a backup of no records after one of
some is refused without it).
The config's keys (all written by the deploy, operations/offsite.py)::

    project_dir, project_name, compose_file, data_dir, host, wait_timeout,
    repository_file, password_file, ssh_key (or null), known_hosts (or null),
    keep: {daily, weekly, monthly}, check_subset, lock_dir, metrics_file,
    status_file, staging_dir, lock_timeout, restic_lock_wait, allow_empty_data_dir
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESTIC = "restic"
CACHE_DIR = "/var/cache/chroma-deploy/restic"
# sftp:user@host:/path, or sftp://user@host:port//path (restic's two spellings).
_SFTP_SHORT = re.compile(r"sftp:(?:(?P<user>[^@/:]+)@)?(?P<host>[^:/]+):(?P<path>.*)")
_SFTP_URL = re.compile(
    r"sftp://(?:(?P<user>[^@/:]+)@)?(?P<host>[^:/]+)(?::(?P<port>[0-9]+))?/(?P<path>.*)"
)


@dataclass(frozen=True)
class Offsite:
    """One project's off-host backup config, as the deploy wrote it."""

    values: dict[str, Any]

    @classmethod
    def load(cls, path: str) -> Offsite:
        return cls(json.loads(Path(path).read_text()))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def repository(self) -> str:
        return Path(self.values["repository_file"]).read_text().strip()

    @property
    def tags(self) -> list[str]:
        """The tags that scope this project's snapshots (and retention) in a shared repository."""
        return [f"project={self.values['project_name']}"]


def sftp_command(
    repository: str, ssh_key: str, known_hosts: str, log_file: str | None = None
) -> str | None:
    """restic's ``sftp.command`` for an sftp: repository: the shipped key, the pinned host key.

    restic splits the option's value into words as a shell would; shlex.join
    quotes each path, whatever it holds. ``log_file``: ssh writes its messages
    there (``-E``): restic relays ssh's stderr only while it runs, and may exit
    before "Host key verification failed" came through.
    """
    match = _SFTP_URL.fullmatch(repository) or _SFTP_SHORT.fullmatch(repository)
    if not match:
        return None
    parts = match.groupdict()
    destination = f"{parts['user']}@{parts['host']}" if parts.get("user") else parts["host"]
    port = ["-p", parts["port"]] if parts.get("port") else []
    return shlex.join([
        "ssh", "-i", ssh_key, "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
        *(["-E", log_file] if log_file else []), *port, destination, "-s", "sftp",
    ])  # fmt: skip


def restic_args(offsite: Offsite, *args: str, ssh_log: str | None = None) -> list[str]:
    """``restic --repository-file F --password-file F [-o sftp.command=...] ARGS...``."""
    argv = [
        RESTIC,
        "--repository-file", offsite["repository_file"],
        "--password-file", offsite["password_file"],
        # One cache for cron's runs and pyinfra's alike, whatever HOME each has.
        "--cache-dir", CACHE_DIR,
    ]  # fmt: skip
    if offsite.values.get("ssh_key") and offsite.values.get("known_hosts"):
        command = sftp_command(
            offsite.repository, offsite["ssh_key"], offsite["known_hosts"], ssh_log
        )
        if command:
            argv += ["-o", f"sftp.command={command}"]
    return [*argv, *args]


def run_restic(
    offsite: Offsite, *args: str, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run restic with the project's repository; stdout and stderr captured as text.

    What ssh said (an sftp: repository) comes first in ``stderr``, whole.
    """
    with tempfile.NamedTemporaryFile("r", prefix="chroma-restic-ssh-", suffix=".log") as log:
        result = subprocess.run(
            restic_args(offsite, *args, ssh_log=log.name),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        said = log.read()
    if said:
        result.stderr = said + (result.stderr or "")
    return result


# restic's words, in the order they are looked for (the first match names the fault).
VERDICTS = (
    ("wrong password", re.compile(r"wrong password or no key found")),
    ("locked", re.compile(r"repository is already locked|unable to create lock")),
    ("no repository", re.compile(r"unable to open config file|Is there a repository at")),
    ("host key", re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION")),
    ("unreachable", re.compile(
        r"ssh: connect to host|Connection refused|Connection timed out|No route to host|"
        r"Could not resolve hostname|subprocess ssh: .*exit|unable to start the sftp session|"
        r"Permission denied \(publickey")),
    ("disk full", re.compile(r"no space left on device", re.IGNORECASE)),
)  # fmt: skip


def verdict(result: subprocess.CompletedProcess[str]) -> str:
    """``ok``, or the fault restic's stderr names (see :data:`VERDICTS`), else ``failed``."""
    if result.returncode == 0:
        return "ok"
    for name, words in VERDICTS:
        if words.search(result.stderr or ""):
            return name
    return "failed"


def last_line(text: str) -> str:
    """restic's last non-empty line of output: what to quote in a one-line refusal."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# Where ssh's own words say more than the line the verdict matched first (its banner).
_REASONS = {
    "host key": re.compile(
        r"Host key for .* has changed|No \S+ host key is known|Host key verification failed"
    ),
}


def reason(result: subprocess.CompletedProcess[str]) -> str:
    """The line of stderr that names the fault :func:`verdict` found, else the last one.

    For an sftp: repository restic's own last line says only "unable to start the
    sftp session"; ssh's line before it says why (refused, host key, no route).
    """
    found = verdict(result)
    for name, words in VERDICTS:
        if name == found:
            words = _REASONS.get(name, words)
            for line in (result.stderr or "").splitlines():
                if words.search(line):
                    return line.strip().removeprefix("subprocess ssh: ")
    return last_line(result.stderr)


def main(argv: list[str]) -> int:
    """``chroma_restic.py verdict|init --config FILE``: the deploy's two calls (facts/offsite.py).

    ``verdict`` opens the repository without a lock (``cat config``: it reads,
    never writes) and prints ``{"verdict": ..., "reason": ...}``; ``init``
    creates it and prints the same, exiting 1 when restic failed.
    """
    parser = argparse.ArgumentParser(prog="chroma_restic.py")
    parser.add_argument("command", choices=("verdict", "init"))
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    offsite = Offsite.load(args.config)
    if args.command == "verdict":
        result = run_restic(offsite, "--no-lock", "cat", "config", timeout=300)
    else:
        result = run_restic(offsite, "init", timeout=300)
    print(json.dumps({"verdict": verdict(result), "reason": reason(result)}))
    return 0 if args.command == "verdict" or result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
