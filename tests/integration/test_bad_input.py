"""Bad data stops the run with one clear line, before anything on the host changes."""

from __future__ import annotations

import subprocess
import sys
import time

import click
import pytest
from bad_input_cases import CASES
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    converge,
    free_port,
    project_lock_held,
    run_deploy,
    sh,
)

pytestmark = [pytest.mark.docker]

# What pyinfra adds after a host fails, and what a user cannot act on.
NOISE = ("No hosts remaining", "executed 0 commands", "Traceback", "operations/", ".py line")


@pytest.mark.parametrize(("bad", "message"), CASES, ids=[str(bad) for bad, _ in CASES])
def test_bad_input_is_refused_with_a_clear_message_and_the_host_untouched(project, bad, message):
    project_dir, name = project
    data = base_data(project_dir, name)
    data.update(bad)
    result = run_deploy(data)
    assert result.returncode != 0
    assert message in result.output
    assert "Traceback" not in result.output
    # Said once, as `<host>: <key>: ...`, with no internal file and line to puzzle over.
    assert result.output.count(message) == 1
    assert "@local: chroma_" in result.output
    assert ".py line" not in result.output
    assert not project_dir.exists()
    assert not project_dir.parent.joinpath(".gitignore").exists()


def test_public_bind_without_auth_is_refused(project):
    project_dir, name = project
    result = run_deploy(base_data(project_dir, name, chroma_bind_address="0.0.0.0"))
    assert result.returncode != 0
    assert "chroma_allow_unauthenticated_public_port=true" in result.output
    assert not project_dir.exists()


def test_data_dir_that_is_a_file_is_reported_and_kept(project):
    project_dir, name = project
    project_dir.mkdir(parents=True)
    (project_dir / "chroma_data").write_text("precious")
    result = run_deploy(base_data(project_dir, name))
    assert result.returncode != 0
    message = f"@local: chroma_data_dir: {project_dir}/chroma_data is a regular file, not a dir"
    assert result.output.count(message) == 1
    assert "No hosts remaining" not in result.output
    assert (project_dir / "chroma_data").read_text() == "precious"
    # Found before the first change: nothing else was added next to it.
    assert sorted(p.name for p in project_dir.iterdir()) == ["chroma_data"]


def listening(port: int) -> None:
    """Until a program accepts connections on the port (the squatter has bound it)."""
    import socket

    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.05)


def test_port_in_use_is_refused_before_anything_on_the_host_changes(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    with subprocess.Popen(
        [sys.executable, "-m", "http.server", str(data["chroma_port"]), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as squatter:  # fmt: skip
        try:
            listening(data["chroma_port"])
            result = run_deploy(data)
        finally:
            squatter.terminate()
    assert result.returncode != 0
    message = f"@local: chroma_port: port {data['chroma_port']} is in use by another program"
    assert result.output.count(message) == 1
    assert "stop it, or set chroma_port to a free port" in result.output
    assert "No hosts remaining" not in result.output
    assert sh(f"docker ps -aq --filter label=com.docker.compose.project={name}").stdout == ""
    # Found before the first change: no project dir, data dirs, .gitignore or compose file.
    assert not project_dir.exists()


def test_moving_a_running_stack_to_a_port_another_program_holds_changes_nothing(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    converge(data)
    compose_before = (project_dir / "docker-compose.yml").read_text()
    moved = dict(data, chroma_port=free_port())
    with subprocess.Popen(
        [sys.executable, "-m", "http.server", str(moved["chroma_port"]), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as squatter:  # fmt: skip
        try:
            listening(moved["chroma_port"])
            result = run_deploy(moved)
        finally:
            squatter.terminate()
    assert result.returncode != 0
    message = f"@local: chroma_port: port {moved['chroma_port']} is in use by another program"
    assert result.output.count(message) == 1
    # Our own running stack on the old port is no reason to let the new one through.
    assert (project_dir / "docker-compose.yml").read_text() == compose_before
    converge(data)


def test_a_refusal_found_on_the_host_during_the_run_is_said_once(project):
    """The project locked by another run: found on the host, after pyinfra prepared it.

    It fails the host as a downgrade or a named volume beside data does
    (operations/host_failure.py); the user reads one line, as for a refusal
    found before the run, and nothing that pyinfra adds when a host fails.
    """
    project_dir, name = project
    data = base_data(project_dir, name, chroma_lock_timeout=1)
    with project_lock_held(project_dir, f"backup.py run from {name} (pid 4242)"):
        result = run_deploy(data)
    assert result.returncode == 1
    output = click.unstyle(result.output)
    message = (
        f"@local: chroma_lock_timeout: the project is locked by another run for more than 1 s: "
        f"backup.py run from {name} (pid 4242); wait for it to finish, or raise "
        "chroma_lock_timeout"
    )
    assert output.count(message) == 1, output
    assert output.count(f"backup.py run from {name}") == 1, output
    assert [noise for noise in NOISE if noise in output] == [], output
    assert not project_dir.exists()


ENTRY_FILES = ("deploy.py", "backup.py", "restore.py", "prove.py")


@pytest.mark.parametrize("entry", ENTRY_FILES)
def test_without_y_and_no_terminal_each_entry_file_refuses_with_one_line(project, tmp_path, entry):
    """Under cron (stdin not a terminal) pyinfra's own prompt would end in an EOFError
    traceback and a pyinfra-debug.log in the working dir: refused first, nothing changed."""
    project_dir, name = project
    cwd = tmp_path / "cron"
    cwd.mkdir()
    args = [PYINFRA, "@local", str(ROOT / entry)]
    for key, value in base_data(project_dir, name).items():
        args += ["--data", f"{key}={value}"]
    done = subprocess.run(
        args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    line = (
        "--> pyinfra error: @local: stdin is not a terminal and -y was not given: pyinfra "
        "would stop at its prompt (Press enter to execute...); add -y for an unattended run"
    )
    assert output.count(line) == 1, output
    assert not any(noise in output for noise in (*NOISE, "EOFError")), output
    assert list(cwd.iterdir()) == []  # no pyinfra-debug.log
    assert not project_dir.exists()


@pytest.mark.parametrize("entry", ENTRY_FILES)
def test_an_entry_file_run_with_python_says_how_to_run_it(tmp_path, entry):
    done = subprocess.run(
        [sys.executable, str(ROOT / entry)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{entry} is a pyinfra deploy file: run it with `pyinfra -y INVENTORY {entry}` "
        f"(README.md); `python {entry} --version` prints chroma-deploy's version"
    ]


def test_drift_and_rollout_with_stdin_closed_end_in_one_line_not_a_traceback(project, tmp_path):
    project_dir, name = project
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = [("down", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    data = base_data(project_dir, name)
    for command in (
        [sys.executable, str(ROOT / "drift.py"), "@local"],
        [sys.executable, str(ROOT / "rollout.py"), str(inventory)],
    ):
        for key, value in data.items():
            command += ["--data", f"{key}={value}"]
        done = subprocess.run(
            command, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "pyinfra-debug.log").exists()
    assert not project_dir.exists()
