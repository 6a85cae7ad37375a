"""One run at a time per project on a host: deploy, backup, restore and the proof.

Cron, a rollout and a person overlap on real fleets; two runs that write the
same project dir at once leave half-written files. Every run that changes a
project takes its lock on the host while pyinfra prepares it, before any
operation, and keeps it for as long as the run lives (files/chroma-lock.sh:
flock held by a watcher of the run's own process). A killed run frees it at
once; nothing is left to clean. drift.py only reads and never waits.

A deploy reads the host's whole state in the lock's own command, right after
taking it (facts/batch.py): a no-op run costs the host one command, and what it
reads is what the host holds under the lock.

The lock is taken outside any operation on purpose: an operation that ran a
command would count as a change in every run, and a second run must change
nothing.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
from pathlib import Path

from pyinfra import host, state

from facts.batch import Batch
from plumbing import host_state
from plumbing.pyinfra_internals import run_outside_operation

LOCK_SCRIPT = Path(__file__).resolve().parent.parent / "files" / "chroma-lock.sh"
LOCK_ROOT = "/run/lock/chroma-deploy"


def lock_dir(project_dir: str) -> str:
    """Per project dir; under /run, so a reboot leaves no lock behind."""
    return f"{LOCK_ROOT}/{hashlib.sha256(project_dir.encode()).hexdigest()[:16]}"


def lock_command(project_dir: str, timeout: int, holder: str) -> str:
    script = LOCK_SCRIPT.read_text()
    return shlex.join(["sh", "-c", script, "chroma-lock", lock_dir(project_dir), str(timeout),
                       holder])  # fmt: skip


def take_project_lock(
    project_dir: str,
    timeout: int,
    command: str,
    reads: list[host_state.Read] | None = None,
) -> str | None:
    """Take this host's lock on ``project_dir``; None when held, else why not (one line).

    ``command`` names the run for whoever waits for it (deploy.py, backup.py, ...).
    ``reads``: facts read in the same command once the lock is held (facts/batch.py),
    for plumbing/host_state.py to answer from: the lock and the host's whole
    state in one round trip, and the state as it is under the lock.
    """
    holder = f"{command} run from {socket.gethostname()} (pid {os.getpid()})"
    batch = Batch()
    shell = lock_command(project_dir, timeout, holder)
    if reads:
        # Only once the lock is held: a run that waited reads what the other one left.
        shell = f"{shell} && {{ {batch.command(reads)}\n}}"
    ok, output = run_outside_operation(state, host, shell)
    if ok:
        if "waited: yes" in output.stdout_lines:
            # Another run held the project: what this run read before may have changed.
            host_state.forget()
        if reads:
            host_state.remember_output(reads, batch, output.stdout_lines)
        return None
    said = " ".join(line.strip() for line in output.stderr_lines if line.strip())
    return f"chroma_lock_timeout: {said or 'the project lock could not be taken'}"
