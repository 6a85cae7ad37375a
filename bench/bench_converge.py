"""Time a first converge, a no-op converge and the floor, and count commands per host.

Run: `.venv/bin/python bench/bench_converge.py [--baseline GIT-REV]` (needs
scripts/test-env.sh done). It converges a throwaway project on @local, then a no-op
run, then times one shell command that stats the same files (the floor: what the no-op
run must at least do). Prints seconds, ratios to the floor, and how many commands the
no-op run ran on the host (each command in its -vv log, plus the project lock, which
is taken without being printed).

With ``--baseline``, that revision of the repo (checked out into a temp dir) is
measured in the same run, on a project of its own, its no-op runs alternating with
this tree's: the two columns see the same machine load, and their ratio is the
comparison (times measured in separate runs are not).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def deploy(data: dict[str, object], verbose: bool = False, repo: Path = ROOT) -> tuple[float, str]:
    args = [PYINFRA, "-y", "@local", "deploy.py"] + (["-vv"] if verbose else [])
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout + done.stderr


def commands_in(log: str) -> int:
    """Commands the run ran on the host: each is printed at -vv, the project lock's too."""
    return sum(1 for line in log.splitlines() if "[@local] >>>" in line)


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


def floor(project_dir: str, name: str) -> float:
    """One shell command that reads the same state a no-op run must read."""
    command = (
        f"cd {project_dir} && stat -c '%u %g %a' . chroma_data chroma_db logs */.gitkeep"
        f" && sha256sum docker-compose.yml .gitignore"
        f" && docker inspect --format '{{{{.State.Health.Status}}}}' {name}-chroma-1"
        " && docker compose config --hash chroma"
    )
    start = time.perf_counter()
    subprocess.run(["sh", "-c", command], check=True, capture_output=True)
    return time.perf_counter() - start


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


def measure_against(baseline: str) -> dict[str, object]:
    """No-op converges of this tree and of ``baseline``, alternating, in one run."""
    with (
        checkout(baseline) as old_repo,
        throwaway_project("benchnow", 18990) as (_, now),
        throwaway_project("benchbase", 18991) as (_, base),
    ):
        deploy(now)
        deploy(base, repo=old_repo)
        times: dict[str, list[float]] = {"now": [], "baseline": []}
        for _ in range(5):
            times["now"].append(deploy(now)[0])
            times["baseline"].append(deploy(base, repo=old_repo)[0])
        now_commands = commands_in(deploy(now, verbose=True)[1])
        base_commands = commands_in(deploy(base, verbose=True, repo=old_repo)[1])
    now_s, base_s = statistics.median(times["now"]), statistics.median(times["baseline"])
    return {
        "baseline": baseline,
        "noop_converge_s": {"now": round(now_s, 2), "baseline": round(base_s, 2)},
        "noop_now_over_baseline": round(now_s / base_s, 2),
        "commands_per_host_noop": {"now": now_commands, "baseline": base_commands},
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--baseline"] and len(argv) == 2:
        print(json.dumps(measure_against(argv[1]), indent=2))
        return
    name = "benchconverge"
    with throwaway_project(name, 18990) as (project_dir, data):
        first, _ = deploy(data)
        noops = [deploy(data)[0] for _ in range(5)]
        _, log = deploy(data, verbose=True)
        floors = [floor(project_dir, name) for _ in range(5)]
    noop, base_floor = statistics.median(noops), statistics.median(floors)
    result = {
        "first_converge_s": round(first, 2),
        "noop_converge_s": round(noop, 2),
        "floor_s": round(base_floor, 3),
        "noop_over_floor": round(noop / base_floor, 1),
        "commands_per_host_noop": commands_in(log),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
