"""The host-side tools (files/chroma_inventory.py, files/chroma_safety.py) and their commands.

Both are uploaded into one directory named by their combined content hash, so
control machines with other versions never overwrite each other's, and every
command that calls them is built from an argument list (``shlex.join``): a
path with a space or a quote reaches the tool as one argument, never as shell.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pyinfra.api import FileUploadCommand

FILES = Path(__file__).resolve().parent.parent / "files"
TOOL_FILES = (
    "chroma_inventory.py",
    "chroma_safety.py",
    "chroma_restic.py",
    "chroma_offsite_restore.py",
    "chroma_offsite.py",
    "chroma_maintain.py",
)
TOOLS_DIR = (
    "/usr/local/lib/chroma-deploy/"
    + hashlib.sha256(b"".join((FILES / name).read_bytes() for name in TOOL_FILES)).hexdigest()[:12]
)


def upload_tools(project_dir: str) -> list:
    """Commands that put the tools on the host (python3 needed there: a clear error if not).

    An upload rewrites its destination in place, and every project on the host
    shares TOOLS_DIR: a backup of another project that ran a tool while this
    run rewrote it could read half a file. So each file goes to a name of this
    project's own (the project lock keeps two runs of one project apart) and is
    renamed into place: a tool is always the whole file.
    """
    key = hashlib.sha256(project_dir.encode()).hexdigest()[:12]
    parts = {name: f"{TOOLS_DIR}/.{name}.{key}.part" for name in TOOL_FILES}
    return [
        "command -v python3 >/dev/null || { echo 'python3 is needed on the host to verify "
        "Chroma data (apt-get install python3-minimal)' >&2; exit 1; }",
        shlex.join(["mkdir", "-p", TOOLS_DIR]),
        *(FileUploadCommand(str(FILES / name), part) for name, part in parts.items()),
        " && ".join(
            shlex.join(["mv", "-f", part, f"{TOOLS_DIR}/{name}"]) for name, part in parts.items()
        ),
    ]


def safety_command(
    subcommand: str, *options: tuple[str, object], tool: str = "chroma_safety.py"
) -> str:
    """``chroma_safety.py SUBCOMMAND --option value ...``; a None value leaves its option out.

    True gives the option alone (a flag), False leaves it out. ``tool``: another of
    TOOL_FILES that takes its arguments the same way.
    """
    args = ["python3", f"{TOOLS_DIR}/{tool}", subcommand]
    for option, value in options:
        if value is None or value is False:
            continue
        if value is True:
            args.append(option)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            args += [option, str(item)]
    return shlex.join(args)


STATE_DIR = ".chroma-deploy"  # in the project dir: pending, done and failed records


def pending_record(project_dir: str, kind: str = "migration") -> str:
    return f"{project_dir}/{STATE_DIR}/{kind}-pending.json"


def stage_command(
    project_dir: str, kind: str, subject: str, source: str, data_dir: str,
    uid: int, gid: int, mode: str, containers: list[str], compose_file: str,
    stop_grace: int | None = None,
) -> str:  # fmt: skip
    """Copy data the new stack would not see into the data dir (chroma_safety.py stage).

    ``stop_grace``: the seconds its ``docker stop`` of ``containers`` gives each after
    SIGTERM (chroma_stop_grace_seconds); they are not stopped through our compose file.
    """
    record = pending_record(project_dir, "rescue" if kind == "layer" else "migration")
    return safety_command(
        "stage", ("--record", record), ("--kind", kind), ("--subject", subject),
        ("--source", source), ("--data-dir", data_dir), ("--uid", uid), ("--gid", gid),
        ("--mode", mode), ("--container", containers), ("--compose-file", compose_file),
        ("--project-dir", project_dir), ("--stop-grace", stop_grace),
    )  # fmt: skip
