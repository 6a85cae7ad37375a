"""drift.py and deploy.py agree after the tampers a hunt beyond the matrix found (issue #28).

The rule of tests/integration/test_tamper_matrix.py, on tampers an operator or an
accident makes that its rows do not: after each one ``drift.py`` exits 2 and
``pyinfra --dry`` plans a change (or the deploy refuses with one line); after the
deploy, drift exits 0, the dry run plans nothing, and the records the real client
reads back through the published port are the ones it read before.

One stack (Chroma 1.5.9 behind the auth proxy: two containers, so a tamper of one
is told from the stack's), the rows in order, each repaired for the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import sh
from test_tamper_matrix import IMAGE_REPO, Row, Stack, _report, _run_row, _stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for made in _stack(tmp_path_factory.mktemp("tamperattack"), "1.5.9", proxy=True):
        yield made
        _report(made)
    sh(f"docker image rm {IMAGE_REPO}:1.5.9", check=False)


def _limits_by_hand(stack: Stack) -> None:
    """Limits the file does not declare, set on the running container: its labels stay.
    Harmless until the next start, then a crash loop (4 processes do not start Chroma)."""
    limits = "--pids-limit 4 --cpu-shares 2 --memory-reservation 64m --cpuset-cpus 0"
    sh(f"docker update {limits} {stack.container('chroma')}")


def _pause(service: str) -> Callable[[Stack], None]:
    def tamper(stack: Stack) -> None:
        paused = sh(f"docker pause {stack.container(service)}", check=False)
        assert paused.returncode == 0, paused.stderr

    return tamper


def _sqlite_linked_from_elsewhere(stack: Stack) -> None:
    """chroma.sqlite3 moved to another disk and linked back: the running server keeps the
    file it opened; started again, it cannot follow the link out of its mount (a crash loop)."""
    moved = stack.project_dir.parent / "elsewhere.sqlite3"
    stack.path("chroma_data/chroma.sqlite3").rename(moved)
    stack.path("chroma_data/chroma.sqlite3").symlink_to(moved)


def _sqlite_back(stack: Stack) -> None:
    """What the one line says: the file itself in the link's place."""
    stack.path("chroma_data/chroma.sqlite3").unlink()
    (stack.project_dir.parent / "elsewhere.sqlite3").rename(
        stack.path("chroma_data/chroma.sqlite3")
    )


ROWS = (
    # Each deploy failed ("Container ... is not paused"): `compose unpause` of the whole
    # project, on the pair behind the proxy of which one was paused.
    Row("proxy paused", _pause("auth-proxy")),
    Row("docker update: pids limit, cpu shares, memory reservation, cpuset", _limits_by_hand),
    # A second Chroma on the same data dir, the proxy sending every other request to it.
    Row("chroma scaled to two by compose", lambda s: sh(
        s.compose("up", "-d", "--wait", "--no-recreate", "--scale", "chroma=2") + " 2>&1")),
    Row("chroma.sqlite3 a symlink to a file outside the data dir", _sqlite_linked_from_elsewhere,
        resolve=_sqlite_back),
)  # fmt: skip


# The one line a refused row's deploy prints ({p}: the project dir).
SAYS = {
    "chroma.sqlite3 a symlink to a file outside the data dir": (
        "@local: chroma_data_dir: {p}/chroma_data/chroma.sqlite3 is a symbolic link, which "
        "Chroma in its container cannot follow out of {p}/chroma_data; put the file or dir it "
        "points to there in its place, then run again"
    ),
}


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_drift_and_the_deploy_agree_after_the_hunts_tampers(stack: Stack, row: Row) -> None:
    _run_row(stack, row)
    if row.name in SAYS:
        said = SAYS[row.name].format(p=stack.project_dir)
        assert [line[line.index("@local: ") :] for line in stack.log[-1]["refused"]] == [said]
