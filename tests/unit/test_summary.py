"""scripts/up.sh's closing lines: only after a run that converged, only of what was checked,
from the run's own arguments read as pyinfra reads them (plumbing.cli)."""

from __future__ import annotations

import os
import socket

import pytest

from declaration.settings import load_settings
from plumbing import cli, summary


def cli_command(argv: list[str]) -> cli.PyinfraCommand:
    command = cli.pyinfra_command(["-y", "@local", "deploy.py", *argv])
    assert command is not None
    return command


def test_a_list_the_deploy_accepts_is_accepted_by_the_summary():
    """The issue's case: the deploy took it, the summary refused it."""
    argv = ["--data", 'chroma_cors_allow_origins=["https://app.example"]']
    state = summary.load_state(cli_command(argv))
    settings = load_settings(next(iter(state.inventory)).data)
    assert settings.cors_allow_origins == ("https://app.example",)


@pytest.mark.parametrize(
    ("argv", "converges"),
    [
        (["-y", "@local", "deploy.py"], True),
        (["-y", "@local", "deploy.py", "--dry"], False),
        (["@local", "deploy.py", "--json"], False),  # no -y: pyinfra only shows the changes
        (["-y", "@local", "deploy.py", "--debug-operations"], False),
        (["-y", "@local", "debug-inventory"], False),
        (["-y", "@local", "fact", "server.Os"], False),
    ],
)
def test_the_summary_knows_from_pyinfras_own_parser_whether_the_run_converged(argv, converges):
    command = cli.pyinfra_command(argv)
    assert command is not None and command.converges is converges


@pytest.mark.parametrize("extra", [["--help"], ["-h"], ["--frobnicate"]])
def test_help_or_a_line_pyinfra_refuses_is_no_run(extra):
    assert cli.pyinfra_command(["-y", "@local", "deploy.py", *extra]) is None


def _summary_of(argv: list[str], capsys) -> tuple[int, str]:
    code = summary.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("extra", [["--dry"], ["--help"], ["--debug-operations"]])
def test_no_summary_after_a_run_that_converged_nothing(extra, capsys):
    code, said = _summary_of(["-y", "@local", "deploy.py", *extra], capsys)
    assert (code, said) == (0, "")


def test_the_summary_claims_only_the_heartbeat_it_read(capsys, monkeypatch, tmp_path):
    """Nothing answers on the port: no "up and healthy", one line with the URL, exit 1."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["-y", "@local", "deploy.py", "--data", f"chroma_port={port}"]
    code, said = _summary_of(argv, capsys)
    assert code == 1
    assert "up and healthy" not in said
    (line,) = said.splitlines()
    assert line.startswith(f"chroma-deploy: no heartbeat at http://127.0.0.1:{port}: "), line


def test_the_summary_commands_read_what_the_deploy_read(tmp_path, monkeypatch):
    """drift and backup as printed read the same --data and group_data dirs, from any dir."""
    (tmp_path / "group_data").mkdir()
    monkeypatch.chdir(tmp_path)
    argv = ["--data", "chroma_port=8001", "--data", "chroma_image_source=auto"]
    command = cli_command(argv)
    settings = load_settings(next(iter(summary.load_state(command).inventory)).data)
    text = summary.summary(settings, settings.version, command)
    group_data = f"--group-data {tmp_path / 'group_data'}"
    assert f"drift.py @local {group_data} --data chroma_port=8001\n" in text
    assert f"backup.py {group_data} --data chroma_port=8001  (archives in " in text
    assert os.path.isabs(text.split("check drift:")[1].split()[0])
