"""Show what an action found at pyinfra's default verbosity.

pyinfra 3 prints a command's output only with ``-vv`` (or when it fails), so
the lines a user runs backup.py, prove.py or a migration for (where the backup
was written, what was pruned, the proof's pass, the verified migration) were
hidden behind ``-vvv``. :func:`show` marks an operation whose standard output
is its result: once the operation has run on every host, each line is logged
under the host's ``[name]`` prefix, like pyinfra's own ``Success`` lines.

Only operations whose stdout is lines they echo on purpose are marked, and
none of them echoes a secret; stderr (docker's progress) is never shown here.
"""

from __future__ import annotations

from typing import Any

from pyinfra import logger
from pyinfra.api import FunctionCommand
from pyinfra.api.state import BaseStateCallback

from plumbing.pyinfra_internals import operation_hash, succeeded_output

_SHOWN: set[str] = set()


class ShowResults(BaseStateCallback):
    """Log the stdout of the operations :func:`show` marked, per host, once they end."""

    @staticmethod
    def operation_end(state: Any, op_hash: Any) -> None:
        if op_hash not in _SHOWN or state.print_output:  # -vv prints it already
            return
        for host in state.inventory.iter_activated_hosts():
            lines = result_lines(state, host, op_hash)
            for line in lines:
                logger.info(f"{host.print_prefix}{line}")


def result_lines(state: Any, host: Any, op_hash: str) -> list[str]:
    """The stdout lines ``host`` printed for the operation, if it ran there and succeeded."""
    return [line for line in succeeded_output(state, host, op_hash) if line.strip()]


def show(operation: Any) -> Any:
    """Print ``operation``'s stdout at the default verbosity; returns the operation.

    ``operation`` is what calling an @operation returns (pyinfra's
    OperationMeta); the handler is added to the run's state once.
    """
    from pyinfra import state

    _SHOWN.add(operation_hash(operation))
    if not any(isinstance(handler, ShowResults) for handler in state.callback_handlers):
        state.add_callback_handler(ShowResults())
    return operation


def log_step(state: Any, host: Any, message: str) -> bool:
    """Log ``message`` under the host's prefix, at default verbosity; never fails."""
    host.log(message)
    return True


def step(message: str) -> FunctionCommand:
    """A command that says what the next, long command does, as it starts.

    pyinfra shows an operation's name when it starts and its output only with
    -vv, so a minutes-long build or wait would otherwise pass in silence. This
    runs on the control machine when the host reaches it (never while pyinfra
    only plans), and only in an operation that is changing something.
    """
    return FunctionCommand(log_step, (message,), {})
