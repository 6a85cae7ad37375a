"""A data dir's first schema, made before the stack's own server validates it (Chroma 1.x).

On 1.x the stack's server runs with ``CHROMA_SQLITEDB__MIGRATION_MODE=validate``
(declaration/render.py): an image changed by hand refuses to start on data it
would migrate one way, instead of migrating it. ``validate`` also refuses a data
dir with no schema yet (every migration is pending there; tried on 1.5.9). So
before ``up``, a data dir without one gets it from the same image in ``apply``
mode: files/chroma_safety.py init-schema starts it unpublished and stops it as
soon as it answers. Data that has a schema is never opened here: its migrations
are applied only by chroma-deploy's upgrade, after its backup and rehearsal.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.util import print_host_combined_output

from checks.compare import exposed_containers
from checks.empty_data import data_left_aside, database_lost, schema_less
from declaration.targets import CheckServer, DataTarget, StackTarget
from declaration.versions import spelled_levels
from facts.compose import ComposeStack, ContainerLayerData
from facts.datahomes import DataSchema
from facts.project import SafetyState
from facts.schema_guard import SchemaRefusal
from operations.host_failure import fail_host, log_refusal, refusing
from plumbing import host_state
from plumbing.host_tools import safety_command, upload_tools
from plumbing.pyinfra_internals import run_outside_operation


@operation()
def schema_in_place(
    stack: StackTarget, data: DataTarget, server: CheckServer, allow_empty: bool = False
):
    """The data dir holds Chroma's schema before the stack's validating server starts on it.

    A data dir with no ``chroma.sqlite3`` (a new stack, a data dir emptied), or one
    with no migration recorded in it, gets its schema from ``server`` (the declared
    image, ``apply``), started and stopped by files/chroma_safety.py init-schema. A
    running healthy server of the stack has its schema: a no-op run reads nothing more.

    + stack: the compose project, to see whether its chroma container serves the data
    + data: the declared data dir
    + server: the declared server as a check starts it (``apply``, no port published)
    + allow_empty: chroma_allow_empty_data_dir: a schema may be made where data was (segment
      dirs left, a copy moved aside); else that is the guard's refusal (checks/empty_data.py),
      here too, since a refused start leaves a schema-less file the guard counts as data
    """
    project_dir, data_dir = data.project_dir, data.name
    state = host_state.read(SafetyState, project_dir=project_dir, data_dir=data_dir)
    found = host_state.read(ComposeStack, **stack.read)
    ours = [c for c in found["containers"] if c["service"] == "chroma" and not c.get("oneoff")]
    if state["data_has_sqlite"]:
        if any(c["state"] == "running" and c["health"] == "healthy" for c in ours):
            host.noop(f"{data.path} holds the schema Chroma serves")
            return
        schema = host_state.read(DataSchema, data_dir=data.path)
        if not schema_less(schema):
            levels = spelled_levels(schema["levels"]) or f"not read: {schema['error']}"
            host.noop(f"{data.path} holds a database with a schema ({levels})")
            return
    else:
        exposed = exposed_containers(found, data.path, data.persist_path)
        if exposed and host_state.read(ContainerLayerData, containers=exposed):
            # stack_up copies it into the data dir before its `up` (the seed's mistake).
            host.noop(f"the data in a container's own layer is copied into {data.path} first")
            return
    lost = (
        None
        if allow_empty
        else (database_lost(state, data, False) or data_left_aside(state, data, False))
    )
    if lost:
        yield fail_host(lost)
        return
    # The stack's own server on that data dir (one that refused it restarts under its
    # policy; one whose data dir was moved away serves the old one): stopped, so that one
    # server opens the data dir. stack_up starts it again.
    stopped = [c["name"] for c in ours if c["state"] in ("running", "restarting")]
    if stopped:
        yield shlex.join(["docker", "stop", "--time", str(stack.stop_grace), *stopped])
    yield from upload_tools(project_dir)
    yield init_schema(data.path, server)


def init_schema(data_path: str, server: CheckServer, restored: bool = False) -> Any:
    """files/chroma_safety.py init-schema: ``server`` (``apply``) started on ``data_path`` and
    stopped once it answers; one line on a refusal. ``restored``: data a restore just switched
    in, whose schema it brings to the server's level too (data_safety.restore: the archive or
    snapshot is its backup, the data it replaced is kept aside)."""
    return refusing(
        safety_command(
            "init-schema", ("--data-dir", data_path), ("--image", server.image),
            ("--persist-path", server.persist_path), ("--uid", server.uid),
            ("--gid", server.gid), ("--timeout", server.timeout),
            ("--env", server.environment), ("--stop-grace", server.stop_grace),
            ("--restored", restored),
        ),
        show_output=True,
    )  # fmt: skip


def up_or_refused(command: str, container: str, image: str, data_path: str) -> FunctionCommand:
    """``command`` (stack_up's ``up --wait``); when it fails because the chroma container's
    schema guard refused the data, that is the host's one line (else compose's own output)."""
    return FunctionCommand(_run_up, (command, container, image, data_path), {})


def _run_up(
    state: Any, host: Any, command: str, container: str, image: str, data_path: str
) -> bool:
    ok, output = run_outside_operation(state, host, command)
    if ok:
        return True
    if not host.get_fact(SchemaRefusal, container=container)["refused"]:
        print_host_combined_output(host, output)  # as pyinfra shows a failed command
        return False
    return log_refusal(
        state, host,
        f"chroma_version: {image} refused to start on {data_path}: the data's schema lacks "
        "migrations it would apply (its server validates its schema), so the data is as it "
        "was; nothing was changed: deploy again, and chroma-deploy backs it up, rehearses and "
        "applies them",
    )  # fmt: skip
