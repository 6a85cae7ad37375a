"""The scheduled backup on a real host: root's crontab, a real cron, drift and repair.

Two projects on this machine (@local) share root's crontab, as two projects on one
server do. Each test leaves both converged for the next. The repository is a local
path (what the schedule needs of it is only that it is set); the off-host backup
itself is files/chroma_offsite.py's (its own tests). The entry is run here exactly as
cron runs it (cron(8): /bin/sh -c with SHELL, PATH=/usr/bin:/bin, HOME, LOGNAME only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import time
import uuid
from pathlib import Path

import pytest
from conftest import (
    base_data,
    compose_down,
    converge,
    read_fact,
    remove_cron_entries,
    run_deploy,
    run_drift,
    sh,
)

from declaration.offsite import BACKUP_PROGRAM as PROGRAM
from declaration.offsite import config_path
from declaration.schedule import LOG_DIR, auto_minute, cron_name, marker
from facts.cron import SUPERVISOR_PATH, Cron
from operations.backup_schedule import cron_read
from plumbing.host_tools import TOOL_FILES, TOOLS_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CRON_ENV = ["env", "-i", "SHELL=/bin/sh", "PATH=/usr/bin:/bin", "HOME=/root", "LOGNAME=root"]


def crontab() -> list[str]:
    return sh("crontab -l -u root 2>/dev/null", check=False).stdout.splitlines()


def write_crontab(lines: list[str]) -> None:
    sh("crontab -u root - <<'EOF'\n" + "".join(f"{line}\n" for line in lines) + "EOF")


def entry(project_dir: Path) -> list[str]:
    """The project's lines: its marker and the entry below it, as they stand."""
    lines = [line.strip() for line in crontab()]
    found = [
        (index, line)
        for index, line in enumerate(lines)
        if f"--config {config_path(str(project_dir))} " in line
    ]
    assert len(found) == 1, f"not exactly one line for {project_dir}: {lines}"
    index, line = found[0]
    assert lines[index - 1] == marker(cron_name(str(project_dir))), lines
    assert lines.count(lines[index - 1]) == 1, lines
    return [lines[index - 1], line]


def items(data: dict) -> tuple[int, list[dict]]:
    result = run_drift(data, "--json")
    document = json.loads(result.stdout)
    return result.returncode, [
        item for host in document["hosts"].values() for item in host["items"]
    ]


def cron_pids() -> list[int]:
    return read_fact(Cron, **cron_read())["pids"]


def supervisor_pids() -> list[int]:
    """The cron supervisor the deploy started (files/cron-supervisor.sh's loop), by pid."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[:2] == [b"/bin/sh", SUPERVISOR_PATH.encode()]:
                pids.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def kill(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory):
    """Two converged projects with a repository: A at a given time, B at 'auto'."""
    cron_before = cron_pids()
    made = []
    for schedule in ("17 4 * * 2", "auto"):
        name = f"cdsched{uuid.uuid4().hex[:6]}"
        base = tmp_path_factory.mktemp(name)
        password = base / "restic-password"
        password.write_text("a password the schedule never reads\n")
        data = base_data(
            base / "stack",
            name,
            chroma_backup_repository=str(base / "repository"),
            chroma_backup_password_file=str(password),
            chroma_backup_schedule=schedule,
        )
        made.append(data)
    try:
        for data in made:
            converge(data)
        yield made
    finally:
        for data in made:
            project_dir = Path(data["chroma_project_dir"])
            if (project_dir / "docker-compose.yml").exists():
                compose_down(project_dir)
            remove_cron_entries(project_dir)
        if not cron_before:  # this machine had no cron: stop the one the deploy started
            kill(supervisor_pids(), signal.SIGTERM)
            kill(cron_pids(), signal.SIGTERM)


def test_each_project_has_its_own_line_and_off_removes_only_its_own(projects):
    a, b = projects
    a_dir, b_dir = Path(a["chroma_project_dir"]), Path(b["chroma_project_dir"])
    program = f"{TOOLS_DIR}/{PROGRAM}"
    for data, fields in ((a, "17 4 * * 2"), (b, f"{auto_minute('@local')} 3 * * *")):
        line = entry(Path(data["chroma_project_dir"]))[1]
        assert line.startswith(f"{fields} PATH="), line
        assert f" python3 {program} backup --config " in line
        assert line.endswith(f">>{LOG_DIR}/{data['chroma_compose_project']}-backup.log 2>&1")
    assert cron_pids(), "no cron runs the entries"
    b_before = entry(b_dir)

    off = run_deploy({**a, "chroma_backup_schedule": "off"})
    assert off.returncode == 0, off.output
    assert [line for line in crontab() if str(a_dir) in line] == []  # marker gone too
    assert entry(b_dir) == b_before

    again = run_deploy(a)  # the fixture's converge showed a second run changes nothing
    assert again.returncode == 0, again.output
    assert again.changed_operations == [f"Scheduled backup of {a_dir} in root's crontab"]
    assert entry(a_dir)[1].startswith("17 4 * * 2 ")
    assert entry(b_dir) == b_before


def test_the_entry_runs_in_crons_environment(projects):
    """The deployed line, run exactly as cron runs it, finds python3, docker and restic.

    Once files/chroma_offsite.py is one of the host tools (#23's backup program), the
    line runs a real backup of B to its local repository: exit 0 only if it found docker
    and restic. Until then a stand-in at its path prints where it found each.
    """
    b = projects[1]
    command = entry(Path(b["chroma_project_dir"]))[1].split(None, 5)[5]
    log = Path(LOG_DIR) / f"{b['chroma_compose_project']}-backup.log"
    cron_run = f"{' '.join(CRON_ENV)} /bin/sh -c {shlex.quote(command)}"
    if PROGRAM in TOOL_FILES:
        run = sh(cron_run, check=False)
        assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), log.read_text()
        return
    program = Path(TOOLS_DIR) / PROGRAM
    program.write_text(
        "import shutil, sys\n"
        "print('args', *sys.argv[1:])\n"
        "for name in ('python3', 'docker', 'restic'): print(name, shutil.which(name))\n"
    )
    try:
        run = sh(cron_run, check=False)
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
        found = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    finally:
        program.unlink()
        log.unlink(missing_ok=True)
    assert found["args"] == f"backup --config {config_path(b['chroma_project_dir'])}"
    assert all(found[name] != "None" for name in ("python3", "docker", "restic")), found


def test_an_entry_edited_or_removed_by_hand_is_drift_and_a_deploy_repairs_it(projects):
    a, b = projects
    a_dir, b_dir = Path(a["chroma_project_dir"]), Path(b["chroma_project_dir"])
    assert items(b) == (0, [])
    declared_b, a_before = entry(b_dir), entry(a_dir)

    lines = crontab()
    moved = lines[lines.index(declared_b[1])] = "59" + declared_b[1][declared_b[1].index(" ") :]
    write_crontab(lines)
    code, found = items(b)
    assert code == 2
    assert [(i["kind"], i["expected"], i["actual"]) for i in found] == [
        ("backup_schedule", declared_b[1], f"{declared_b[0]} | {moved}")
    ]
    assert run_deploy(b).returncode == 0
    assert entry(b_dir) == declared_b

    # The line deleted, its marker left: the marker now sits above A's entry.
    lines = crontab()
    del lines[lines.index(declared_b[1])]
    lines = [line for line in lines if line.strip()]
    lines.remove(declared_b[0])
    lines.insert(lines.index(a_before[0]), declared_b[0])
    write_crontab(lines)
    code, found = items(b)
    assert (code, [i["actual"] for i in found]) == (2, [declared_b[0]])
    assert run_deploy(b).returncode == 0
    assert entry(b_dir) == declared_b
    assert entry(a_dir) == a_before, "B's repair edited A's line"
    assert items(b) == (0, [])


def test_cron_killed_is_drift_and_a_deploy_starts_it_again(projects):
    b = projects[1]
    # The supervisor restarts a cron that exits; killed with it, nothing does.
    kill(supervisor_pids(), signal.SIGKILL)
    kill(cron_pids(), signal.SIGKILL)
    for _ in range(20):
        if not cron_pids():
            break
        time.sleep(0.25)
    code, found = items(b)
    assert (code, found) == (
        2,
        [{"kind": "backup_schedule", "resource": "cron", "expected": "running",
          "actual": "not running"}],
    )  # fmt: skip
    repaired = run_deploy(b)
    assert repaired.returncode == 0, repaired.output
    assert "cron running (it runs the scheduled backups)" in repaired.changed_operations
    assert cron_pids()
    assert items(b) == (0, [])
    # Now supervised: a cron that dies is started again without a deploy.
    assert supervisor_pids()
    kill(cron_pids(), signal.SIGKILL)
    time.sleep(1)
    for _ in range(40):
        if cron_pids():
            break
        time.sleep(0.25)
    assert cron_pids(), "the supervisor did not start cron again"


CRON_ONLY = """\
import sys

sys.path.insert(0, {root!r})
from operations.backup_schedule import cron_daemon

cron_daemon(name="cron running")
"""


def test_a_bare_debian_host_gets_cron_installed_and_kept_running(tmp_path: Path):
    """Debian without cron and without a service manager (an SSH test host's image):
    apt installs cron, the supervisor starts it and starts it again when it dies."""
    from harness.ssh_hosts import _image_tag, _mirror_hosts, build_images

    build_images()
    name = f"cdcronhost{uuid.uuid4().hex[:6]}"
    add_hosts = " ".join(f"--add-host {entry}" for entry in _mirror_hosts())
    sh(f"docker run -d --name {name} {add_hosts} --entrypoint sleep {_image_tag('bare')} 1d")
    deploy_file = tmp_path / "cron_only.py"
    deploy_file.write_text(CRON_ONLY.format(root=str(Path(__file__).resolve().parents[2])))

    def in_host(command: str) -> str:
        return sh(f"docker exec {name} sh -c {shlex.quote(command)}", check=False).stdout

    def host_cron() -> list[int]:
        return read_fact_in(name)["pids"]

    try:
        assert in_host("command -v cron crontab") == ""
        converge({}, inventory=f"@docker/{name}", deploy_file=str(deploy_file))
        first = host_cron()
        assert first and in_host("command -v crontab").strip() == "/usr/bin/crontab"
        assert in_host(f"ls {SUPERVISOR_PATH}").strip() == SUPERVISOR_PATH
        in_host(f"kill -KILL {first[0]}")
        for _ in range(40):
            if host_cron() and host_cron() != first:
                break
            time.sleep(0.25)
        assert host_cron() and host_cron() != first, "cron not started again"
    finally:
        sh(f"docker rm -f {name}", check=False)


def read_fact_in(container: str) -> dict:
    """The Cron fact read inside a container (its own pid namespace and crontab)."""
    fact = Cron()
    done = sh(
        f"docker exec {container} sh -c {shlex.quote(fact.command(**cron_read()))}", check=False
    )
    return fact.process(done.stdout.splitlines())
