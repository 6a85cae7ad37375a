"""The project dir and what lives in it besides the compose file.

Owners are compared as numeric ids, never names: a uid with no account has
no name, and comparing names would report a change on every run.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import File

from facts.datadirs import DataDirs
from facts.project import ProjectFiles
from operations.host_failure import fail_host

GITIGNORE_HEADER = "# chroma-deploy: keep the data dirs, not their contents"


def gitignore_lines(dir_names: tuple[str, ...], secrets_dir: str | None = None) -> list[str]:
    """The lines chroma-deploy owns in the project's .gitignore."""
    lines = [GITIGNORE_HEADER]
    for name in dir_names:
        lines += [f"{name}/*", f"!{name}/.gitkeep"]
    if secrets_dir:
        lines.append(f"{secrets_dir}/")
    # restore.py moves data aside next to the data dir and keeps its markers here.
    lines += [f"/{dir_names[0]}.before-restore-*/", "/.chroma-deploy/"]
    return lines


def _owner_commands(path: str, uid: int, gid: int, mode: str, found: dict | None, recursive: bool):
    quoted = shlex.quote(path)
    if found is None:
        yield f"install -d -o {uid} -g {gid} -m {mode} {quoted}"
        return
    if (found["uid"], found["gid"]) != (uid, gid):
        flag = "-R " if recursive else ""
        yield f"chown {flag}{uid}:{gid} {quoted}"
    if found["mode"] != mode:
        yield f"chmod {mode} {quoted}"


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
                f"{path} is a {found[path]['type']}, not a directory: move it "
                "aside (chroma-deploy never deletes anything there), then run again"
            )
            return
    commands = list(_owner_commands(project_dir, uid, gid, dir_mode, found[project_dir], False))
    for path in paths[1:]:
        state = found[path]
        commands += _owner_commands(path, uid, gid, data_dir_mode, state, True)
        if gitkeep and (state is None or state["gitkeep"] is None):
            commands.append(
                f"install -o {uid} -g {gid} -m 644 /dev/null {shlex.quote(path)}/.gitkeep"
            )
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
    yield f"install -o {uid} -g {gid} -m {mode} /dev/null {shlex.quote(path)}"


@operation()
def gitignore(project_dir: str, lines: list[str], uid: int, gid: int):
    """Add ``lines`` to the project's .gitignore without touching the user's own lines.

    A line counts as present only when a line of the file equals it exactly.
    The new file is written next to the old one and moved over it, so a full
    disk leaves the old file whole.
    """
    files = host.get_fact(ProjectFiles, project_dir=project_dir)
    current = files["gitignore"]
    existing = set(current or [])
    missing = [line for line in lines if line not in existing]
    if not missing:
        host.noop(f"{project_dir}/.gitignore has all {len(lines)} chroma-deploy lines")
        return

    before = "\n".join(current or [])
    if current and files["gitignore_ends_with_newline"]:
        before += "\n"
    elif current:
        before += "\n"  # the user's last line had no newline: end it first
    content = before + "\n".join(missing) + "\n"

    path = f"{project_dir}/.gitignore"
    temp = f"{path}.chroma-deploy.tmp"
    yield FileUploadCommand(StringIO(content), temp)
    if current is None:
        yield f"chown {uid}:{gid} {shlex.quote(temp)} && chmod 644 {shlex.quote(temp)}"
    else:
        yield (
            f"chown --reference={shlex.quote(path)} {shlex.quote(temp)}"
            f" && chmod --reference={shlex.quote(path)} {shlex.quote(temp)}"
        )
    yield f"mv -f {shlex.quote(temp)} {shlex.quote(path)}"
