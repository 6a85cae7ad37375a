"""Where a no-op deploy's CPU goes on one host: each part of it run alone over SSH.

Run, as root, after scripts/test-env.sh (Docker, the Chroma image, openssh-server):

    .venv/bin/python bench/bench_breakdown.py [--runs 5]

One loopback SSH host (bench/loopback_hosts.py), converged once; then the host CPU
(what its sshd ran and reaped) of each fact of the deploy's batched read, of the
batch itself, of the project lock and of the costliest docker and compose
commands, each run alone ``--runs`` times. Prints one JSON document, then removes
what it made (``bench/bench_fleet.py --cleanup`` after a killed run).
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import subprocess
import sys
import time
from typing import Any

from common import IMAGE, PYINFRA, ROOT, load_average, reaped_cpu_s, wait_sessions_closed
from loopback_hosts import LoopbackFleet, stop_on_sigterm
from pyinfra.api import StringCommand

from declaration.settings import load_settings
from facts.batch import Batch
from plumbing import preflight
from plumbing.lock import lock_command


def measure_breakdown(runs: int) -> dict[str, Any]:
    """CPU on the host of each part of a no-op run, each run alone over SSH on one host.

    The parts are the facts of the deploy's one batched read (the same commands,
    built by facts/batch.py from plumbing.preflight.deploy_reads), the batch
    itself, the project lock, and the docker and compose commands that cost the
    most. Each is the median of ``runs``, less an ssh ``true`` (the session itself).
    """
    fleet = LoopbackFleet(1)
    test_host = fleet.hosts[0]
    try:
        fleet.start()
        inventory = fleet.inventory(1)
        start = time.perf_counter()
        subprocess.run([PYINFRA, "-y", str(inventory), "deploy.py"], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        first_converge_s = time.perf_counter() - start
        shared = runpy.run_path(str(ROOT / "group_data" / "all.py"))
        data = {k: v for k, v in shared.items() if k.startswith("chroma_")}
        data.update(
            {k: v for k, v in fleet.host_data(test_host).items() if k.startswith("chroma_")}
        )
        settings = load_settings(data)
        reads = preflight.deploy_reads(settings, None)

        def raw(command: Any) -> str:
            return command.get_raw_value() if isinstance(command, StringCommand) else str(command)

        project = str(test_host.project_dir)
        compose = f"docker compose -f {project}/docker-compose.yml --project-directory {project}"
        commands: dict[str, str] = {"ssh true (the session alone)": "true"}
        commands["the batch (every fact below, one command)"] = raw(Batch().command(parts=reads))
        commands["the project lock (files/chroma-lock.sh)"] = lock_command(
            project, settings.lock_timeout, "bench"
        )
        for fact_class, kwargs in reads:
            commands[f"fact {fact_class.__name__}"] = raw(fact_class().command(**kwargs))
        commands.update(
            {
                "  docker version": "docker version --format '{{.Server.Version}}'",
                "  docker compose version": "docker compose version --short",
                "  dockerd --version": "/usr/sbin/dockerd --version",
                "  docker image inspect": f"docker image inspect --format '{{{{.Id}}}}' {IMAGE}",
                "  docker ps": "docker ps -q",
                "  compose config --hash": f"{compose} config --hash '*'",
                "  compose up --dry-run": f"{compose} up --detach --dry-run",
            }
        )
        pid = fleet.sshd_pids(1)[0]
        cost: dict[str, float] = {}
        for label, command in commands.items():
            samples = []
            for _ in range(runs):
                before = reaped_cpu_s(pid)
                subprocess.run([*fleet.ssh_args(test_host), command], capture_output=True,
                               check=False)  # fmt: skip
                wait_sessions_closed([pid])
                samples.append(reaped_cpu_s(pid) - before)
            cost[label] = statistics.median(samples)
        session = cost["ssh true (the session alone)"]
        return {
            "host_cpu_s_less_the_session": {
                label: round(max(value - session, 0.0), 3) for label, value in cost.items()
            },
            "session_s": round(session, 3),
            "runs": runs,
            "first_converge_s": round(first_converge_s, 1),
            "load_at_end": load_average(),
        }
    finally:
        fleet.remove()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each part (the median)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    print(json.dumps(measure_breakdown(args.runs), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
