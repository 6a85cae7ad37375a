"""Time a drift check against a no-op deploy and the floor, in one run; count commands.

Run: `.venv/bin/python bench/bench_drift.py` (needs scripts/test-env.sh done). On one
converged @local project it times, 5 times each (median): `drift.py @local`,
a no-op `pyinfra @local deploy.py`, and one shell command that reads the same
state (the floor). Prints the ratios and the commands each ran on the host.
"""

from __future__ import annotations

import json
import statistics
import sys

from common import PYINFRA, commands_in_vv, deploy, floor, throwaway_project, timed


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
        deploy_args = [PYINFRA, "-y", "@local", "deploy.py", *flags]
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
        "commands_per_host_noop_deploy": commands_in_vv(log).get("@local", 0),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
