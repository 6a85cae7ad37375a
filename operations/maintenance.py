"""maintain.py --apply's repair on the host: files/chroma_maintain.py apply, one line if refused.

The program stops the stack, records what it will do before it moves anything,
repairs, starts the stack and compares what it serves with the inventory of the
stopped server; a run killed at any step is finished (or put back) by the next
one (docs/maintenance.md). Its failure is said as the host's one line
(operations/host_failure.refusing).
"""

from __future__ import annotations

from pyinfra.api import operation

from declaration.resources import Declared
from operations.data_safety import stack_options
from operations.host_failure import refusing
from plumbing.host_tools import safety_command, upload_tools


def repair_command(declared: Declared, what: str) -> str:
    """``chroma_maintain.py apply --what WHAT`` with the project's stack and server."""
    settings = declared.settings
    return safety_command(
        "apply", ("--what", what), *stack_options(settings.project_dir, settings.compose_project,
                                settings.wait_timeout),
        ("--data-dir", settings.data_dir), ("--version", settings.version),
        ("--persist-path", declared.line.persist_path), ("--url", declared.url),
        ("--token-file", declared.token_file), ("--tls-dir", declared.tls_dir),
        tool="chroma_maintain.py",
    )  # fmt: skip


def begin_command(project_dir: str, what: str) -> str:
    """``chroma_maintain.py begin --what WHAT``: the record written before the backup."""
    return safety_command("begin", ("--what", what), ("--project-dir", project_dir),
                          tool="chroma_maintain.py")  # fmt: skip


@operation(is_idempotent=False)
def begin(project_dir: str, what: str):
    """Record the repair as begun before the backup stops the stack.

    A local archive's backup leaves the stack stopped for the repair (one stop for
    both): a run killed between the two would leave Chroma stopped with no record, and
    the report would say nothing. With this record the report says the repair is
    unfinished, and the next --apply starts the stack.

    + project_dir: the project dir (its record's dir, and its tools' upload names)
    + what: "orphans" or "vacuum"
    """
    yield from upload_tools(project_dir)
    yield refusing(begin_command(project_dir, what))


@operation(is_idempotent=False)
def repair(project_dir: str, command: str):
    """Move the orphaned segment dirs aside, or vacuum chroma.sqlite3, verified.

    + project_dir: the project dir (its tools' upload names)
    + command: :func:`repair_command`'s
    """
    yield from upload_tools(project_dir)
    yield refusing(command, show_output=True)
