"""plumbing.host_state: one reading per run, read again as soon as the host changed.

Uses pyinfra's own OperationMeta for "an operation changed the host", and a host
that counts the facts it is asked for.
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host

from facts.batch import Batch
from facts.datadirs import DataDirs
from facts.project import ProjectFiles
from plumbing import host_state


class CountingHost:
    """Answers every fact with a fresh value and counts what it was asked."""

    name = "counting-host"

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.state = SimpleNamespace(ops={self: {}})

    def get_fact(self, fact_cls: type, **kwargs: Any) -> Any:
        self.asked.append(fact_cls.__name__)
        if fact_cls is Batch:
            return [
                {"read": True, "value": f"batched {part.__name__}"} for part, _ in kwargs["parts"]
            ]
        return f"read {fact_cls.__name__} #{len(self.asked)}"

    def operation_done(self, changed: bool) -> None:
        meta = OperationMeta(f"op{len(self.state.ops[self])}", changed)
        meta.set_complete(True, ["a command"] if changed else [], CommandOutput([]))
        self.state.ops[self][meta._hash] = SimpleNamespace(operation_meta=meta)


@pytest.fixture
def counting_host():
    host = CountingHost()
    with ctx_host.use(host):
        yield host
        host_state.forget()


def test_the_prefetched_reading_answers_while_nothing_changed(counting_host):
    host_state.prefetch([(DataDirs, {"paths": ["/p"]}), (ProjectFiles, {"project_dir": "/p"})])
    counting_host.operation_done(changed=False)
    assert host_state.read(DataDirs, paths=["/p"]) == "batched DataDirs"
    assert host_state.read(ProjectFiles, project_dir="/p") == "batched ProjectFiles"
    assert counting_host.asked == ["Batch"]


def test_after_a_change_the_host_is_read_again(counting_host):
    host_state.prefetch([(DataDirs, {"paths": ["/p"]})])
    counting_host.operation_done(changed=True)
    assert host_state.read(DataDirs, paths=["/p"]) == "read DataDirs #2"
    assert host_state.read(DataDirs, paths=["/p"]) == "read DataDirs #2"  # still true
    counting_host.operation_done(changed=True)
    assert host_state.read(DataDirs, paths=["/p"]) == "read DataDirs #3"


def test_other_arguments_are_another_reading(counting_host):
    host_state.prefetch([(DataDirs, {"paths": ["/p"]})])
    assert host_state.read(DataDirs, paths=["/elsewhere"]) == "read DataDirs #2"


def test_forget_drops_the_reading_after_waiting_for_another_run(counting_host):
    host_state.prefetch([(DataDirs, {"paths": ["/p"]})])
    host_state.forget()
    assert host_state.read(DataDirs, paths=["/p"]) == "read DataDirs #2"


def test_a_part_the_batch_could_not_read_is_read_alone(counting_host, monkeypatch):
    monkeypatch.setattr(
        counting_host, "get_fact",
        lambda fact_cls, **kwargs: [{"read": False, "value": None}] if fact_cls is Batch
        else f"alone {fact_cls.__name__}",
    )  # fmt: skip
    host_state.prefetch([(DataDirs, {"paths": ["/p"]})])
    assert host_state.read(DataDirs, paths=["/p"]) == "alone DataDirs"


def test_a_recorded_fixture_host_is_never_cached():
    host = SimpleNamespace(name="fixture-host", get_fact=lambda fact_cls, **kwargs: object())
    with ctx_host.use(host):
        assert host_state.read(DataDirs, paths=["/p"]) is not host_state.read(
            DataDirs, paths=["/p"]
        )
    assert host_state._read == {}


class Echoed(FactBase[str]):
    """A fact whose value is the lines its command printed, joined."""

    def command(self, word: str) -> str:
        return f"echo {word}"

    def process(self, output: list[str]) -> str:
        return " ".join(output)


def test_a_batch_run_after_the_lock_answers_like_a_prefetch(counting_host):
    reads = [(Echoed, {"word": "a"}), (Echoed, {"word": "b"})]
    batch = Batch()
    shell = batch.command(reads)
    printed = subprocess.run(["sh", "-c", f"echo 'locked: x'; echo 'waited: no'; {shell}"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    host_state.remember_output(reads, batch, printed.splitlines())
    assert host_state.read(Echoed, word="a") == "a"
    assert host_state.read(Echoed, word="b") == "b"
    assert counting_host.asked == []


def test_a_batch_cut_short_after_the_lock_leaves_each_fact_to_be_read_alone(counting_host):
    reads = [(Echoed, {"word": "a"}), (Echoed, {"word": "b"})]
    batch = Batch()
    batch.command(reads)
    cut_short = ["locked: x", "waited: no", "@@batch-part 0", "a", "@@batch-status 0",
                 "@@batch-part 1", "b"]  # fmt: skip
    host_state.remember_output(reads, batch, cut_short)
    assert host_state.read(Echoed, word="a") == "read Echoed #1"
    assert counting_host.asked == ["Echoed"]
