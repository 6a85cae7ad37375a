"""What a no-op converge and a drift check cost as the fleet grows: 1, 10 and 30 hosts.

Run, as root, after scripts/test-env.sh (Docker, the Chroma image, openssh-server):

    .venv/bin/python bench/bench_fleet.py [--sizes 1,10,30] [--runs 5] [--parallel P]
                                          [--baseline GIT-REV]
    .venv/bin/python bench/bench_fleet.py --cleanup  # what a killed bench left

It starts max(sizes) lightweight SSH hosts on this machine's loopback
(bench/loopback_hosts.py: one sshd each, root with a generated key, an empty
.bashrc, all on this machine's one Docker engine, each its own project dir and
port). A first converge of all of them in one run (the image is local: nothing
is shipped), then ``--runs`` rounds; each round starts with a quiet window (what
the machine and the engine do while the bench runs nothing: other people's
work, the stacks' healthchecks) and measures, for every size N (the first N
hosts of one inventory), alternating the order between rounds so a change in
load falls on every size alike:

- a no-op ``pyinfra -y INVENTORY deploy.py``: wall time; the pyinfra process's
  CPU (user+sys, from getrusage(RUSAGE_CHILDREN) deltas); the whole machine's
  CPU per host (/proc/stat), raw and net of the quiet rate; the host side per
  host measured directly: everything sshd ran for the run (each listener's
  reaped children: sessions, shells, docker and compose CLIs) plus the engine's
  CPU (dockerd, containerd) net of its quiet rate; and, as the issue derived
  it, (machine net - control) / N, from the runs that left the machine a core
  to spare (on a saturated machine a run displaces other work instead);
- ``python drift.py INVENTORY``: the same;
- the floor: one ``ssh`` command per host, all at once, reading the same state
  (floor_command: the read issue 16 proposed), its wall time and host CPU;
- the pyinfra floor: ``bench/pyinfra_floor.py`` (one connection, one ``true``, one
  operation that changes nothing), measured as a no-op: what pyinfra and sshd cost
  before chroma-deploy reads or declares anything. Each target is printed with its
  floors: one below its floor cannot be met by what chroma-deploy reads or skips.

Commands per host: from a ``-vv`` run (``[host] >>>`` lines; the project lock
is printed too), and, for every run, from sshd's own log
(one ``Starting session`` line per command, the lock included). Medians over the
rounds. A run that fails or changes something is kept in ``failed_runs`` and
repeated (someone restarting the shared engine is the usual cause). Prints one
JSON document on stdout and a table on stderr, then removes everything it made
(sshd processes, ``docker compose down`` of each bench project, never ``-v``; its
networks, project dirs and lock dirs).

``--baseline GIT-REV`` then measures that revision the same way on the same
hosts (its first converge rewrites them), for a before/after in one run. Where
one host's CPU goes, part by part: bench/bench_breakdown.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    PYINFRA,
    ROOT,
    Engine,
    EngineRestarted,
    changed_hosts,
    checkout,
    commands_in_vv,
    control_cpu_s,
    floor_command,
    load_average,
    machine_busy_s,
    reaped_cpu_s,
    wait_sessions_closed,
)
from loopback_hosts import (
    LoopbackFleet,
    LoopbackHost,
    default_pool_use,
    engine_subnets,
    remove_leftovers,
    stop_on_sigterm,
    take_bench_lock,
)

QUIET_WINDOW_S = 3.0
# Busier than this share of its cores during a run, the machine's CPU delta is not the run's.
SATURATED_SHARE = 0.9
# The targets (#16 part 3).
MAX_NOOP_COMMANDS, MAX_DRIFT_COMMANDS = 4, 3
MAX_HOST_CPU_PER_HOST_S, MAX_CONTROL_CPU_PER_ADDED_HOST_S, MAX_WALL_RATIO = 0.12, 0.05, 3.0


# -- what a run costs ----------------------------------------------------------------


def container_ids(names: list[str]) -> list[str]:
    done = subprocess.run(["docker", "inspect", "--format", "{{.Id}}", *names],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.split()


def containers_cpu_s(ids: list[str]) -> float | None:
    """CPU of the containers' own cgroups (Chroma, and the healthchecks run inside them)."""
    total = 0.0
    for container in ids:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage")
        v2 = [Path(f"/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat"),
              Path(f"/sys/fs/cgroup/docker/{container}/cpu.stat")]  # fmt: skip
        if v1.exists():
            total += int(v1.read_text()) / 1e9
            continue
        stat = next((path for path in v2 if path.exists()), None)
        if stat is None:
            return None
        usage = dict(line.split() for line in stat.read_text().splitlines())
        total += int(usage["usage_usec"]) / 1e6
    return total


@dataclass(frozen=True)
class Quiet:
    """Cores kept busy while the bench runs nothing: other people's work, the healthchecks."""

    machine_cores: float
    engine_cores: float
    stacks_cores: float | None = None  # the bench's own containers, when asked


NOTHING_QUIET = Quiet(0.0, 0.0)


def quiet_window(
    engine: Engine, stacks: list[str] | None = None, seconds: float = QUIET_WINDOW_S
) -> Quiet:
    """The busy rates while the bench runs nothing (again if the engine restarted meanwhile)."""
    stacks = stacks or []
    while True:
        try:
            machine_before, engine_before = machine_busy_s(), engine.cpu_s()
            stacks_before = containers_cpu_s(stacks)
            time.sleep(seconds)
            stacks_after = containers_cpu_s(stacks)
            engine_after = engine.cpu_s()
        except EngineRestarted:
            continue
        stacks_used = (
            None if stacks_before is None or stacks_after is None or not stacks
            else stacks_after - stacks_before
        )  # fmt: skip
        return Quiet(
            (machine_busy_s() - machine_before) / seconds,
            (engine_after - engine_before) / seconds,
            None if stacks_used is None or stacks_used < 0 else stacks_used / seconds,
        )


class RunFailed(Exception):
    """A measured run exited non-zero; ``output`` is what it printed."""

    def __init__(self, output: str) -> None:
        super().__init__(output[-4000:])
        self.output = output


def error_lines(output: str) -> list[str]:
    """The lines of a failed or changed run that say what happened, for the report."""
    said = [line.strip() for line in output.splitlines()
            if "error" in line.lower() or re.search(r"\] Success\s*$", line)]  # fmt: skip
    return said[-3:]


@dataclass
class Sample:
    """One timed run of a command against the first ``count`` hosts."""

    count: int
    wall_s: float
    control_cpu_s: float
    machine_cpu_s: float
    engine_cpu_s: float
    window_s: float  # wall plus the sessions' teardown: what the machine's CPU covers
    session_cpu_s: float  # summed over the hosts
    commands: dict[str, int]  # sshd's "Starting session" lines per host
    connections: dict[str, int]
    quiet: Quiet  # the round's quiet rates, for the net figures

    @property
    def saturated(self) -> bool:
        """The machine had no core to spare during the run: its CPU delta is not the run's."""
        return self.machine_cpu_s / self.window_s > SATURATED_SHARE * (os.cpu_count() or 1)

    @property
    def machine_net_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.quiet.machine_cores * self.window_s)

    @property
    def engine_net_cpu_s(self) -> float:
        return max(0.0, self.engine_cpu_s - self.quiet.engine_cores * self.window_s)


def run_measured(
    args: list[str],
    fleet: LoopbackFleet,
    count: int,
    quiet: Quiet,
    engine: Engine,
    tree: Path = ROOT,
) -> tuple[Sample, str]:
    """Run ``args`` (it must exit 0) and measure it; returns the sample and its output."""
    hosts = fleet.hosts[:count]
    pids = fleet.sshd_pids(count)
    offsets = {h.name: h.log.stat().st_size for h in hosts}
    session_before = sum(reaped_cpu_s(pid) for pid in pids)
    control_before, machine_before = control_cpu_s(), machine_busy_s()
    engine_before = engine.cpu_s()
    start = time.perf_counter()
    done = subprocess.run(args, cwd=tree, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    control = control_cpu_s() - control_before
    wait_sessions_closed(pids)
    window = time.perf_counter() - start
    machine = machine_busy_s() - machine_before
    engine_used = engine.cpu_s() - engine_before
    session = sum(reaped_cpu_s(pid) for pid in pids) - session_before
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RunFailed(output)
    commands, connections = {}, {}
    for test_host in hosts:
        with test_host.log.open() as log:
            log.seek(offsets[test_host.name])
            text = log.read()
        commands[test_host.name] = text.count("Starting session:")
        connections[test_host.name] = text.count("Accepted publickey")
    sample = Sample(count, wall, control, machine, engine_used, window, session, commands,
                    connections, quiet)  # fmt: skip
    return sample, output


def floor_run(
    fleet: LoopbackFleet, count: int, engine: Engine, quiet: Quiet
) -> tuple[float, float]:
    """One ssh command per host (a new connection each), ``count`` hosts at once.

    Returns the wall time and the host side per host: what sshd ran for it and the
    engine's CPU net of its quiet rate, measured as for a deploy.
    """
    pids = fleet.sshd_pids(count)
    session_before, engine_before = sum(reaped_cpu_s(pid) for pid in pids), engine.cpu_s()
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            [*fleet.ssh_args(h), floor_command(str(h.project_dir), h.compose_project)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for h in fleet.hosts[:count]
    ]
    for process in running:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"bench_fleet: the floor command failed: {stderr.decode()}")
    wall = time.perf_counter() - start
    wait_sessions_closed(pids)
    window = time.perf_counter() - start
    session = sum(reaped_cpu_s(pid) for pid in pids) - session_before
    engine_net = max(0.0, engine.cpu_s() - engine_before - quiet.engine_cores * window)
    return wall, (session + engine_net) / count


def chroma_memory_mib(hosts: list[LoopbackHost]) -> float | None:
    """Median memory of the bench's Chroma containers (docker stats), MiB."""
    names = [f"{h.compose_project}-chroma-1" for h in hosts]
    done = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *names],
                          capture_output=True, text=True, check=False)  # fmt: skip
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    sizes = []
    for line in done.stdout.splitlines():
        match = re.match(r"([\d.]+)([KMG]?i?B)", line.strip())
        if match and match.group(2) in units:
            sizes.append(float(match.group(1)) * units[match.group(2)])
    return round(statistics.median(sizes), 1) if sizes else None


# -- the loopback fleet ----------------------------------------------------------------


@dataclass
class SizeResults:
    """Every sample of one fleet size."""

    count: int
    deploys: list[Sample] = field(default_factory=list)
    drifts: list[Sample] = field(default_factory=list)
    floors: list[tuple[float, float]] = field(default_factory=list)  # wall, host side per host
    pyinfra_floors: list[Sample] = field(default_factory=list)  # bench/pyinfra_floor.py
    vv_commands: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def median(values: list[float], digits: int = 3) -> float | None:
            return round(statistics.median(values), digits) if values else None

        n = self.count
        noop, drift = self.deploys, self.drifts
        with_headroom = [s for s in noop if not s.saturated]
        return {
            "noop_wall_s": median([s.wall_s for s in noop], 2),
            "noop_control_cpu_s": median([s.control_cpu_s for s in noop], 2),
            "noop_machine_cpu_per_host_s": median([s.machine_cpu_s / n for s in noop]),
            "noop_machine_net_cpu_per_host_s": median([s.machine_net_cpu_s / n for s in noop]),
            # The derivation: what the machine spent, net of quiet, less pyinfra's
            # own; only from runs that left the machine headroom (else it displaced others).
            "noop_host_side_from_machine_per_host_s": median(
                [max(0.0, s.machine_net_cpu_s - s.control_cpu_s) / n for s in with_headroom]
            ),
            "noop_runs_that_saturated_the_machine": len(noop) - len(with_headroom),
            # Measured directly: every process sshd ran for the run, and the engine's share.
            "noop_ssh_session_cpu_per_host_s": median([s.session_cpu_s / n for s in noop]),
            "noop_engine_net_cpu_per_host_s": median([s.engine_net_cpu_s / n for s in noop]),
            "noop_host_side_cpu_per_host_s": median(
                [(s.session_cpu_s + s.engine_net_cpu_s) / n for s in noop]
            ),
            "noop_commands_per_host_vv": max(self.vv_commands.values(), default=0),
            "noop_commands_per_host_sshd": max(max(s.commands.values()) for s in noop),
            "noop_connections_per_host": max(max(s.connections.values()) for s in noop),
            "drift_wall_s": median([s.wall_s for s in drift], 2),
            "drift_control_cpu_s": median([s.control_cpu_s for s in drift], 2),
            "drift_host_side_cpu_per_host_s": median(
                [(s.session_cpu_s + s.engine_net_cpu_s) / n for s in drift]
            ),
            "drift_commands_per_host_sshd": max(max(s.commands.values()) for s in drift),
            "floor_wall_s": median([wall for wall, _ in self.floors], 2),
            "floor_host_side_cpu_per_host_s": median([host for _, host in self.floors]),
            "pyinfra_floor_wall_s": median([s.wall_s for s in self.pyinfra_floors], 2),
            "pyinfra_floor_control_cpu_s": median(
                [s.control_cpu_s for s in self.pyinfra_floors], 2
            ),
            "pyinfra_floor_host_side_cpu_per_host_s": median(
                [(s.session_cpu_s + s.engine_net_cpu_s) / n for s in self.pyinfra_floors]
            ),
            "noop_wall_runs_s": [round(s.wall_s, 2) for s in noop],
        }


def with_ratios(summaries: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each size's summary with its ratios to the smallest size."""
    smallest = min(summaries)
    one = summaries[smallest]
    for n, summary in summaries.items():
        for kind in ("noop", "drift", "floor", "pyinfra_floor"):
            ratio = summary[f"{kind}_wall_s"] / one[f"{kind}_wall_s"]
            summary[f"{kind}_wall_vs_smallest"] = round(ratio, 2)
        if n > smallest:
            for kind in ("noop", "pyinfra_floor"):
                added = summary[f"{kind}_control_cpu_s"] - one[f"{kind}_control_cpu_s"]
                summary[f"{kind}_control_cpu_per_added_host_s"] = round(added / (n - smallest), 3)
    return {str(n): summary for n, summary in sorted(summaries.items())}


class Bench:
    """The loopback fleet measured with one tree of the repo, then maybe another."""

    def __init__(self, fleet: LoopbackFleet, sizes: list[int], runs: int,
                 parallel: int | None, engine: Engine) -> None:  # fmt: skip
        self.fleet, self.sizes, self.runs, self.engine = fleet, sizes, runs, engine
        self.extra = ["--parallel", str(parallel)] if parallel else []
        self.inventories = {n: fleet.inventory(n) for n in sizes}
        self.failed: list[dict[str, Any]] = []
        self.labels: dict[Path, str] = {ROOT: "this tree"}

    def attempt(
        self, args: list[str], tree: Path, n: int, quiet: Quiet, what: str
    ) -> tuple[Sample, str]:
        """A run that must succeed (and, for a no-op, change nothing); retried twice.

        A failure is the product's or the shared machine's, not the bench's: each
        one is kept for the report.
        """
        label = self.labels.get(tree, str(tree))
        for _ in range(3):
            try:
                sample, output = run_measured(args, self.fleet, n, quiet, self.engine, tree)
            except RunFailed as failure:
                self.failed.append({"tree": label, "run": what, "hosts": n,
                                    "said": error_lines(failure.output)})  # fmt: skip
                self.engine.wait_until_it_answers()  # the usual cause: Docker restarted
                continue
            except EngineRestarted:
                self.failed.append({"tree": label, "run": what, "hosts": n,
                                    "said": ["the engine restarted"]})  # fmt: skip
                continue
            if what not in ("first converge", "drift") and changed_hosts(output):
                self.failed.append({"tree": label, "run": what, "hosts": n,
                                    "said": error_lines(output)})  # fmt: skip
                continue
            return sample, output
        raise SystemExit(f"bench_fleet: {what} of {n} hosts failed 3 times: {self.failed[-3:]}")

    def floor(self, n: int, quiet: Quiet, label: str) -> tuple[float, float]:
        """floor_run, retried twice when someone restarted the shared engine meanwhile."""
        for _ in range(3):
            try:
                return floor_run(self.fleet, n, self.engine, quiet)
            except EngineRestarted:
                self.failed.append({"tree": label, "run": "floor", "hosts": n,
                                    "said": ["the engine restarted"]})  # fmt: skip
        raise SystemExit(f"bench_fleet: the floor of {n} hosts failed 3 times")

    def measure(self, tree: Path, label: str) -> dict[str, Any]:
        """A first converge of every host with ``tree``, then the rounds and the -vv runs."""
        self.labels[tree] = label
        largest = max(self.sizes)

        def deploy(n: int, *more: str) -> list[str]:
            return [PYINFRA, "-y", str(self.inventories[n]), "deploy.py", *self.extra, *more]

        first, _ = self.attempt(deploy(largest), tree, largest, NOTHING_QUIET, "first converge")
        # The first no-op: nothing may change; it also warms the caches for every size alike.
        self.attempt(deploy(largest), tree, largest, NOTHING_QUIET, "second converge")
        stacks = container_ids([f"{h.compose_project}-chroma-1" for h in self.fleet.hosts])
        by_size = {n: SizeResults(n) for n in self.sizes}
        quiet_rounds = []
        for round_index in range(self.runs):
            quiet = quiet_window(self.engine, stacks)
            quiet_rounds.append(quiet)
            order = self.sizes if round_index % 2 == 0 else self.sizes[::-1]
            for n in order:
                by_size[n].deploys.append(self.attempt(deploy(n), tree, n, quiet, "no-op")[0])
            for n in order:
                drift = [sys.executable, "drift.py", str(self.inventories[n])]
                by_size[n].drifts.append(self.attempt(drift, tree, n, quiet, "drift")[0])
            for n in order:
                by_size[n].floors.append(self.floor(n, quiet, label))
            for n in order:
                # From this tree whatever the tree measured: the floor is pyinfra's, not ours.
                floor = [PYINFRA, "-y", str(self.inventories[n]), "bench/pyinfra_floor.py"]
                by_size[n].pyinfra_floors.append(
                    self.attempt(floor, ROOT, n, quiet, f"pyinfra floor ({label})")[0]
                )
            print(f"{label}: round {round_index + 1}/{self.runs}, quiet busy cores "
                  f"{quiet.machine_cores:.2f}", file=sys.stderr)  # fmt: skip
        for n in self.sizes:
            _, log = self.attempt(deploy(n, "-vv"), tree, n, NOTHING_QUIET, "no-op -vv")
            by_size[n].vv_commands = commands_in_vv(log)
        idle = [q.stacks_cores for q in quiet_rounds if q.stacks_cores is not None]
        return {
            "first_converge_all_s": round(first.wall_s, 1),
            "quiet_busy_cores_median": round(
                statistics.median(q.machine_cores for q in quiet_rounds), 2
            ),
            "quiet_engine_cores_median": round(
                statistics.median(q.engine_cores for q in quiet_rounds), 3
            ),
            "idle_chroma_cpu_cores_per_stack": (
                round(statistics.median(idle) / largest, 4) if idle else None
            ),
            "results": with_ratios({n: by_size[n].summary() for n in self.sizes}),
        }


def measure_sizes(
    sizes: list[int], runs: int, parallel: int | None, baseline: str | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_at_start": load_average()},
        "sizes": sizes,
        "runs": runs,
        "pyinfra_parallel": parallel or "default (min(20 x cpus, hosts))",
        "engine_default_pools_before": default_pool_use(engine_subnets()),
    }
    fleet = LoopbackFleet(max(sizes))
    try:
        engine = Engine()
        result["machine"]["quiet_busy_cores_before_bench_stacks"] = round(
            quiet_window(engine).machine_cores, 2
        )
        start = time.perf_counter()
        fleet.start()
        result["hosts_ready_s"] = round(time.perf_counter() - start, 1)
        result["bench_networks"] = fleet.network_range
        bench = Bench(fleet, sizes, runs, parallel, engine)
        result["failed_runs"] = bench.failed
        result.update(bench.measure(ROOT, "this tree"))
        result["chroma_memory_mib_per_stack"] = chroma_memory_mib(fleet.hosts)
        if baseline:
            # After this tree's rounds: the baseline's first converge rewrites every host.
            with checkout(baseline) as old_tree:
                result["baseline"] = {"rev": baseline, **bench.measure(old_tree, baseline)}
        result["machine"]["load_at_end"] = load_average()
    finally:
        fleet.remove()
    summaries = {int(n): summary for n, summary in result["results"].items()}
    result["targets"] = targets(summaries, sizes)
    return result


def targets(summaries: dict[int, dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The issue's targets against the largest fleet measured, each with its floor.

    A floor is what the same figure is for bench/pyinfra_floor.py (pyinfra and
    sshd alone: one connection, one ``true``) and, for the wall ratio, also for
    the issue's own read (floor_command) sent with plain ssh: a target below its
    floor cannot be met by anything chroma-deploy reads or skips.

    The figure derived from the machine's CPU gets no verdict when every run
    saturated the machine: what the bench added to its CPU then is not what the
    bench cost (it also displaced other people's work).
    """
    big = summaries[max(sizes)]
    noop_commands = max(s["noop_commands_per_host_sshd"] for s in summaries.values())
    drift_commands = max(s["drift_commands_per_host_sshd"] for s in summaries.values())
    pyinfra_host = big["pyinfra_floor_host_side_cpu_per_host_s"]
    checks: dict[str, Any] = {
        "noop_commands_per_host": (noop_commands, MAX_NOOP_COMMANDS, {}),
        "drift_commands_per_host": (drift_commands, MAX_DRIFT_COMMANDS, {}),
        "noop_host_side_cpu_per_host_s": (
            big["noop_host_side_cpu_per_host_s"],
            MAX_HOST_CPU_PER_HOST_S,
            {"pyinfra_floor": pyinfra_host,
             "issue_read_over_ssh": big["floor_host_side_cpu_per_host_s"]},
        ),
        "noop_host_side_from_machine_per_host_s": (
            big["noop_host_side_from_machine_per_host_s"],
            MAX_HOST_CPU_PER_HOST_S,
            {"pyinfra_floor": pyinfra_host},
        ),
    }  # fmt: skip
    if len(sizes) > 1:
        checks["noop_control_cpu_per_added_host_s"] = (
            big["noop_control_cpu_per_added_host_s"],
            MAX_CONTROL_CPU_PER_ADDED_HOST_S,
            {"pyinfra_floor": big["pyinfra_floor_control_cpu_per_added_host_s"]},
        )
        checks["noop_wall_largest_vs_smallest"] = (
            big["noop_wall_vs_smallest"],
            MAX_WALL_RATIO,
            {"pyinfra_floor": big["pyinfra_floor_wall_vs_smallest"],
             "issue_read_over_ssh": big["floor_wall_vs_smallest"]},
        )  # fmt: skip
    return {
        name: {"measured": value, "target": f"<= {limit}",
               "met": None if value is None else value <= limit, "floors": floors}
        for name, (value, limit, floors) in checks.items()
    }  # fmt: skip


def table(result: dict[str, Any]) -> str:
    columns = [
        ("hosts", None), ("wall s", "noop_wall_s"), ("vs 1", "noop_wall_vs_smallest"),
        ("control CPU s", "noop_control_cpu_s"),
        ("machine CPU/host", "noop_machine_net_cpu_per_host_s"),
        ("host side/host", "noop_host_side_cpu_per_host_s"),
        ("cmds/host", "noop_commands_per_host_vv"), ("drift s", "drift_wall_s"),
        ("drift vs 1", "drift_wall_vs_smallest"), ("drift cmds", "drift_commands_per_host_sshd"),
        ("drift host side", "drift_host_side_cpu_per_host_s"), ("floor s", "floor_wall_s"),
        ("floor host side", "floor_host_side_cpu_per_host_s"),
        ("pyinfra floor s", "pyinfra_floor_wall_s"),
        ("pyinfra floor vs 1", "pyinfra_floor_wall_vs_smallest"),
        ("pyinfra floor control CPU s", "pyinfra_floor_control_cpu_s"),
        ("pyinfra floor host side", "pyinfra_floor_host_side_cpu_per_host_s"),
    ]  # fmt: skip
    rows = [[title for title, _ in columns]]
    phases = [("", result)]
    if "baseline" in result:
        phases.append((f" ({result['baseline']['rev']})", result["baseline"]))
    for label, phase in phases:
        for n, summary in phase["results"].items():
            rows.append([f"{n}{label}", *(str(summary[key]) for _, key in columns[1:])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    for name, check in result["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "no verdict (machine saturated)"}[
            check["met"]
        ]
        floors = ", ".join(f"{key} {value}" for key, value in check["floors"].items())
        lines.append(f"{name}: {check['measured']} (target {check['target']}): {verdict}"
                     + (f"; floors: {floors}" if floors else ""))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,10,30", help="fleet sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="rounds (the median is reported)")
    parser.add_argument("--parallel", type=int, help="pyinfra's --parallel for the deploys")
    parser.add_argument(
        "--baseline",
        metavar="GIT-REV",
        help="also measure this revision, on the same hosts, after this tree",
    )
    parser.add_argument("--cleanup", action="store_true", help="remove what a killed bench left")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.cleanup:
        with take_bench_lock():  # never while a bench runs: they would be its hosts
            remove_leftovers()
        return
    sizes = sorted({int(n) for n in args.sizes.split(",")})
    result = measure_sizes(sizes, args.runs, args.parallel, args.baseline)
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
