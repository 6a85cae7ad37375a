"""drift.py and deploy.py agree on the files compose and the server read: the tamper matrix.

The rows of tests/integration/test_tamper_matrix.py, and its rule, on the files
around the stack rather than the resources the deploy declares one by one: the
full mode bits and ACLs of a declared dir, a dir where a file belongs, the
files a plain ``docker compose`` in the project dir reads besides ours, the
owner and mode of what the server writes inside its data dir, a data dir moved
away under a running server, the compose file's owner and mode. After each
tamper ``drift.py`` exits 2 and ``pyinfra --dry`` plans a change (or the deploy
refuses, with one line, before anything changes); after the repair drift exits
0 and the dry run plans nothing. Every row also counts the records the real
client reads back, before the tamper and after the repair: the same.

One stack (Chroma 1.5.9 without the proxy, so the test's client reaches it),
the rows in order, each repaired for the next.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    base_data,
    converge,
    read_records,
    run_deploy,
    run_drift,
    sh,
    stat,
    wait_for_heartbeat,
    write_records,
)
from test_tamper_matrix import IMAGE_REPO, Row, Stack, _report, _run_rows, _stack, runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECORDS = 100


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for made in _stack(tmp_path_factory.mktemp("tamperfiles"), "1.5.9", proxy=False):
        write_records(made.data["chroma_port"], ("tamper_files",), RECORDS)
        made.records = made.count_records()  # the matrix's own records and these
        yield made
        _report(made)
    sh(f"docker image rm {IMAGE_REPO}:1.5.9", check=False)


# --- the tampers


def _default_acl(stack: Stack) -> None:
    """A default ACL giving uid 4242 everything in chroma_data, as `setfacl -d -m u:4242:rwx`
    writes it (set as the xattr itself: this machine has no acl package)."""
    entries = [(0x01, 7, -1), (0x02, 7, 4242), (0x04, 5, -1), (0x10, 7, -1), (0x20, 0, -1)]
    value = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident & 0xFFFFFFFF) for tag, perm, ident in entries
    )
    os.setxattr(stack.path("chroma_data"), "system.posix_acl_default", value)


def _remove_acl(stack: Stack) -> None:
    os.removexattr(stack.path("chroma_data"), "system.posix_acl_default")


def _dir_instead_of(relative: str) -> Callable[[Stack], None]:
    def tamper(stack: Stack) -> None:
        path = stack.path(relative)
        path.unlink()
        path.mkdir()

    return tamper


def _move_aside(relative: str) -> Callable[[Stack], None]:
    """What the one line says: move it aside (here, out of the project dir)."""

    def resolve(stack: Stack) -> None:
        aside = stack.project_dir.parent / f"aside-{uuid.uuid4().hex[:6]}-{Path(relative).name}"
        stack.path(relative).rename(aside)

    return resolve


def _env_with_project_name(stack: Stack) -> None:
    stack.path(".env").write_text(f"TOKEN=never-shown\nCOMPOSE_PROJECT_NAME={stack.name}x\n")


def _override_file(stack: Stack) -> None:
    """What a user's `docker compose up -d` there would merge in: every address, a named volume."""
    stack.path("docker-compose.override.yml").write_text(
        "services:\n  chroma:\n    ports: ['0.0.0.0:18999:8000']\n"
        "    volumes: ['chroma_data:/data']\nvolumes:\n  chroma_data: {}\n"
    )


def _compose_yaml(stack: Stack) -> None:
    """A compose.yaml, which a plain `docker compose` there prefers to docker-compose.yml."""
    shutil.copy(stack.path("docker-compose.yml"), stack.path("compose.yaml"))


def _compose_symlink(stack: Stack) -> None:
    """The compose file as a link to a copy of itself elsewhere (chmod would follow it)."""
    copy = stack.project_dir.parent / "linked-compose.yml"
    shutil.copy(stack.path("docker-compose.yml"), copy)
    stack.path("docker-compose.yml").unlink()
    stack.path("docker-compose.yml").symlink_to(copy)


def _move_data_dir_away(stack: Stack) -> None:
    """Moved while Chroma runs and serves: once a row before has restarted it, its health
    must be past "starting" first (a Chroma still starting may not have opened the dir,
    and the guard rightly leaves such a one alone: checks/compare.py served_without_data)."""
    container = f"{stack.name}-chroma-1"
    deadline = time.monotonic() + 120
    while _health(container) != "healthy":
        assert time.monotonic() < deadline, f"{container} is not healthy after 120 s"
        time.sleep(0.5)
    stack.path("chroma_data").rename(stack.project_dir.parent / "moved-chroma_data")


def _health(container: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def _move_data_dir_back(stack: Stack) -> None:
    (stack.project_dir.parent / "moved-chroma_data").rename(stack.path("chroma_data"))


@dataclass(frozen=True)
class FileRow(Row):
    # For a row the deploy refuses: what its one line says (with the host and the path).
    says: str = ""
    # The server starts again after the repair: a file it needs but could not write before.
    restart_after: bool = False


HAS_SETFACL = shutil.which("setfacl") is not None

ROWS = (
    FileRow("data dir setgid", lambda s: sh(f"chmod g+s '{s.path('chroma_data')}'"),
            batch="modes", finds=("mode {p}/chroma_data",)),
    FileRow("project dir setgid", lambda s: sh(f"chmod g+s '{s.project_dir}'"),
            batch="modes", finds=("mode {p}",)),
    # Without the acl package (this machine) the deploy refuses; with it, setfacl -b repairs.
    FileRow("data dir default ACL", _default_acl,
            resolve=None if HAS_SETFACL else _remove_acl,
            says="" if HAS_SETFACL else "chroma_data_dir: {p}/chroma_data has an ACL"),
    FileRow(".gitkeep replaced by a dir", _dir_instead_of("chroma_data/.gitkeep"),
            resolve=_move_aside("chroma_data/.gitkeep"),
            says="chroma_data_dir: {p}/chroma_data/.gitkeep is a directory, not a regular file; "
                 "move it aside"),
    FileRow(".gitignore replaced by a dir", _dir_instead_of(".gitignore"),
            resolve=_move_aside(".gitignore"),
            says="chroma_manage_gitignore: {p}/.gitignore is a directory, not a regular file; "
                 "move it aside"),
    FileRow("compose file replaced by a dir", _dir_instead_of("docker-compose.yml"),
            resolve=_move_aside("docker-compose.yml"),
            says="chroma_project_dir: {p}/docker-compose.yml is a directory, not a regular file; "
                 "move it aside"),
    FileRow("compose file replaced by a symlink", _compose_symlink,
            resolve=_move_aside("docker-compose.yml"),
            says="chroma_project_dir: {p}/docker-compose.yml is a symbolic link, not a regular "
                 "file; move it aside"),
    FileRow(".env sets COMPOSE_PROJECT_NAME", _env_with_project_name,
            resolve=lambda s: s.path(".env").unlink(),
            says="chroma_project_dir: {p}/.env sets COMPOSE_PROJECT_NAME, which docker compose "
                 "obeys over {p}/docker-compose.yml"),
    FileRow("docker-compose.override.yml beside the compose file", _override_file,
            resolve=_move_aside("docker-compose.override.yml"),
            says="chroma_project_dir: {p}/docker-compose.override.yml is read by a plain docker "
                 "compose in {p}"),
    FileRow("compose.yaml beside the compose file", _compose_yaml,
            resolve=_move_aside("compose.yaml"),
            says="chroma_project_dir: {p}/compose.yaml is read by a plain docker compose in {p}"),
    FileRow("chroma.sqlite3 owned by another uid",
            lambda s: os.chown(s.path("chroma_data/chroma.sqlite3"), 4242, 4243),
            restart_after=True, batch="modes", finds=("owner {p}/chroma_data/chroma.sqlite3",)),
    FileRow("chroma.sqlite3 read-only for its owner",
            lambda s: s.path("chroma_data/chroma.sqlite3").chmod(0o444), restart_after=True,
            batch="owners", finds=("owner {p}/chroma_data/chroma.sqlite3",)),
    FileRow("data dir moved aside while Chroma runs", _move_data_dir_away,
            resolve=_move_data_dir_back,
            says="chroma_allow_empty_data_dir: {p}/chroma_data holds no Chroma data while the "
                 "running {name}-chroma-1 serves the data it opened there"),
    FileRow("compose file world-writable", lambda s: s.path("docker-compose.yml").chmod(0o666),
            batch="modes", finds=("mode {p}/docker-compose.yml",)),
    FileRow("compose file owned by another uid",
            lambda s: os.chown(s.path("docker-compose.yml"), 4242, -1),
            batch="owners", finds=("owner {p}/docker-compose.yml",)),
)  # fmt: skip


def _refusal_said(stack: Stack, row: FileRow) -> Callable[[Stack], Any] | None:
    """The row's resolve, after checking the refusal's one line (the deploy refuses again:
    nothing changed in between) and that Chroma still serves every record."""
    if row.resolve is None:
        return None
    resolve = row.resolve

    def check_then_resolve(stack: Stack) -> Any:
        refused = run_deploy(stack.data, env=stack.env)
        assert refused.returncode == 1, refused.output
        said = row.says.format(p=stack.project_dir, name=stack.name)
        lines = [line for line in refused.output.splitlines() if said in line]
        assert len(lines) == 1 and "@local: " in lines[0], refused.output
        stack.log[-1]["refusal"] = lines[0][lines[0].index("@local: ") :]
        assert len(read_records(stack.data["chroma_port"])["tamper_files"]) == RECORDS
        return resolve(stack)

    return check_then_resolve


RUNS = runs(ROWS)


@pytest.mark.parametrize("rows", RUNS, ids=[" + ".join(row.name for row in run) for run in RUNS])
def test_drift_and_the_deploy_agree_on_the_files_around_the_stack(
    stack: Stack, rows: tuple[FileRow, ...]
) -> None:
    port = stack.data["chroma_port"]
    before = len(read_records(port)["tamper_files"])
    _run_rows(stack, tuple(
        Row(row.name, row.tamper, _refusal_said(stack, row), row.batch, row.finds) for row in rows
    ))  # fmt: skip
    if any(row.restart_after for row in rows):
        # The server needs to write the file: harmless until it starts again, then a crash loop.
        sh(f"docker restart -t 5 {stack.container('chroma')}")
        wait_for_heartbeat(port)
    after = len(read_records(port)["tamper_files"])
    stack.log[-1]["records"] = [before, after]
    assert before == after == RECORDS


def test_backup_refuses_while_env_names_another_compose_project(
    stack: Stack, tmp_path: Path
) -> None:
    """Our `docker compose -f` obeys .env's COMPOSE_PROJECT_NAME too: backup.py would stop
    another project (nothing) and archive the live database. It refuses, and Chroma serves on."""
    _env_with_project_name(stack)
    try:
        data = {**stack.data, "chroma_backup_dir": str(tmp_path / "backups")}
        refused = run_deploy(data, env=stack.env, deploy_file="backup.py")
        assert refused.returncode == 1, refused.output
        said = f"@local: chroma_project_dir: {stack.project_dir}/.env sets COMPOSE_PROJECT_NAME"
        assert len([line for line in refused.output.splitlines() if said in line]) == 1
        assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())
        state = sh(f"docker inspect -f '{{{{.State.Status}}}}' {stack.container('chroma')}")
        assert state.stdout.strip() == "running"
        assert len(read_records(stack.data["chroma_port"])["tamper_files"]) == RECORDS
    finally:
        stack.path(".env").unlink()


def test_a_data_dir_moved_away_with_an_empty_start_allowed_starts_chroma_on_it(
    stack: Stack,
) -> None:
    """chroma_allow_empty_data_dir=true: Chroma starts again at once on the new, empty dir,
    not at some later restart; the moved data is left as it was. (Last: it empties the stack.)"""
    port = stack.data["chroma_port"]
    assert len(read_records(port)["tamper_files"]) == RECORDS
    _move_data_dir_away(stack)
    moved = stack.project_dir.parent / "moved-chroma_data"
    files_before = sorted(str(p.relative_to(moved)) for p in moved.rglob("*"))
    stack.data["chroma_allow_empty_data_dir"] = "true"
    (drift, items), (plan_rc, planned) = stack.check()
    assert drift == 2 and any(item.startswith("data_dir_moved ") for item in items), items
    assert plan_rc == 0 and any("up and healthy" in name for name in planned), planned
    stack.deploy()
    (drift, items), (plan_rc, planned) = stack.check()
    assert (drift, plan_rc, planned) == (0, 0, []), f"drift {items}, plan {planned}"
    assert read_records(port) == {}  # what the user allowed: an empty server, serving now
    assert sorted(str(p.relative_to(moved)) for p in moved.rglob("*")) == files_before


def test_a_project_dir_made_under_a_setgid_parent_converges_in_one_run(project) -> None:
    """A new dir inherits its parent's setgid bit and `install -d -m 750` keeps it: the
    deploy clears it as it creates the dir, so the second run changes nothing."""
    project_dir, name = project
    project_dir.parent.chmod(0o2755)
    data = base_data(project_dir, name, chroma_upgrade_rehearsal="false")
    converge(data)
    for path in (project_dir, *(project_dir / d for d in ("chroma_data", "chroma_db", "logs"))):
        assert stat(path)[2] == "750", path
    drift = run_drift(data, "--json")
    assert drift.returncode == 0, drift.output
