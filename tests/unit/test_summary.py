"""scripts/up.sh's closing lines: only after a run that converged, only of what was checked,
from the run's own arguments read as pyinfra reads them (plumbing.cli).

The summary runs as up.sh runs it, ``python -m plumbing.summary PYINFRA_ARGS``, and what
pyinfra's parser makes of a line is read in tests/unit/read_command_line.py: both in a
process of their own, since pyinfra's CLI monkey-patches the interpreter on import.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from declaration.settings import load_settings
from plumbing import cli, summary

ROOT = Path(__file__).resolve().parents[2]
READ = str(Path(__file__).with_name("read_command_line.py"))


def run_summary(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "plumbing.summary", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_pyinfras_own_parser_says_whether_the_run_converged():
    lines = {
        ("-y", "@local", "deploy.py"): True,
        ("-y", "@local", "deploy.py", "--dry"): False,
        ("@local", "deploy.py", "--json"): False,  # no -y: pyinfra only shows the changes
        ("-y", "@local", "deploy.py", "--debug-operations"): False,
        ("-y", "@local", "debug-inventory"): False,
        ("-y", "@local", "fact", "server.Os"): False,
        ("-y", "@local", "deploy.py", "--help"): None,  # help: no run at all
        ("-y", "@local", "deploy.py", "-h"): None,
        ("-y", "@local", "deploy.py", "--frobnicate"): None,  # pyinfra refuses the line
    }
    done = subprocess.run(
        [sys.executable, READ, "commands"], input=json.dumps([list(line) for line in lines]),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    read = json.loads(done.stdout)
    pairs = zip(lines, read, strict=True)
    said = {line: command and command["converges"] for line, command in pairs}
    assert said == lines
    first = read[0]
    assert (first["inventory"], first["operations"]) == ("@local", ["deploy.py"])


@pytest.mark.parametrize("extra", [["--dry"], ["--help"]])
def test_no_summary_after_a_run_that_converged_nothing(extra):
    """The old summary claimed "up and healthy" after --dry and --help (the other runs that
    converge nothing: test_pyinfras_own_parser_says_whether_the_run_converged). The issue's
    list that the old summary refused is a key's example in tests/unit/test_loader.py."""
    done = run_summary("-y", "@local", "deploy.py", "--data", "chroma_image_source=auto", *extra)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_summary_claims_only_the_heartbeat_it_read():
    """Nothing answers on the port: no "up and healthy", one line with the URL, exit 1."""
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_summary("-y", "@local", "deploy.py", "--data", f"chroma_port={port}")
    assert done.returncode == 1
    assert "up and healthy" not in done.stderr + done.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"chroma-deploy: no heartbeat at http://127.0.0.1:{port}: "), line


def test_the_printed_commands_read_what_the_deploy_read(tmp_path, monkeypatch):
    """drift and backup as printed take the same --data and group_data dirs, from any dir
    (the image source is up.sh's, not the user's)."""
    (tmp_path / "group_data").mkdir()
    (tmp_path / "more").mkdir()
    monkeypatch.chdir(tmp_path)
    command = cli.PyinfraCommand(
        inventory="@local",
        operations=("deploy.py",),
        data=("chroma_image_source=auto", "chroma_port=8001"),
        group_data=("more",),
        chdir=None,
        converges=True,
    )
    settings = load_settings({"chroma_port": 8001})
    text = summary.summary(settings, settings.version, command)
    read = f"--group-data {tmp_path / 'group_data'} --group-data {tmp_path / 'more'}"
    assert f"drift.py @local {read} --data chroma_port=8001\n" in text
    assert f"backup.py {read} --data chroma_port=8001  (archives in " in text
    assert "URL:          http://127.0.0.1:8001;" in text
