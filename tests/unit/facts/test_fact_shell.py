"""Every argument that reaches the shell is one quoted word: hostile values run nothing.

Each fact's command is run by ``sh`` with arguments that would create a marker
file if any of them were interpreted; the command must still exit 0. A value
only proves something where the command reaches it: a word behind ``test -d
<dir> || exit 0`` or ``command -v docker || exit 0`` is never expanded when the
dir or docker is missing. So every hostile path here exists (a dir, a file, a
database, a record), each test shows the fact read what is there, and the facts
that ask Docker run against the real engine (marker ``docker``).
"""

from __future__ import annotations

import contextlib
import shutil
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fact_runs import run_fact

from facts.accounts import Accounts
from facts.chroma import ChromaHealth, ChromaInventory
from facts.compose import ComposeStack, ContainerLayerData, ContainerMounts
from facts.datadirs import DataDirs
from facts.docker import DockerImage
from facts.project import ProjectFiles, SafetyState
from facts.volumes import LegacyVolumes


def _hostile(marker: Path) -> str:
    return f"x';touch {marker};'\"$(touch {marker})\"`touch {marker}`\n;touch {marker} #"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A hostile value, and a dir under which it names a path; the marker must not appear."""
    marker = tmp_path / "ran"
    root = tmp_path / "root"
    root.mkdir()
    yield _hostile(marker), root
    assert not marker.exists(), "a fact ran part of an argument"


def run_hostile(fact_cls: type, **args: Any) -> Any:
    """The fact's value; its command must exit 0."""
    run = run_fact(fact_cls, **args)
    assert run.returncode == 0, run.lines
    return run.value


def test_data_dirs_reads_a_hostile_path(hostile: tuple[str, Path]):
    value, root = hostile
    path = root / value
    path.mkdir(parents=True)
    (path / "chroma.sqlite3").write_bytes(b"SQLite format 3\x00")
    (path / ".gitkeep").touch()
    found = run_hostile(DataDirs, paths=[str(path), str(root / "missing" / value)])
    assert found[str(path)]["type"] == "directory"
    assert found[str(path)]["has_sqlite"] is True
    assert found[str(path)]["gitkeep"] is not None
    assert found[str(root / "missing" / value)] is None


def test_project_files_reads_a_hostile_project_dir_and_compose_file(
    hostile: tuple[str, Path],
):
    value, root = hostile
    project_dir = root / value
    (project_dir / value).parent.mkdir(parents=True)
    (project_dir / value).write_text("name: hostile\n")
    (project_dir / ".gitignore").write_text("chroma_data/*\n")
    found = run_hostile(ProjectFiles, project_dir=str(project_dir), compose_file=value)
    assert found["dir"]["type"] == "directory"
    assert found["compose"]["content"] == "name: hostile\n"
    assert found["gitignore"] == ["chroma_data/*"]


def test_safety_state_reads_a_hostile_project_and_data_dir(hostile: tuple[str, Path]):
    value, root = hostile
    project_dir = root / value
    (project_dir / ".chroma-deploy").mkdir(parents=True)
    (project_dir / ".chroma-deploy" / "migrated-x.json").write_text("{}")
    (project_dir / value).mkdir(parents=True)
    (project_dir / value / "chroma.sqlite3").write_bytes(b"SQLite format 3\x00")
    (project_dir / f"{value}.before-restore-x").mkdir()
    found = run_hostile(SafetyState, project_dir=str(project_dir), data_dir=value)
    assert found["records"] == ["migrated-x.json"]
    assert found["data_has_sqlite"] is True
    # The glob "<data_dir>.*" was reached: the aside copy is found (one line per line).
    assert found["aside"] == sorted(f"{value}.before-restore-x".split("\n"))


def test_chroma_inventory_hands_hostile_arguments_to_the_tool_as_words(
    hostile: tuple[str, Path],
):
    value, root = hostile
    tools_dir = root / value
    tools_dir.mkdir(parents=True)
    # Stands in for files/chroma_inventory.py: prints the arguments it received.
    (tools_dir / "chroma_inventory.py").write_text(
        "import json, sys\nprint(json.dumps({'argv': sys.argv[1:]}))\n"
    )
    manifest = tools_dir / "manifest.json"
    manifest.write_text('{"collections": {}}')
    token_file = str(tools_dir / "token.env")
    found = run_hostile(
        ChromaInventory, url=value, tools_dir=str(tools_dir), token_file=token_file,
        manifest=str(manifest),
    )  # fmt: skip
    assert found["manifest"] == {"collections": {}}
    assert found["live"] == {
        "argv": [value, "--token-file", token_file, "--scopes-from", str(manifest)]
    }


def test_accounts_asks_for_a_hostile_owner_and_group(hostile: tuple[str, Path]):
    value, _ = hostile
    found = run_hostile(Accounts, owner=value, group=value)  # getent runs, whatever is found
    assert found["owner"] is None and found["group"] is None


def test_chroma_health_reads_a_hostile_token_file_and_names_a_hostile_container(
    hostile: tuple[str, Path],
):
    value, root = hostile
    token_file = root / value
    token_file.parent.mkdir(parents=True)
    token_file.write_text("CHROMA_AUTH_TOKEN=tok123\n")
    with _serving() as url:
        found = run_hostile(
            ChromaHealth, url=url, heartbeat_path="/api/v2/heartbeat", container=value,
            token_file=str(token_file),
        )  # fmt: skip
    assert found["status"] == 200
    assert b"X-Chroma-Token: tok123" in _Heartbeat.requests[-1]


def _docker_engine() -> None:
    """The docker facts stop at ``command -v docker`` or an empty answer without an engine."""
    assert shutil.which("docker"), "marked docker: run where Docker Engine is"
    subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=60)


@pytest.mark.docker
def test_docker_facts_hand_hostile_names_to_docker_and_run_nothing(hostile: tuple[str, Path]):
    value, _ = hostile
    _docker_engine()
    assert run_hostile(DockerImage, ref=value) is None
    assert run_hostile(ContainerMounts, project_name=value, service=value,
                       persist_path=value) is None  # fmt: skip
    assert run_hostile(ContainerLayerData, containers=[value, "-" + value]) == {}


@pytest.mark.docker
def test_compose_stack_reads_a_hostile_compose_file(hostile: tuple[str, Path]):
    value, root = hostile
    _docker_engine()
    project_dir = root / value
    (project_dir / value).parent.mkdir(parents=True)
    (project_dir / value).write_text("services: [\n")  # compose must read it to refuse it
    found = run_hostile(
        ComposeStack, project_dir=str(project_dir), project_name=value, compose_file=value,
        image=value,
    )  # fmt: skip
    assert found["docker"] is True
    assert found["file_exists"] is True
    assert found["config_error"]


@pytest.mark.docker
def test_legacy_volumes_match_hostile_names_against_every_volume(hostile: tuple[str, Path]):
    """The names are case patterns, reached only when a volume exists: one is made here."""
    value, _ = hostile
    _docker_engine()
    volume = f"cdtest{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "volume", "create", volume], capture_output=True, check=True)
    try:
        assert run_hostile(LegacyVolumes, names=[value, "*"]) == []
    finally:
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)


class _Heartbeat(socketserver.StreamRequestHandler):
    """Answers any request like Chroma's heartbeat, and keeps the request and its headers."""

    requests: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        request = [self.rfile.readline()]
        while request[-1].strip():
            request.append(self.rfile.readline())
        self.requests.append(b"".join(request))
        body = b'{"nanosecond heartbeat":1234}'
        self.wfile.write(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + body)


@contextlib.contextmanager
def _serving() -> Iterator[str]:
    """A heartbeat server on a free local port, for as long as the block runs; its URL."""
    with socketserver.TCPServer(("127.0.0.1", 0), _Heartbeat) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def test_hostile_arguments_run_nothing_in_the_bash_fallback(
    tmp_path: Path, path_without: Callable[..., dict[str, str]]
):
    """Without curl the request is made by ``bash -c SCRIPT``: the arguments stay out of SCRIPT."""
    marker = tmp_path / "ran"
    hostile = _hostile(marker)
    with _serving() as url:
        run = run_fact(
            ChromaHealth,
            env=path_without("curl"),
            url=url,
            heartbeat_path="/api/v2/heartbeat?" + hostile,
            token_file=hostile,
        )
    assert run.returncode == 0
    assert run.lines[0] == "@@bash"
    assert not marker.exists()
    assert _Heartbeat.requests[-1].startswith(b"GET /api/v2/heartbeat?x';touch ")
    assert run.value["status"] == 200
    assert run.value["heartbeat"] == 1234
    assert run.value["seconds"] is None


def test_a_name_pattern_is_literal():
    """A ``*`` in LegacyVolumes names matches a volume called ``*`` only, not every volume."""
    command = LegacyVolumes().command(names=["*"])
    assert "'*'|*_'*')" in command
