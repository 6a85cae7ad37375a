"""A refusal during the run is said once; pyinfra's lines for other failures stay.

pyinfra's own logger, state and failure logging (``log_error_or_warning``,
``State.fail_hosts``) run here as they do under the CLI; only the hosts are
not connected. The whole run, through the CLI, is in
tests/integration/test_bad_input.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import click
import pytest
from pyinfra import logger
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.util import log_error_or_warning
from pyinfra.context import ctx_state

from operations.host_failure import fail_host, refusal_echo_filter

NO_HOSTS_REMAINING = f"--> {click.style('pyinfra error', 'red', bold=True)}: No hosts remaining!"


class Shown(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(click.unstyle(record.getMessage()))


@pytest.fixture
def run() -> Iterator[tuple[State, Shown]]:
    """Two hosts in a run under way, and what the pyinfra logger shows."""
    inventory = Inventory((["db1", "db2"], {}))
    state = State(inventory, Config())
    state.active_hosts = state.activated_hosts = set(inventory)
    shown = Shown()
    logger.addHandler(shown)
    try:
        with ctx_state.use(state):
            yield state, shown
    finally:
        logger.removeHandler(shown)
        logger.removeFilter(refusal_echo_filter)
        refusal_echo_filter.refused_hosts.clear()


def fail(state: State, host_name: str, refused: bool) -> None:
    """What pyinfra does when a host's operation fails: by our refusal, or a failed command."""
    host = state.inventory.get_host(host_name)
    if refused:
        command = fail_host("chroma_version: 0.6.3 is older than the 1.5.9 deployed; keep 1.5.9")
        assert command.execute(state, host, {}) is False
    log_error_or_warning(host, False, "executed 0 commands" if refused else "executed 1 commands")
    try:
        state.fail_hosts({host})
    except PyinfraError as error:
        assert str(error) == "No hosts remaining!"
        logger.warning(NO_HOSTS_REMAINING)  # as pyinfra_cli shows it


def test_a_refusal_is_one_line_naming_the_host_and_the_other_host_goes_on(run):
    state, shown = run
    fail(state, "db1", refused=True)
    assert shown.lines == [
        "db1: chroma_version: 0.6.3 is older than the 1.5.9 deployed; keep 1.5.9"
    ]
    assert state.active_hosts == {state.inventory.get_host("db2")}


def test_when_every_host_was_refused_no_hosts_remaining_is_not_said(run):
    state, shown = run
    fail(state, "db1", refused=True)
    fail(state, "db2", refused=True)
    assert [line.split(":")[0] for line in shown.lines] == ["db1", "db2"]


def test_a_failed_command_keeps_pyinfras_lines_beside_a_refusal(run):
    state, shown = run
    fail(state, "db1", refused=True)
    fail(state, "db2", refused=False)
    assert shown.lines[1:] == [
        "[db2] Error: executed 1 commands",
        "--> pyinfra error: No hosts remaining!",
    ]


def test_without_a_refusal_pyinfras_lines_are_left_alone(run):
    state, shown = run
    fail(state, "db1", refused=False)
    fail(state, "db2", refused=False)
    assert shown.lines == [
        "[db1] Error: executed 1 commands",
        "[db2] Error: executed 1 commands",
        "--> pyinfra error: No hosts remaining!",
    ]
