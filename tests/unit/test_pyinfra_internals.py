"""plumbing/pyinfra_internals.py against the installed pyinfra, in a real run on @local.

Each function reads something pyinfra does not promise to keep; a pyinfra
upgrade that moves it fails here, with the name of the function to re-check.
"""

from __future__ import annotations

import importlib.metadata

import pytest
from pyinfra.api import State
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_state
from pyinfra.operations import python, server

from plumbing import pyinfra_internals


@pytest.fixture
def local_run(local_pyinfra):
    return local_pyinfra


def test_the_installed_pyinfra_is_the_one_checked():
    """A moved pin re-checks this module: update CHECKED_AGAINST once the tests below pass."""
    assert importlib.metadata.version("pyinfra") == pyinfra_internals.CHECKED_AGAINST


def test_changes_so_far_counts_the_operations_that_changed_the_host(local_run):
    state, host = local_run
    assert pyinfra_internals.changes_so_far(host) == 0
    changing = add_op(state, server.shell, commands=["echo changed"])[host]
    add_op(state, server.shell, commands=["echo also"], _if=lambda: False)
    run_ops(state)
    assert pyinfra_internals.changes_so_far(host) == 1
    assert pyinfra_internals.succeeded_output(
        state, host, pyinfra_internals.operation_hash(changing)
    ) == ["changed"]
    assert pyinfra_internals.succeeded_output(state, host, "no such operation") == []
    assert pyinfra_internals.failed_host_names() == set()


def test_a_recorded_host_outside_a_run_is_never_counted():
    assert pyinfra_internals.changes_so_far(object()) is None


def test_run_outside_operation_runs_with_the_connector_arguments(local_run):
    state, host = local_run
    ok, output = pyinfra_internals.run_outside_operation(state, host, "echo out; echo err >&2")
    assert ok
    assert output.stdout_lines == ["out"]
    assert output.stderr_lines == ["err"]
    failed, _ = pyinfra_internals.run_outside_operation(state, host, "exit 3")
    assert not failed


def test_a_failed_host_is_listed(local_run):
    state, _ = local_run
    add_op(state, server.shell, commands=["exit 4"])
    with pytest.raises(Exception):  # noqa: B017 (pyinfra stops: no hosts remaining)
        run_ops(state)
    assert pyinfra_internals.failed_host_names() == {"@local"}


def test_is_executing_tells_the_plan_from_the_run(local_run):
    state, host = local_run
    seen: list[bool | None] = []
    add_op(state, python.call, function=lambda: seen.append(pyinfra_internals.is_executing(host)))
    assert pyinfra_internals.is_executing(host) is False
    run_ops(state)
    assert seen == [True]
    assert pyinfra_internals.is_executing(object()) is None


def test_asks_on_stdin_reads_the_state_the_cli_sets(monkeypatch):
    """-y: the state checks for no changes; --json: no failure prompt set; --dry: argv."""
    previous = ctx_state.get() if ctx_state.isset() else None
    try:
        state = State(check_for_changes=True)
        ctx_state.set(state)
        monkeypatch.setattr("sys.argv", ["pyinfra", "@local", "deploy.py"])
        assert pyinfra_internals.asks_on_stdin() is False  # --json: no prompt set
        state.should_raise_failed_hosts = lambda _state: True
        assert pyinfra_internals.asks_on_stdin() is True  # neither -y nor --json
        monkeypatch.setattr("sys.argv", ["pyinfra", "--dry", "@local", "deploy.py"])
        assert pyinfra_internals.asks_on_stdin() is False
        ctx_state.set(State(check_for_changes=False))  # -y, or drift.py's own state
        assert pyinfra_internals.asks_on_stdin() is False
    finally:
        if previous is not None:
            ctx_state.set(previous)
