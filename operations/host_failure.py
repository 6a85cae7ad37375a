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

A host program's refusal (``files/chroma_safety.py space``, a restore whose
archive tar cannot unpack: "nothing was changed") is a command that fails, so
pyinfra printed its raw output and then its echo lines: the host never reached
the filter's list. :func:`refusing` runs such a command from a FunctionCommand
and says its last line as the host's refusal, once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import click
from pyinfra import logger
from pyinfra.api import FunctionCommand, operation

from plumbing.pyinfra_internals import failed_host_names, run_outside_operation

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


# docker compose's progress on stderr ("Container cdtest-chroma-1 Stopping"): not a reason.
_PROGRESS = re.compile(r"^\s*(Container|Network|Volume|Image) \S+ [A-Z][a-z]+")


def run_refusing(state: Any, host: Any, command: str, show_output: bool) -> bool:
    """Run ``command``; when it fails, its last line on stderr is this host's refusal.

    The first other line it printed there (tar's own reason, say) is kept in brackets;
    compose's progress lines are not reasons. ``show_output``: log its stdout lines
    under the host's prefix (they do not reach the operation's output otherwise).
    """
    ok, output = run_outside_operation(state, host, command)
    if ok:
        if show_output:
            for line in output.stdout_lines:
                if line.strip():
                    host.log(line)
        return True
    said = [line.strip() for line in output.stderr_lines if line.strip()]
    said = [line for line in said if not _PROGRESS.match(line)]
    if not said:
        return log_failure(state, host, "a host program failed with no message")
    message = said[-1] if len(said) == 1 else f"{said[-1]} ({said[0]})"
    return log_refusal(state, host, message)


def refusing(command: str, show_output: bool = False) -> FunctionCommand:
    """A host program's command whose failure is a refusal of one line (see run_refusing)."""
    return FunctionCommand(run_refusing, (command, show_output), {})


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
