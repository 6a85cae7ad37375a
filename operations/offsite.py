"""The off-host backup repository (#23): restic on the host, its secrets, its config, init.

Two operations, in the order the deploy declares them (deploys/chroma.py):
:func:`restic_installed` (Debian's restic, through pyinfra's own apt operation)
and :func:`repository`: the secrets and ``offsite.json`` of
declaration/offsite.py, put in place only once restic on the host opened the
repository with them, or created it when there is none. A password that does
not open an existing repository (or a host key that is not the pinned one, or a
repository host that cannot be reached) fails the host with one line, and the
files that worked stay as they were: the new ones are written beside them
(``.candidate``), tried, and then moved over them or removed.

A run that finds every file as declared asks restic nothing: the files were
moved into place only after the repository opened with them.
"""

from __future__ import annotations

import json
import shlex
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FileUploadCommand, FunctionCommand, operation
from pyinfra.facts.server import Which
from pyinfra.operations import apt

from declaration.offsite import SECRET_FILES, OffsiteTarget
from declaration.resources import Directory, File, has_declared_type, stat_type
from facts.offsite import ResticRepository
from operations import project
from operations.host_failure import fail_host, log_refusal
from plumbing import host_state
from plumbing.host_state import Read
from plumbing.host_tools import TOOLS_DIR, upload_tools
from plumbing.pyinfra_internals import run_outside_operation

RESTIC_READ: Read = (Which, {"command": "restic"})
CANDIDATE = ".candidate"
# offsite.json's keys that name a secret file, and the file each names.
_SECRET_KEYS = ("repository_file", "password_file", "ssh_key", "known_hosts")


@operation()
def restic_installed():
    """restic on the host: Debian's package (pyinfra's apt operation) when it is missing.

    A host that has restic already (any version from 0.14 on reads
    ``--repository-file``) keeps it. A host without apt gets one line.
    """
    if host_state.read(Which, command="restic"):
        host.noop("restic is installed")
        return
    if not host.get_fact(Which, command="apt-get"):
        yield fail_host(
            "chroma_backup_repository: this host has no restic and no apt-get to install it "
            "with; install restic (0.14 or newer) on it, then run again"
        )
        return
    yield from apt.packages._inner(packages=["restic"], update=True)


def candidate_config(target: OffsiteTarget, changed: set[str]) -> str:
    """offsite.json as it would be, naming the ``.candidate`` of each secret not yet in place."""
    values = json.loads(target.config.content or "{}")
    for key in _SECRET_KEYS:
        if values[key] in changed:
            values[key] += CANDIDATE
    return json.dumps(values, indent=2) + "\n"


def _install_candidate(resource: File, content: str, path: str) -> list[Any]:
    """The file at ``path``, owner and mode set before a byte of it is written."""
    install = ["install", "-o", str(resource.uid), "-g", str(resource.gid), "-m", resource.mode,
               "/dev/null", path]  # fmt: skip
    return [shlex.join(install), FileUploadCommand(StringIO(content), path)]


def refusal_for(target: OffsiteTarget, verdict: str | None, reason: str) -> str:
    """The one line for a repository the candidate files do not open (see files/chroma_restic)."""
    unchanged = "the host's files were left as they were"
    if verdict == "wrong password":
        return (
            f"chroma_backup_password_file: the password in {target.password_source!r} does not "
            f"open the restic repository {target.repository} ({reason}); name the file that "
            f"holds this repository's password; {unchanged}"
        )
    if verdict == "host key":
        return (
            f"chroma_backup_known_hosts: the repository host's key is not the one pinned in "
            f"{target.known_hosts_source!r} ({reason}); check the key with the host's admin "
            f"(ssh-keygen -lf), and update the file only if the host was really re-keyed; "
            f"{unchanged}"
        )
    if verdict == "unreachable" and "Permission denied" in reason:
        return (
            f"chroma_backup_ssh_key: the repository host refuses the key in "
            f"{target.ssh_key_source!r} ({reason}); add its public key to the repository "
            f"user's authorized_keys there, then run again; {unchanged}"
        )
    if verdict == "unreachable":
        return (
            f"chroma_backup_repository: {target.repository} cannot be reached from this host "
            f"({reason}); check the address, the port and the network (is the repository host "
            f"up?), then run again; {unchanged}"
        )
    if verdict == "disk full":
        return (
            f"chroma_backup_repository: {target.repository} has no space left ({reason}); "
            f"free space there, then run again; {unchanged}"
        )
    return (
        f"chroma_backup_repository: restic on this host could not open {target.repository} "
        f"({reason or 'no message'}); check the repository, then run again; {unchanged}"
    )


def _initialise(state: Any, host: Any, command: str, cleanup: str, target: OffsiteTarget) -> bool:
    """Run ``chroma_restic.py init``; when restic cannot create the repository, one line."""
    ok, output = run_outside_operation(state, host, command)
    try:
        said = json.loads("".join(output.stdout_lines).strip() or "{}")
    except ValueError:
        said = {}
    if ok and said.get("verdict") == "ok":
        return True
    run_outside_operation(state, host, cleanup)
    message = refusal_for(target, said.get("verdict"), said.get("reason", ""))
    return log_refusal(state, host, message)


@operation()
def repository(target: OffsiteTarget, paths: tuple[Directory | File, ...], create: bool = True):
    """The repository's secrets and offsite.json on the host, once the repository opens with them.

    + target: declaration.offsite.OffsiteTarget (the files, where from, the repository)
    + paths: declaration.resources.Declared.paths (which holds ``target``'s): read as the
      deploy reads them all, in one command
    + create: ``restic init`` when there is no repository. False for a restore (a
      repository named with a typo must be refused, never created empty and restored from)

    Files whose content is as declared only get their owner and mode back. When any
    content differs or is missing, the new files go beside the old ones as
    ``.candidate``; restic on the host opens the repository with them
    (facts/offsite.py, without a lock), ``restic init`` creates it when there is
    none, and only then are they renamed over the old ones, offsite.json last. Any
    other verdict removes the candidates and fails the host with one line.
    """
    found = project.path_states(paths)
    commands: list[Any] = []
    changed: list[File] = []
    for resource in target.resources:
        state = found.get(resource.path)
        if state is not None and not has_declared_type(resource, state["type"]):
            yield fail_host(
                f"{resource.path} is a {state['type']}, not a {stat_type(resource)}; move it "
                "aside (chroma-deploy never deletes anything there), then run again"
            )
            return
        if isinstance(resource, File) and (state is None or state["sha256"] != resource.sha256):
            changed.append(resource)
        else:
            commands += project.resource_commands(resource, state)
    if not changed:
        if not commands:
            host.noop(
                f"restic repository {target.repository}: offsite.json and "
                f"{len(target.secrets)} secrets as declared (put in place once it opened with them)"
            )
            return
        yield from commands
        return

    yield from commands  # the dir, and owners and modes of the files that stay
    yield from upload_tools(target.project_dir)
    candidates = [f"{resource.path}{CANDIDATE}" for resource in changed]
    check = f"{target.directory.path}/check.json"
    for resource, path in zip(changed, candidates, strict=True):
        yield from _install_candidate(resource, resource.content or "", path)
    config = candidate_config(target, {resource.path for resource in changed})
    yield from _install_candidate(target.config, config, check)
    cleanup = shlex.join(["rm", "-f", *candidates, check])

    # Read once the candidates are on the host: pyinfra 3 runs an operation's commands as
    # its generator yields them (and a plan without -y stops at the first yield).
    opened = host.get_fact(ResticRepository, tools_dir=TOOLS_DIR, config=check)
    if opened["verdict"] == "no repository" and not create:
        yield cleanup
        yield fail_host(
            f"chroma_backup_repository: there is no restic repository at {target.repository} "
            "to restore from (a restore never creates one): nothing was changed; name the "
            "repository the backups went to"
        )
        return
    if opened["verdict"] == "no repository":
        init = shlex.join(["python3", f"{TOOLS_DIR}/chroma_restic.py", "init", "--config", check])
        yield FunctionCommand(_initialise, (init, cleanup, target), {})
    elif opened["verdict"] != "ok":
        yield cleanup
        yield fail_host(refusal_for(target, opened["verdict"], opened["reason"]))
        return
    # A key and known_hosts an sftp: repository shipped, which this one does not use: a
    # credential for another host is not left behind (credentials, never data).
    shipped = {resource.path for resource in target.secrets}
    unused = [path for _, name in SECRET_FILES
              if (path := f"{target.directory.path}/{name}") not in shipped]  # fmt: skip
    yield " && ".join(
        [*(shlex.join(["mv", "-f", path, resource.path])
           for resource, path in zip(changed, candidates, strict=True)),
         shlex.join(["rm", "-f", check, *unused])]
    )  # fmt: skip
