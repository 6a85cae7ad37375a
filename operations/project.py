"""The project dir and what lives in it besides the compose file.

Owners are compared as numeric ids, never names: a uid with no account has
no name, and comparing names would report a change on every run.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from declaration.gitignore import problems, repaired
from declaration.resources import Directory, File, has_declared_type, stat_type
from facts.datadirs import DataDirs
from facts.project import ProjectFiles
from operations.host_failure import fail_host
from plumbing import host_state

# Linux caps one argument at 128 KiB, and the rewrite travels inside the one `sh -c`
# string pyinfra runs (quoted once more under sudo): a bigger .gitignore is refused.
ARGUMENT_MAX_BYTES = 120 * 1024

# Writes $2 to a new file with a unique name next to $1, gives it owner $3 and mode
# $4 (ids and octal, or --reference=$1), and renames it over $1. Any failure removes
# the temporary file and leaves $1 as it was; two runs at once never share a name.
# cat writes, not printf: dash's printf reports a full disk as "I/O error", cat as
# "No space left on device".
_REWRITE = (
    'tmp=$(mktemp "$1.chroma-deploy.XXXXXXXX") || exit 1; '
    'if printf \'%s\' "$2" | cat > "$tmp" && chown "$3" "$tmp" && chmod "$4" "$tmp" '
    '&& mv -f "$tmp" "$1"; then exit 0; fi; rm -f "$tmp"; exit 1'
)


def _owner_commands(resource: Directory | File, found: dict[str, Any]) -> Iterator[str]:
    """chown/chmod what differs on an existing path; recursive for a data dir.

    A data dir's contents are the container's: anything inside that its user does
    not own, or cannot read and write, is given back (chown -R, chmod -R u+rwX).
    The mode is given with two leading zeros: GNU chmod keeps a dir's setgid
    bit for ``chmod 750``, and clears it only for ``00750``. An ACL (which the
    mode does not show) is removed with setfacl.
    """
    owner = f"{resource.uid}:{resource.gid}"
    recursive = isinstance(resource, Directory) and resource.recursive_owner
    if (found["uid"], found["gid"]) != (resource.uid, resource.gid) or (
        recursive and found["foreign"]
    ):
        yield shlex.join(["chown", *(["-R"] if recursive else []), owner, resource.path])
    if recursive and found["foreign"]:
        yield shlex.join(["chmod", "-R", "u+rwX", resource.path])
    if found["mode"] != resource.mode:
        yield shlex.join(["chmod", f"00{resource.mode}", resource.path])
    if found["acl"]:
        yield shlex.join(["setfacl", "-b", resource.path])


def _directory_commands(resource: Directory, found: dict[str, Any] | None) -> Iterator[str]:
    if found is None:
        # A new dir inherits its parent's setgid bit, which install's -m leaves: cleared too.
        install = ["install", "-d", "-o", str(resource.uid), "-g", str(resource.gid),
                   "-m", resource.mode, resource.path]  # fmt: skip
        chmod = ["chmod", f"00{resource.mode}", resource.path]
        yield f"{shlex.join(install)} && {shlex.join(chmod)}"
    else:
        yield from _owner_commands(resource, found)
    if resource.gitkeep and (found is None or found["gitkeep"] is None):
        yield _install_empty(f"{resource.path}/.gitkeep", resource.uid, resource.gid, "644")


def _file_commands(resource: File, found: dict[str, Any] | None) -> Iterator[Any]:
    """Create, rewrite (content through a temporary file, renamed over) or re-own a file.

    A file without declared content is only created empty: a container writes it.
    """
    if found is not None and (resource.content is None or found["sha256"] == resource.sha256):
        yield from _owner_commands(resource, found)
        return
    if resource.content is None:
        yield _install_empty(resource.path, resource.uid, resource.gid, resource.mode)
        return
    # Created with the final owner and mode before any byte is written, so a secret is
    # never readable by others, not even for a moment. One name is enough: the project
    # lock (plumbing/lock.py) keeps a second run on this project out.
    temp = f"{resource.path}.chroma-deploy.tmp"
    yield _install_empty(temp, resource.uid, resource.gid, resource.mode)
    yield FileUploadCommand(StringIO(resource.content), temp)
    yield " && ".join(
        shlex.join(args)
        for args in (
            ["chmod", resource.mode, temp],
            ["chown", f"{resource.uid}:{resource.gid}", temp],
            ["mv", "-f", temp, resource.path],
        )
    )


def resource_commands(resource: Directory | File, found: dict[str, Any] | None) -> list[Any]:
    """What :func:`paths` yields for one dir or file (nothing when it is as declared)."""
    if isinstance(resource, Directory):
        return list(_directory_commands(resource, found))
    return list(_file_commands(resource, found))


def acl_refusal(path: str) -> str:
    """What to do about an ACL on a declared path that this host cannot remove."""
    return (
        f"{path} has an ACL (ls -l shows +), which may give others what its mode does not; "
        "the host has no setfacl to remove it: install the acl package, or remove the ACL "
        f"yourself (setfacl -b {shlex.quote(path)}), then run again"
    )


def link_refusal(path: str, link: str) -> str:
    """What to do about a symbolic link inside a data dir (DataDirs' ``link``)."""
    return (
        f"{path}/{link} is a symbolic link, which Chroma in its container cannot follow out of "
        f"{path}; put the file or dir it points to there in its place, then run again"
    )


def path_states_read(resources: tuple[Directory | File, ...]) -> tuple[type[DataDirs], dict]:
    """The fact read that tells how every declared path is: one command for all of them.

    Digests are read only for files whose content is declared (the token file),
    and owners inside only for the dirs a container writes (the data dirs).
    """
    digests = [r.path for r in resources if isinstance(r, File) and r.content is not None]
    contents = [r.path for r in resources if isinstance(r, Directory) and r.recursive_owner]
    return DataDirs, {
        "paths": [r.path for r in resources],
        "digests": digests,
        "contents": contents,
    }


def path_states(resources: tuple[Directory | File, ...]) -> dict[str, Any]:
    fact, kwargs = path_states_read(resources)
    return host_state.read(fact, **kwargs)


def services_fed_by_missing_files(resources: tuple[Directory | File, ...]) -> list[str]:
    """Services that bind-mount a declared file the host does not have now.

    A bind mount of a file holds the inode it found when the container started:
    once project.paths creates the file anew, such a container still writes to
    the deleted one (the 0.x log file) until it starts again (stack.stack_up).
    """
    found = path_states(resources)
    return sorted(
        {
            service
            for resource in resources
            if isinstance(resource, File) and found.get(resource.path) is None
            for service in resource.feeds
        }
    )


@operation()
def paths(resources: tuple[Directory | File, ...]):
    """Every declared dir and file with its owner, group, mode, ``.gitkeep`` and content.

    + resources: declaration.resources.Declared.paths, parents before what they hold

    Read in one command for all paths (digests only for files whose content is
    declared). A data dir with the wrong owner is chowned recursively: its
    contents are written by the container, which runs as that owner. A
    ``.gitkeep`` is only created, never rewritten, so its timestamp is not a
    change. Something else at a declared path is never removed: the host fails
    with what to move aside.
    """
    found = path_states(resources)
    commands: list[Any] = []
    for resource in resources:
        state = found[resource.path]
        wanted = stat_type(resource)
        if state is not None and not has_declared_type(resource, state["type"]):
            yield fail_host(
                f"{resource.path} is a {state['type']}, not a {wanted}; move it aside "
                "(chroma-deploy never deletes anything there), then run again"
            )
            return
        if state is not None and state["acl"] and not state["setfacl"]:
            yield fail_host(acl_refusal(resource.path))
            return
        if state is not None and state.get("link"):
            yield fail_host(link_refusal(resource.path, state["link"]))
            return
        if state is not None and state["gitkeep_kind"]:
            yield fail_host(
                f"{resource.path}/.gitkeep is a {state['gitkeep_kind']}, not a regular file; "
                "move it aside (chroma-deploy never deletes anything there), then run again"
            )
            return
        if isinstance(resource, Directory):
            commands += _directory_commands(resource, state)
        else:
            commands += _file_commands(resource, state)
    if not commands:
        host.noop(f"{len(resources)} dirs and files have their owners, modes and content")
        return
    yield from commands


def _install_empty(path: str, uid: int, gid: int, mode: str) -> str:
    return shlex.join(["install", "-o", str(uid), "-g", str(gid), "-m", mode, "/dev/null", path])


@operation()
def gitignore(project_dir: str, lines: list[str], uid: int, gid: int):
    """Keep our ``lines`` in the project's .gitignore, whole and in order, beside the user's.

    Present means a line of the file equals it exactly; in order means each
    ``<dir>/*`` comes before its ``!<dir>/.gitkeep``, as git needs (declaration.gitignore).
    When either fails, the block goes back in place as declared and the user's lines
    stay as they are. The file is rewritten through a temporary file with a unique
    name, so a full disk or a second run at the same time leaves it whole.
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    current = files["gitignore"]
    path = f"{project_dir}/.gitignore"
    if not problems(current, lines):
        host.noop(
            f"{path} has all {len(lines)} chroma-deploy lines, each <dir>/* before its "
            "!<dir>/.gitkeep"
        )
        return

    content = "\n".join(repaired(current, lines)) + "\n"
    if current is None:
        owner, mode = f"{uid}:{gid}", "644"
    else:
        owner = mode = f"--reference={path}"
    command = shlex.join(["sh", "-c", _REWRITE, "sh", path, content, owner, mode])
    if len(shlex.quote(shlex.quote(command)).encode()) > ARGUMENT_MAX_BYTES:
        yield fail_host(
            f"{path} is too big for chroma-deploy to rewrite in one command; put our lines "
            "in it by hand, in this order: " + " ".join(lines)
        )
        return
    yield command
