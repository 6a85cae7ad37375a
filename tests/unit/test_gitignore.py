"""The .gitignore operation's commands, run for real by sh in a temporary dir.

The fixtures (tests/fixtures/operations/project.gitignore/) pin the commands;
these tests execute them, so a command that is right on paper but wrong in a
shell (quoting, a temporary name shared by two runs) fails here.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand
from pyinfra.context import ctx_host

from declaration.gitignore import gitignore_lines
from operations import project

DATA_DIRS = ("chroma_data", "chroma_db", "logs")


class _Host:
    """Answers the one fact the operation reads, from the real file; records no-ops."""

    name = "test-host"

    def __init__(self, project_dir: Path):
        self.project_dir = project_dir
        self.noops: list[str] = []

    def get_fact(self, fact_cls: type, **kwargs: Any) -> Any:
        assert kwargs == {"project_dir": str(self.project_dir)}, kwargs
        path = self.project_dir / ".gitignore"
        lines = None
        if path.exists():  # split as facts.project.ProjectFiles splits
            text = path.read_text()
            lines = text.split("\n")
            if text.endswith("\n") or not text:
                lines.pop()
        return {"dir": {}, "compose": None, "gitignore": lines}

    def noop(self, description: str) -> None:
        self.noops.append(description)


def plan(project_dir: Path, lines: list[str] | None = None) -> list[Any]:
    with ctx_host.use(_Host(project_dir)):
        return list(
            project.gitignore.__wrapped__(
                project_dir=str(project_dir),
                lines=lines or gitignore_lines(DATA_DIRS),
                uid=0,
                gid=0,
            )
        )


def execute(commands: list[Any]) -> None:
    """Run the commands as the @local connector would: an upload is a copy, the rest sh -c."""
    for command in commands:
        assert not isinstance(command, FunctionCommand), "the operation refused"
        if isinstance(command, FileUploadCommand):
            Path(command.dest).write_text(command.src.getvalue())
            continue
        done = subprocess.run(["sh", "-c", str(command)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{command}: {done.stderr.strip()}")


def test_the_commands_write_the_block_and_a_second_plan_is_empty(tmp_path):
    (tmp_path / ".gitignore").write_text("# mine\n*.pyc")  # no final newline
    execute(plan(tmp_path))
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "# mine",
        "*.pyc",
        *gitignore_lines(DATA_DIRS),
    ]
    assert plan(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"]


def test_hostile_user_lines_are_written_as_they_are(tmp_path):
    own = ["$(touch pwned)", "`touch pwned`", "it's; rm -rf x", "a\\b", '"quoted"', "-n", "%s%d"]
    (tmp_path / ".gitignore").write_text("\n".join(own) + "\n")
    execute(plan(tmp_path))
    assert (tmp_path / ".gitignore").read_text().splitlines() == own + gitignore_lines(DATA_DIRS)
    assert not (tmp_path / "pwned").exists()


def test_two_runs_at_once_both_succeed_and_leave_one_whole_file(tmp_path):
    """Issue 16 part 4: two runs shared `.gitignore.chroma-deploy.tmp`; one failed with
    `mv: cannot stat`. Both plans are made before either runs, as two pyinfra runs
    started together make them."""
    for round_ in range(30):
        directory = tmp_path / f"r{round_}"
        directory.mkdir()
        (directory / ".gitignore").write_text("# mine\n")
        plans = [plan(directory), plan(directory)]
        errors: list[Exception] = []

        def run(commands: list[Any], errors: list[Exception] = errors) -> None:
            try:
                execute(commands)
            except Exception as error:  # collected, asserted below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(commands,)) for commands in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], errors
        expected = ["# mine", *gitignore_lines(DATA_DIRS)]
        assert (directory / ".gitignore").read_text().splitlines() == expected
        assert sorted(p.name for p in directory.iterdir()) == [".gitignore"]


@pytest.mark.parametrize("fail_at", ["chown", "mv"])
def test_a_failing_rewrite_leaves_the_old_file_and_no_temporary(tmp_path, fail_at):
    """A step failing half-way (here: a fake chown or mv first on PATH) changes nothing."""
    (tmp_path / ".gitignore").write_text("# mine\n")
    fake = tmp_path.parent / f"bin-{fail_at}"
    fake.mkdir()
    (fake / fail_at).write_text("#!/bin/sh\nexit 1\n")
    (fake / fail_at).chmod(0o755)
    commands = plan(tmp_path)
    env_prefix = f"PATH={fake}:$PATH; export PATH; "
    with pytest.raises(RuntimeError):
        execute([f"{env_prefix}{c}" if isinstance(c, str) else c for c in commands])
    assert (tmp_path / ".gitignore").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"]


def test_a_big_gitignore_is_rewritten_and_a_too_big_one_refused_untouched(tmp_path):
    own = [f"generated/{i:06d}/*.bin" for i in range(2500)]  # about 57 KiB
    (tmp_path / ".gitignore").write_text("\n".join(own) + "\n")
    execute(plan(tmp_path))
    assert (tmp_path / ".gitignore").read_text().splitlines() == own + gitignore_lines(DATA_DIRS)

    huge = "\n".join(f"generated/{i:06d}/*.bin" for i in range(8000)) + "\n"  # about 180 KiB
    (tmp_path / ".gitignore").write_text(huge)
    commands = plan(tmp_path)
    assert len(commands) == 1 and isinstance(commands[0], FunctionCommand)
    message = commands[0].args[0]
    assert "too big for chroma-deploy to rewrite" in message
    assert message.endswith(" ".join(gitignore_lines(DATA_DIRS)))
    assert (tmp_path / ".gitignore").read_text() == huge
