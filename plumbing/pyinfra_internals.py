"""The only module that reaches into pyinfra's internals; checked against pyinfra 3.10.0.

pyinfra has no public way to ask "has an operation changed this host in this
run?" (the per-run fact cache, plumbing/host_state.py, must know), to run one
command outside an operation with the connector's arguments (the project lock,
plumbing/lock.py, runs before any operation), to list the hosts that failed
(operations/host_failure.py keeps pyinfra's own lines for the others), to
read an operation's output once it ended (plumbing/report.py), to know whether
pyinfra executes or only plans (operations/stack.py), or whether the CLI will ask
on stdin (plumbing/preflight.py refuses a run that cannot answer). These read
``State.ops``, ``OperationMeta``, ``pop_global_arguments``, ``State.is_executing``,
``Host.run_shell_command``, an operation's ``_hash``, ``State.check_for_changes`` and
``State.should_raise_failed_hosts`` (the last two by the real CLI in
tests/integration/test_bad_input.py, without -y under a closed stdin): a real run on @local
in tests/unit/test_pyinfra_internals.py uses each with the installed pyinfra,
so an upgrade that changes them fails there, not on a user's host. Re-check
them here when requirements.lock moves pyinfra.
"""

from __future__ import annotations

import sys
from typing import Any

from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.context import ctx_state

CHECKED_AGAINST = "3.10.0"


def changes_so_far(host: Any) -> int | None:
    """How many operations have changed ``host`` in this run; None outside a real run."""
    state = getattr(host, "state", None)
    if state is None or not hasattr(state, "ops"):
        return None  # a recorded host in the fixture tests: never cached
    return sum(
        1
        for data in state.ops.get(host, {}).values()
        if data.operation_meta.is_complete() and data.operation_meta.did_change()
    )


def run_outside_operation(state: Any, host: Any, shell: str) -> tuple[bool, Any]:
    """Run ``shell`` on ``host`` now, with the connector arguments of the run (``_sudo``...).

    Its input shows at -vv, as a fact's command does; its output is not printed.
    """
    global_kwargs, _ = pop_global_arguments(state, host, {})
    connector_kwargs = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
    return host.run_shell_command(
        shell,
        print_output=False,
        print_input=state.print_fact_input,
        **connector_kwargs,
    )


def failed_host_names() -> set[str] | None:
    """The names of the hosts that failed so far in this run; None outside a run."""
    if not ctx_state.isset():
        return None
    return {host.name for host in ctx_state.get().failed_hosts}


def is_executing(host: Any) -> bool | None:
    """Whether pyinfra runs the operations now (not only plans them); None outside a run."""
    state = getattr(host, "state", None)
    return None if state is None else bool(state.is_executing)


def asks_on_stdin() -> bool:
    """Whether pyinfra's CLI will read stdin (``input()``) in this run.

    It asks "Press enter to execute..." before it applies, and "continue?" after a host
    failed, unless ``-y`` (``State.check_for_changes`` off), ``--json`` (no
    ``should_raise_failed_hosts`` prompt set) or ``--dry`` (on the command line only). A
    state made outside the CLI (drift.py's, rollout.py's) checks for no changes: False.
    """
    if not ctx_state.isset():
        return False
    state = ctx_state.get()
    if not state.check_for_changes or state.should_raise_failed_hosts is None:
        return False
    return "--dry" not in sys.argv


def operation_hash(operation: Any) -> str:
    """The hash pyinfra keys an operation's per-host data by (what an @operation returns)."""
    return operation._hash


def succeeded_output(state: Any, host: Any, op_hash: str) -> list[str]:
    """The stdout lines ``host`` printed for the operation, if it ran there and succeeded."""
    try:
        meta = state.get_op_data_for_host(host, op_hash).operation_meta
    except KeyError:
        return []
    if not meta.is_complete() or not meta.did_succeed():
        return []
    return list(meta.stdout_lines)


def run_commands_outside_operation(state: Any, host: Any, commands: list[Any]) -> str | None:
    """Run shell strings and file uploads on ``host`` now, in order; None, or what failed.

    maintain.py's report puts chroma-deploy's host tools in place this way when they
    are missing: outside a pyinfra run, with the run's connector arguments.
    """
    global_kwargs, _ = pop_global_arguments(state, host, {})
    connector_kwargs = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
    for command in commands:
        if isinstance(command, str):
            ok, output = run_outside_operation(state, host, command)
            said = " ".join(line.strip() for line in output.stderr_lines if line.strip())
        else:
            ok, said = bool(command.execute(state, host, dict(connector_kwargs))), ""
        if not ok:
            return said or f"{command!r} failed"
    return None
