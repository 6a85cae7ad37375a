"""Fail one host with a message, while the other hosts of the run go on.

An exception raised inside an operation while it executes ends the whole run:
pyinfra 3 re-raises it from the host's greenlet, every other host stops where
it is, and gevent prints a traceback. A refusal that concerns one host (its
data dir and a named volume both hold data, its port is taken, a downgrade)
must instead fail that host alone, name it, and let a fleet converge the rest;
the run still exits 1 because a host failed.

The refusal is said once, as a refusal found before the run is
(plumbing/refusal.py): ``<host>: <key>: <what is wrong>; <what to do>``.
pyinfra follows a failed command with ``[host] Error: executed 0 commands``,
and, when no host is left, with ``--> pyinfra error: No hosts remaining!``:
neither says more than our line, so :class:`RefusalEchoFilter` drops them for
hosts that failed by a refusal. A host that failed for another reason (a
command that failed, a host that cannot be reached) keeps pyinfra's lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import click
from pyinfra import logger
from pyinfra.api import FunctionCommand, operation

from plumbing.pyinfra_internals import failed_host_names

# What pyinfra logs after an operation failed on a host (pyinfra/api/util.py,
# log_error_or_warning), and when the last host failed (state.fail_hosts, shown by
# pyinfra_cli's WrappedError). Matched on the text without its colours.
_FAILED_OPERATION = re.compile(r"\[(?P<host>[^\]]+)\]\s*Error: executed \d+ commands")
_NO_HOSTS_REMAINING = "--> pyinfra error: No hosts remaining!"


class RefusalEchoFilter(logging.Filter):
    """Drops pyinfra's echo of a refusal: its failure lines for hosts we refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused_hosts: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.refused_hosts:
            return True
        text = click.unstyle(record.getMessage()).strip()
        failed_operation = _FAILED_OPERATION.fullmatch(text)
        if failed_operation:
            return failed_operation["host"] not in self.refused_hosts
        if text == _NO_HOSTS_REMAINING:
            return not self._every_failed_host_was_refused()
        return True

    def _every_failed_host_was_refused(self) -> bool:
        failed = failed_host_names()
        return failed is not None and failed <= self.refused_hosts


refusal_echo_filter = RefusalEchoFilter()


def log_failure(state: Any, host: Any, message: str) -> bool:
    """Log ``message`` in red after ``[host]`` and return False: a FunctionCommand's failure.

    For an error (a command on the control machine failed): pyinfra's own lines follow.
    """
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def log_refusal(state: Any, host: Any, message: str) -> bool:
    """Log ``<host>: message`` in red, alone, and return False: a FunctionCommand's failure."""
    if refusal_echo_filter not in logger.filters:
        logger.addFilter(refusal_echo_filter)
    refusal_echo_filter.refused_hosts.add(host.name)
    logger.error(click.style(f"{host.name}: {message}", fg="red"))
    return False


def fail_host(message: str) -> FunctionCommand:
    """A command that fails this host, logging ``<host>: message``.

    ``message`` is one line: ``<key>: <what is wrong>; <what to do>``.
    Nothing runs on the host; the run goes on for the others and exits 1.
    """
    return FunctionCommand(log_refusal, (message,), {})


@operation(is_idempotent=False)
def refused(message: str):
    """Fail this host with ``message`` before anything on it changes (declare it first).

    For a refusal found while pyinfra prepares the host (its project locked by
    another run), which must not stop the other hosts of the run.

    + message: one line: the key, what is wrong, what to do
    """
    yield fail_host(message)
