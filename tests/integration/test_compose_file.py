"""A rendered compose file replaces the live one only after compose accepts it."""

from __future__ import annotations

import subprocess
from io import StringIO

import pytest
from pyinfra.api import FileUploadCommand
from pyinfra.context import ctx_host

from declaration.resources import ComposeFile
from operations.stack import COMPOSE_FILE, compose_file

pytestmark = [pytest.mark.docker]


class _Host:
    """Answers the one fact compose_file reads: the live file differs."""

    name = "test"

    def get_fact(self, *args, **kwargs):
        return {"compose": {"sha256": "0" * 64, "content": ""}}

    def noop(self, description):
        raise AssertionError(description)


def _apply(project_dir, content: str) -> subprocess.CompletedProcess[str]:
    """Run the operation's commands for real, as pyinfra's local connector would."""
    with ctx_host.use(_Host()):
        declared = ComposeFile(f"{project_dir}/{COMPOSE_FILE}", content, 0, 0)
        commands = list(compose_file.__wrapped__(str(project_dir), declared))
    for command in commands:
        if isinstance(command, FileUploadCommand):
            assert isinstance(command.src, StringIO)
            with open(command.dest, "w") as upload:
                upload.write(command.src.getvalue())
            continue
        done = subprocess.run(["sh", "-c", str(command)], capture_output=True, text=True)
        if done.returncode != 0:
            return done
    return subprocess.CompletedProcess([], 0, "", "")


def test_a_file_compose_rejects_never_replaces_the_live_file(tmp_path):
    live = tmp_path / "docker-compose.yml"
    good = "name: keep\nservices:\n  chroma:\n    image: chromadb/chroma:1.5.9\n"
    live.write_text(good)
    result = _apply(tmp_path, "name: broken\nservices:\n  chroma: [not, a, service\n")
    assert result.returncode != 0
    assert "was left as it was" in result.stderr
    assert live.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]


def test_a_file_compose_accepts_replaces_the_live_file(tmp_path):
    live = tmp_path / "docker-compose.yml"
    live.write_text("name: old\nservices: {}\n")
    new = "name: new\nservices:\n  chroma:\n    image: chromadb/chroma:1.5.9\n"
    assert _apply(tmp_path, new).returncode == 0
    assert live.read_text() == new
    assert oct(live.stat().st_mode & 0o777) == "0o640"
