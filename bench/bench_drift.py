"""Time a drift check against a no-op deploy and the floor, in one run; count commands.

Run: `.venv/bin/python bench/bench_drift.py` (needs scripts/test-env.sh done). On one
converged @local project it times, 5 times each (median): `drift.py @local`,
a no-op `pyinfra @local deploy.py`, and one shell command that reads the same
state (the floor). Prints the ratios and the commands each ran on the host.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_converge import deploy, floor, throwaway_project  # noqa: E402


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def drift_commands(data: dict[str, object]) -> int:
    """Commands drift.py runs on the host: count the local connector's shell calls."""
    from pyinfra.connectors.local import LocalConnector

    import drift

    calls = []
    original = LocalConnector.run_shell_command

    def counting(self, command, *args, **kwargs):
        calls.append(str(command))
        return original(self, command, *args, **kwargs)

    LocalConnector.run_shell_command = counting  # type: ignore[method-assign]
    argv = ["@local"] + [f"--data={key}={value}" for key, value in data.items()]
    code = drift.main(argv)
    assert code == 0, f"drift.py exited {code}: the benchmark needs a converged host"
    return len(calls)


def main() -> None:
    name = "benchdrift"
    with throwaway_project(name, 18991) as (project_dir, data):
        deploy(data)
        flags = [f"--data={key}={value}" for key, value in data.items()]
        drift_args = [sys.executable, "drift.py", "@local", *flags]
        deploy_args = [str(Path(sys.executable).with_name("pyinfra")), "-y", "@local",
                       "deploy.py", *flags]  # fmt: skip
        drifts, noops, floors = [], [], []
        for _ in range(5):  # interleaved, so load affects all three alike
            drifts.append(timed(drift_args))
            noops.append(timed(deploy_args))
            floors.append(floor(project_dir, name))
        _, log = deploy(data, verbose=True)
        commands = drift_commands(data)
    drift_s, noop_s, floor_s = (statistics.median(x) for x in (drifts, noops, floors))
    print(json.dumps({
        "drift_check_s": round(drift_s, 3),
        "noop_deploy_s": round(noop_s, 3),
        "floor_s": round(floor_s, 3),
        "drift_over_noop_deploy": round(drift_s / noop_s, 2),
        "drift_over_floor": round(drift_s / floor_s, 1),
        "noop_deploy_over_floor": round(noop_s / floor_s, 1),
        "commands_per_host_drift": commands,
        "commands_per_host_noop_deploy": sum(1 for ln in log.splitlines() if "[@local] >>>" in ln),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
