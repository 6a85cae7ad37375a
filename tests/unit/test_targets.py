"""The typed values operations take: derived alike every run, and never part of an op's key.

pyinfra keys an operation by where it is called (the deploy file's lines under the CLI,
the order of calls through the API) and shows it by its ``name=``; an argument's value
only reaches the key or the output if pyinfra starts hashing or printing arguments. So
two runs of the same deploy have the same operations, under the same names, as long as
equal settings give equal values whose ``repr`` and pyinfra hash do not depend on the
object (no ``at 0x...``): checked here, for every value and through a real pyinfra run.
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from pyinfra.api import Config, Inventory, State, operation
from pyinfra.api.connect import connect_all
from pyinfra.api.operation import add_op
from pyinfra.api.util import make_hash
from pyinfra.context import ctx_state

from declaration.resources import Declared
from declaration.settings import load_settings
from declaration.targets import DataTarget
from plumbing import preflight, pyinfra_internals

TARGETS = ("stack_target", "data_target", "health_check", "check_server", "rehearsal")


def _declared() -> Declared:
    settings = load_settings(
        {"chroma_project_dir": "/tmp/fx/stack", "chroma_compose_project": "fx",
         "chroma_port": 18777, "chroma_auth_proxy": True, "chroma_upgrade_rehearsal": True}
    )  # fmt: skip
    return Declared(settings, 1000, 1000, "targets-test-token-0123456789")


@pytest.mark.parametrize("target", TARGETS)
def test_equal_settings_give_equal_values_with_a_stable_repr_and_hash(target: str) -> None:
    first, second = getattr(_declared(), target), getattr(_declared(), target)
    assert first is not None and first is not second
    assert first == second and hash(first) == hash(second)
    assert repr(first) == repr(second) and "0x" not in repr(first)
    assert make_hash(first) == make_hash(second)  # pyinfra's own hash of an argument
    # Nothing a run could change inside: frozen, and tuples where there are several.
    for field in fields(first):
        assert not isinstance(getattr(first, field.name), list | dict | set), field.name


def test_the_deploy_and_drift_read_the_stack_and_health_with_the_values_operations_get() -> None:
    declared = _declared()
    assert preflight.stack_read(declared.settings) == declared.stack_target.read
    assert preflight.health_read(declared) == declared.health_check.read


@operation()
def _acts_on(data: DataTarget):
    yield f"true {data.path}"


@pytest.fixture
def fresh_state():
    """A new pyinfra State on @local for each call: one run of a deploy each."""
    previous = ctx_state.get() if ctx_state.isset() else None

    def make() -> tuple[State, object]:
        inventory = Inventory((["@local"], {}))
        state = State(inventory, Config())
        ctx_state.set(state)
        connect_all(state)
        return state, inventory.get_host("@local")

    yield make
    if previous is not None:
        ctx_state.set(previous)


def test_pyinfra_keys_and_names_an_operation_by_its_call_not_its_typed_arguments(fresh_state):
    data = _declared().data_target
    keys = []
    for value in (data, _declared().data_target, replace(data, path="/elsewhere")):
        state, host = fresh_state()
        meta = add_op(state, _acts_on, name="Acts on the data dir", data=value)[host]
        op_hash = pyinfra_internals.operation_hash(meta)  # what pyinfra keys the op by
        keys.append((op_hash, sorted(state.op_meta[op_hash].names), state.op_meta[op_hash].args))
    assert keys[0] == keys[1] == keys[2]
    assert keys[0][1] == ["Acts on the data dir"] and keys[0][2] == []
