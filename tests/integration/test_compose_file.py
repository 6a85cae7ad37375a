"""A rendered compose file replaces the live one only after compose accepts it.

A real pyinfra run on @local: the operation reads the project dir's real facts,
pyinfra's own local connector uploads the file and runs the commands, and the
real docker compose judges the file. (Its commands against recorded facts:
tests/fixtures/operations/stack.compose_file/.)
"""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state

from declaration.resources import ComposeFile
from operations.stack import COMPOSE_FILE, compose_file
from plumbing import host_state
from plumbing.pyinfra_internals import changes_so_far

pytestmark = [pytest.mark.docker]

GOOD = "name: keep\nservices:\n  chroma:\n    image: chromadb/chroma:1.5.9\n"


def run(project_dir, content: str) -> int | None:
    """One run of the operation on @local, as root; how many operations changed the host.

    Each run is a State of its own, as each pyinfra command is; the per-run fact
    cache is dropped first, as a new process starts without it.
    """
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    host = inventory.get_host("@local")
    with ctx_state.use(state), ctx_host.use(host):
        host_state.forget()
        connect_all(state)
        declared = ComposeFile(f"{project_dir}/{COMPOSE_FILE}", content, 0, 0)
        add_op(state, compose_file, project_dir=str(project_dir), file=declared)
        run_ops(state)
        return changes_so_far(host)


def test_a_file_compose_rejects_never_replaces_the_live_file(tmp_path, caplog):
    live = tmp_path / "docker-compose.yml"
    live.write_text(GOOD)
    with pytest.raises(PyinfraError, match="No hosts remaining"):
        run(tmp_path, "name: broken\nservices:\n  chroma: [not, a, service\n")
    assert "was left as it was" in caplog.text  # pyinfra logs the failed command's stderr
    assert live.read_text() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]


def test_a_file_compose_accepts_replaces_the_live_file_and_a_second_run_changes_nothing(
    tmp_path,
):
    live = tmp_path / "docker-compose.yml"
    live.write_text("name: old\nservices: {}\n")
    new = GOOD.replace("keep", "new")
    assert run(tmp_path, new) == 1
    assert live.read_text() == new
    assert oct(live.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]
    assert run(tmp_path, new) == 0
