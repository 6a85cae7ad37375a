"""The project dir and what lives in it besides the compose file.

Owners are compared as numeric ids, never names: a uid with no account has
no name, and comparing names would report a change on every run.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import File

from declaration.gitignore import problems, repaired
from facts.datadirs import DataDirs
from facts.project import ProjectFiles
from operations.host_failure import fail_host

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


def _owner_commands(path: str, uid: int, gid: int, mode: str, found: dict | None, recursive: bool):
    if found is None:
        yield shlex.join(["install", "-d", "-o", str(uid), "-g", str(gid), "-m", mode, path])
        return
    if (found["uid"], found["gid"]) != (uid, gid):
        yield shlex.join(["chown", *(["-R"] if recursive else []), f"{uid}:{gid}", path])
    if found["mode"] != mode:
        yield shlex.join(["chmod", mode, path])


@operation()
def directories(
    project_dir: str,
    data_dirs: tuple[str, ...],
    uid: int,
    gid: int,
    dir_mode: str,
    data_dir_mode: str,
    gitkeep: bool = True,
):
    """The project dir and its data dirs, each with an empty ``.gitkeep``.

    + project_dir: absolute path of the project dir
    + data_dirs: names of the data dirs inside it
    + uid, gid: numeric owner and group
    + dir_mode, data_dir_mode: octal modes such as "750"
    + gitkeep: create an empty ``.gitkeep`` in each data dir

    A data dir with the wrong owner is chowned recursively: its contents are
    written by the container, which runs as that owner. A ``.gitkeep`` is only
    created, never rewritten, so its timestamp is not a change.
    """
    paths = [project_dir] + [f"{project_dir}/{name}" for name in data_dirs]
    found = host.get_fact(DataDirs, paths=paths)
    for path in paths:
        if found[path] is not None and found[path]["type"] != "directory":
            yield fail_host(
                f"{path} is a {found[path]['type']}, not a directory; move it "
                "aside (chroma-deploy never deletes anything there), then run again"
            )
            return
    commands = list(_owner_commands(project_dir, uid, gid, dir_mode, found[project_dir], False))
    for path in paths[1:]:
        state = found[path]
        commands += _owner_commands(path, uid, gid, data_dir_mode, state, True)
        if gitkeep and (state is None or state["gitkeep"] is None):
            commands.append(_install_empty(f"{path}/.gitkeep", uid, gid, "644"))
    if not commands:
        host.noop(
            f"{project_dir} and {', '.join(data_dirs)} have owner {uid}:{gid} and their modes"
        )
        return
    yield from commands


@operation()
def empty_file(path: str, uid: int, gid: int, mode: str = "640"):
    """A file that must exist before a container mounts it (a 0.x server's chroma.log).

    Created empty when missing; an existing file is left exactly as it is.
    """
    if host.get_fact(File, path=path):
        host.noop(f"{path} exists")
        return
    yield _install_empty(path, uid, gid, mode)


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
    files = host.get_fact(ProjectFiles, project_dir=project_dir)
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
