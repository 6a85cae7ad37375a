"""Fail one host with a message, while the other hosts of the run go on.

An exception raised inside an operation while it executes ends the whole run:
pyinfra 3 re-raises it from the host's greenlet, every other host stops where
it is, and gevent prints a traceback. A refusal that concerns one host (its
data dir and a named volume both hold data, its port is taken, a downgrade)
must instead fail that host alone, name it, and let a fleet converge the rest;
the run still exits 1 because a host failed.
"""

from __future__ import annotations

from typing import Any

from pyinfra import logger
from pyinfra.api import FunctionCommand, operation


def log_failure(state: Any, host: Any, message: str) -> bool:
    """Log ``message`` in red for ``host`` and return False: a FunctionCommand's failure."""
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def fail_host(message: str) -> FunctionCommand:
    """A command that fails this host, logging ``message`` after its ``[name]`` prefix.

    Nothing runs on the host; the run goes on for the others and exits 1.
    """
    return FunctionCommand(log_failure, (message,), {})


@operation(is_idempotent=False)
def refused(message: str):
    """Fail this host with ``message`` before anything on it changes (declare it first).

    For a refusal found while pyinfra prepares the host (its project locked by
    another run), which must not stop the other hosts of the run.

    + message: one line: the key, what is wrong, what to do
    """
    yield fail_host(message)
