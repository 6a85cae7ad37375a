"""What the bench scripts share, written once: the repo, a deploy, its commands, the floor.

Each bench script answers one question (bench_converge.py, bench_drift.py,
bench_fleet.py, bench_breakdown.py, rehearsal.py); what two of them need lives
here: the repo's paths, a deploy on @local and the commands it ran, a throwaway
project, the floor (one shell command that reads the state a no-op deploy must
read), another revision checked out beside this tree, and the CPU readings of a
run on this machine (its own, its children's, an sshd's, the Docker engine's).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the scripts import the project's own modules (drift, plumbing)
    sys.path.insert(1, str(ROOT))
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
IMAGE = "chromadb/chroma:1.5.9"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- a deploy and what it ran -------------------------------------------------------------


def deploy(data: dict[str, object], verbose: bool = False, repo: Path = ROOT) -> tuple[float, str]:
    """A deploy on @local with ``data`` as --data (it must succeed): seconds and its output."""
    args = [PYINFRA, "-y", "@local", "deploy.py"] + (["-vv"] if verbose else [])
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout + done.stderr


def timed(args: list[str], cwd: Path = ROOT) -> float:
    """Seconds ``args`` took, whatever it exited with."""
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start


def commands_in_vv(log: str) -> dict[str, int]:
    """Commands per host in a ``-vv`` log: each is printed, the project lock's too."""
    printed = Counter(re.findall(r"^\[([^\]\s]+)\] >>> ", log, flags=re.MULTILINE))
    return dict(sorted(printed.items()))


def changed_hosts(output: str) -> list[str]:
    """Hosts on which some operation reported a change (``[host] Success``)."""
    return sorted(set(re.findall(r"^\s*\[([^\]\s]+)\] Success\s*$", output, flags=re.MULTILINE)))


# -- projects, revisions, the floor -----------------------------------------------------------


@contextmanager
def throwaway_project(name: str, port: int) -> Iterator[tuple[str, dict[str, object]]]:
    """A project dir in a temp dir and its deploy data; its stack is taken down after."""
    with tempfile.TemporaryDirectory(prefix="chroma-bench-") as base:
        project_dir = f"{base}/stack"
        data = {"chroma_project_dir": project_dir, "chroma_compose_project": name,
                "chroma_port": port}  # fmt: skip
        try:
            yield project_dir, data
        finally:
            subprocess.run(["docker", "compose", "-f", f"{project_dir}/docker-compose.yml",
                            "down", "-t", "3"], capture_output=True)  # fmt: skip


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """``rev`` of this repo in a temp dir, sharing this tree's virtualenv."""
    with tempfile.TemporaryDirectory(prefix="chroma-bench-rev-") as base:
        tree = Path(base) / "repo"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)  # fmt: skip
        (tree / ".venv").symlink_to(ROOT / ".venv")
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)  # fmt: skip


def floor_command(project_dir: str, compose_project: str) -> str:
    """One shell command that reads the state a no-op converge must read (issue 16's read)."""
    return (
        f"cd {project_dir} && stat -c '%u %g %a' . chroma_data chroma_db logs */.gitkeep"
        " && sha256sum docker-compose.yml .gitignore"
        f" && docker image inspect --format '{{{{.Id}}}}' {IMAGE}"
        f" && docker inspect --format '{{{{.State.Health.Status}}}} {{{{.Image}}}}'"
        f" {compose_project}-chroma-1"
        " && docker compose config --hash chroma"
    )


def floor(project_dir: str, compose_project: str) -> float:
    """Seconds :func:`floor_command` takes on this machine."""
    start = time.perf_counter()
    subprocess.run(["sh", "-c", floor_command(project_dir, compose_project)], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


# -- CPU readings ------------------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds this machine spent on anything but idle and iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def control_cpu_s() -> float:
    """user+sys of this process's waited-for children: the pyinfra (or drift.py) runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: index 0 is field 3 of proc(5)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def reaped_cpu_s(pid: int) -> float:
    """cutime+cstime of an sshd listener: every session it ran and reaped, with their children."""
    fields = _stat_fields(pid)
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def wait_sessions_closed(pids: list[int], timeout: float = 10) -> None:
    """Until no listener has a session left (each connection's sshd has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(not Path(f"/proc/{pid}/task/{pid}/children").read_text().strip() for pid in pids):
            return
        time.sleep(0.02)


def engine_pids() -> list[int]:
    """This machine's dockerd and containerd (an engine in another pid namespace is not it)."""
    own = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in ("dockerd", "containerd") and os.readlink(entry / "ns" / "pid") == own:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class EngineRestarted(Exception):
    """The engine's processes changed: someone restarted Docker on this shared machine."""


class Engine:
    """The CPU of this machine's engine; notices when it was restarted meanwhile."""

    def __init__(self) -> None:
        self.pids = engine_pids()

    def cpu_s(self) -> float:
        """utime+stime of the engine's processes: what the docker API calls cost it."""
        total = 0
        for pid in self.pids:
            try:
                fields = _stat_fields(pid)
            except OSError:
                self.wait_until_it_answers()
                raise EngineRestarted from None
            total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def wait_until_it_answers(self) -> None:
        wait_for_engine()
        time.sleep(5)  # the stacks' restart policy brings them back
        self.pids = engine_pids()


def wait_for_engine(timeout: float = 120, then: str = "") -> None:
    """Until Docker answers: someone may be restarting the shared engine."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the Docker engine does not answer{then}")
        time.sleep(1)


def load_average() -> list[float]:
    return [round(load, 1) for load in os.getloadavg()]
