"""Every argument that reaches the shell is one quoted word: hostile values run nothing.

Each fact's command is run by ``sh`` with arguments that would create a marker
file if any of them were interpreted; the command must still exit 0.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
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


def _cases(h: str) -> list[tuple[type, dict[str, Any]]]:
    return [
        (DockerImage, {"ref": h}),
        (ComposeStack, {"project_dir": h, "project_name": h, "compose_file": h, "image": h,
                        "port": 1}),
        (ContainerMounts, {"project_name": h, "service": h, "persist_path": h}),
        (ChromaHealth, {"url": "http://127.0.0.1:1", "heartbeat_path": "/" + h, "container": h,
                        "token_file": h}),
        (DataDirs, {"paths": [h, "/" + h]}),
        (ProjectFiles, {"project_dir": h, "compose_file": h}),
        (Accounts, {"owner": h, "group": h}),
        (LegacyVolumes, {"names": [h, "*"]}),
        (ContainerLayerData, {"containers": [h, "-" + h]}),
        (SafetyState, {"project_dir": h, "data_dir": h}),
        (SafetyState, {"project_dir": "/tmp", "data_dir": h}),  # the glob is reached
        (ChromaInventory, {"url": h, "tools_dir": h, "token_file": h, "manifest": h}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "index", range(len(_cases(""))), ids=lambda i: f"{i}-{_cases('')[i][0].__name__}"
)
def test_hostile_arguments_run_nothing(index: int, tmp_path: Path):
    marker = tmp_path / "ran"
    fact_cls, args = _cases(_hostile(marker))[index]
    run = run_fact(fact_cls, **args)
    assert run.returncode == 0
    assert not marker.exists(), f"{fact_cls.__name__} ran part of an argument"


class _Heartbeat(socketserver.StreamRequestHandler):
    """Answers any request like Chroma's heartbeat, and keeps the request line."""

    request_lines: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        self.request_lines.append(self.rfile.readline())
        while self.rfile.readline().strip():
            pass
        body = b'{"nanosecond heartbeat":1234}'
        self.wfile.write(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + body)


def test_hostile_arguments_run_nothing_in_the_bash_fallback(
    tmp_path: Path, path_without: Callable[..., dict[str, str]]
):
    """Without curl the request is made by ``bash -c SCRIPT``: the arguments stay out of SCRIPT."""
    marker = tmp_path / "ran"
    hostile = _hostile(marker)
    with socketserver.TCPServer(("127.0.0.1", 0), _Heartbeat) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            run = run_fact(
                ChromaHealth,
                env=path_without("curl"),
                url=f"http://127.0.0.1:{server.server_address[1]}",
                heartbeat_path="/api/v2/heartbeat?" + hostile,
                token_file=hostile,
            )
        finally:
            server.shutdown()
    assert run.returncode == 0
    assert run.lines[0] == "@@bash"
    assert not marker.exists()
    assert _Heartbeat.request_lines[-1].startswith(b"GET /api/v2/heartbeat?x';touch ")
    assert run.value["status"] == 200
    assert run.value["heartbeat"] == 1234
    assert run.value["seconds"] is None


def test_a_name_pattern_is_literal():
    """A ``*`` in LegacyVolumes names matches a volume called ``*`` only, not every volume."""
    command = LegacyVolumes().command(names=["*"])
    assert "'*'|*_'*')" in command
