"""Time a first converge, a no-op converge and the floor, and count commands per host.

Run: `.venv/bin/python bench/bench_converge.py` (needs scripts/test-env.sh done). It
converges a throwaway project on @local, then a no-op run, then times one
shell command that stats the same files (the floor: what the no-op run must at
least do). Prints seconds, ratios to the floor, and how many commands pyinfra
ran on the host in the no-op run (from its -vv log of each command).
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


def deploy(data: dict[str, object], verbose: bool = False) -> tuple[float, str]:
    args = [PYINFRA, "-y", "@local", "deploy.py"] + (["-vv"] if verbose else [])
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout + done.stderr


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


def main() -> None:
    name = "benchconverge"
    with throwaway_project(name, 18990) as (project_dir, data):
        first, _ = deploy(data)
        noops = [deploy(data)[0] for _ in range(5)]
        _, log = deploy(data, verbose=True)
        floors = [floor(project_dir, name) for _ in range(5)]
    commands = sum(1 for line in log.splitlines() if "[@local] >>>" in line)
    noop, base_floor = statistics.median(noops), statistics.median(floors)
    result = {
        "first_converge_s": round(first, 2),
        "noop_converge_s": round(noop, 2),
        "floor_s": round(base_floor, 3),
        "noop_over_floor": round(noop / base_floor, 1),
        "commands_per_host_noop": commands,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
