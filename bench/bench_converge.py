"""Time a first converge, a no-op converge and the floor, and count commands per host.

Run: `.venv/bin/python bench/bench_converge.py [--baseline GIT-REV]` (needs
scripts/test-env.sh done). It converges a throwaway project on @local, then a no-op
run, then times one shell command that reads the same state (the floor: what the
no-op run must at least do). Prints seconds, ratios to the floor, and how many
commands the no-op run ran on the host (each command in its -vv log, the project
lock's included).

With ``--baseline``, that revision of the repo (checked out into a temp dir) is
measured in the same run, on a project of its own, its no-op runs alternating with
this tree's: the two columns see the same machine load, and their ratio is the
comparison (times measured in separate runs are not).
"""

from __future__ import annotations

import json
import statistics
import sys

from common import checkout, commands_in_vv, deploy, floor, throwaway_project


def commands_in(log: str) -> int:
    return commands_in_vv(log).get("@local", 0)


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
