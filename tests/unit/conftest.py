import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.context import ctx_host, ctx_state


@pytest.fixture
def local_pyinfra():
    """A real pyinfra State on @local, connected, as the current state: ``(state, host)``."""
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    previous = ctx_state.get() if ctx_state.isset() else None
    ctx_state.set(state)
    connect_all(state)
    yield state, inventory.get_host("@local")
    if previous is not None:
        ctx_state.set(previous)


@pytest.fixture(autouse=True)
def no_host_left_current():
    """Each test starts with no current pyinfra host, whatever the one before raised.

    pyinfra's ``ctx_host.use()`` puts the previous host back only when its block ends
    without an exception: a test that expects one (a fixture case asking about another
    path) would leave its recorded host current, and an entry file imported later
    (maintain.py, also pyinfra's deploy file for --apply) would run as a deploy.
    """
    yield
    ctx_host.reset()
