"""plumbing.host_state: one reading per run, read again as soon as the host changed.

Through its public functions only, in a real pyinfra run on @local (as
tests/unit/test_pyinfra_internals.py runs one): a real State, real operations that
change the host or not, and a fact whose command appends the shell's pid to a log
on the host, so the log tells how often, and in how many commands, the host was
really read.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api import FactBase, State
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host
from pyinfra.operations import server

from facts.batch import Batch
from plumbing import host_state


class Reads(FactBase[int]):
    """How often the host has been read through ``log``: each reading adds its shell's pid.

    Inside a batch every part runs in a subshell of the batch's one shell, whose
    ``$$`` they share: one pid per command that read the host.
    """

    def command(self, log: str) -> str:
        return f"echo $$ >> {log}; wc -l < {log}"

    def process(self, output: list[str]) -> int:
        return int(output[0])


class FailsFirst(FactBase[int]):
    """Like Reads, but its first reading fails (the command exits 1)."""

    def command(self, log: str) -> str:
        first = f"[ -e {log}.once ] || {{ touch {log}.once; exit 1; }}"
        return f"echo $$ >> {log}; {first}; wc -l < {log}"

    def process(self, output: list[str]) -> int:
        return int(output[0])


def commands_that_read(log: Path) -> list[str]:
    """The pids of the shells that read the host through ``log``, in order."""
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def local_run(local_pyinfra):
    """A real pyinfra State on @local, with @local as the current host."""
    state, host = local_pyinfra
    with ctx_host.use(host):
        yield state
        host_state.forget()


def run(state: State, changed: bool) -> None:
    """One operation on the host, which changes it or not (pyinfra runs a State's ops once)."""
    add_op(state, server.shell, commands=["true"], _if=lambda: changed)
    run_ops(state)


def test_the_prefetched_reading_answers_while_nothing_changed(local_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    host_state.prefetch([(Reads, {"log": str(a)}), (Reads, {"log": str(b)})])
    run(local_run, changed=False)
    assert host_state.read(Reads, log=str(a)) == 1
    assert host_state.read(Reads, log=str(b)) == 1
    assert len(commands_that_read(a)) == 1
    assert commands_that_read(a) == commands_that_read(b), "one command read both"


def test_after_a_change_the_host_is_read_again(local_run, tmp_path):
    log = str(tmp_path / "log")
    host_state.prefetch([(Reads, {"log": log})])
    run(local_run, changed=True)
    assert host_state.read(Reads, log=log) == 2
    assert host_state.read(Reads, log=log) == 2  # still true: nothing changed since
    assert len(commands_that_read(tmp_path / "log")) == 2


def test_other_arguments_are_another_reading(local_run, tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    host_state.prefetch([(Reads, {"log": str(here)})])
    assert host_state.read(Reads, log=str(elsewhere)) == 1
    assert host_state.read(Reads, log=str(here)) == 1
    assert len(commands_that_read(here)) == 1
    assert commands_that_read(here) != commands_that_read(elsewhere)


def test_forget_drops_the_reading_after_waiting_for_another_run(local_run, tmp_path):
    log = str(tmp_path / "log")
    host_state.prefetch([(Reads, {"log": log})])
    host_state.forget()
    assert host_state.read(Reads, log=log) == 2


def test_a_part_the_batch_could_not_read_is_read_alone(local_run, tmp_path):
    log = tmp_path / "log"
    host_state.prefetch([(FailsFirst, {"log": str(log)})])
    assert len(commands_that_read(log)) == 1  # the batch ran it, and it failed
    assert host_state.read(FailsFirst, log=str(log)) == 2
    assert len(set(commands_that_read(log))) == 2, "read again in a command of its own"


def test_a_recorded_fixture_host_is_never_cached():
    """A host outside a run (tests/unit/test_operation_fixtures.py's) is asked every time."""
    asked: list[Any] = []
    host = SimpleNamespace(name="fixture-host", get_fact=lambda *a, **k: asked.append(a) or 7)
    with ctx_host.use(host):
        assert host_state.read(Reads, log="/x") == 7
        assert host_state.read(Reads, log="/x") == 7
    assert len(asked) == 2


def test_a_batch_run_after_the_lock_answers_like_a_prefetch(local_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    reads = [(Reads, {"log": str(a)}), (Reads, {"log": str(b)})]
    batch = Batch()
    shell = batch.command(reads)
    printed = subprocess.run(["sh", "-c", f"echo 'locked: x'; echo 'waited: no'; {shell}"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    host_state.remember_output(reads, batch, printed.splitlines())
    assert host_state.read(Reads, log=str(a)) == 1
    assert host_state.read(Reads, log=str(b)) == 1
    assert len(commands_that_read(a)) == len(commands_that_read(b)) == 1


def test_a_batch_cut_short_after_the_lock_leaves_each_fact_to_be_read_alone(local_run, tmp_path):
    log = str(tmp_path / "log")
    reads = [(Reads, {"log": log}), (Reads, {"log": f"{log}.other"})]
    batch = Batch()
    batch.command(reads)
    cut_short = ["locked: x", "waited: no", "@@batch-part 0", "7", "@@batch-status 0",
                 "@@batch-part 1", "7"]  # fmt: skip
    host_state.remember_output(reads, batch, cut_short)
    assert host_state.read(Reads, log=log) == 1, "read alone, not the cut-short 7"
    assert len(commands_that_read(tmp_path / "log")) == 1
