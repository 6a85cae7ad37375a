"""Roll a change out canary first, one batch at a time, each batch gated by its health.

    python rollout.py INVENTORY [--data KEY=VALUE ...] [--group-data DIR ...] [--canary HOST ...]
                                [--batch N | --batch P%] [--max-failures K] [--json] [--version]

The canary hosts (default: the inventory's first host) get deploy.py first,
then the gate: prove.py (a canary record written, ``down``, ``up``, read
back) and a heartbeat through the declared URL (through the auth proxy, with
the token, when it is on). Only when both pass do the other hosts follow, in
inventory order, N at a time (or P% of them), each batch gated the same way.

A failed canary halts the rollout; after it, the first failure beyond
--max-failures (default 0) does. Halting means no further host is touched;
the summary names the failed host and the line pyinfra (or the proof)
printed for it, and lists the hosts that changed, were proven, or were never
touched. Exit 1 when any host failed. Run the same command again after a
fix: converged hosts are a no-op (reported unchanged) and are proven again.

Every step is its own ``pyinfra -y --json INVENTORY FILE --limit HOST ...``
run, so the halt is decided here between runs, never by pyinfra's
--fail-percent. The plan, the reading of pyinfra's output, the halting rule
and the summary are in fleet/plan.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyinfra.api import State  # noqa: E402
from pyinfra.api.exceptions import ConnectError, PyinfraError  # noqa: E402
from pyinfra.context import ctx_host  # noqa: E402

from declaration.resources import Declared  # noqa: E402
from declaration.settings import SettingsError, load_settings  # noqa: E402
from facts.chroma import ChromaHealth  # noqa: E402
from fleet.plan import (  # noqa: E402
    EXIT_FAILED,
    StepResult,
    UsageError,
    check_max_failures,
    describe_plan,
    heartbeat_verdict,
    parse_batch,
    plan_batches,
    read_run,
    render_json,
    render_table,
    run_rollout,
    select_canaries,
)
from plumbing import cli, preflight  # noqa: E402
from plumbing.tokens import clients_for_host  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = cli.entry_parser(
        "rollout.py",
        "Deploy to the canary, prove it, then the other hosts batch by batch.",
        "exit codes: 0 every host deployed and proven, 1 a host failed or bad input",
        UsageError,
        every_run=" (given to every run)",
    )
    parser.add_argument("--canary", action="extend", nargs="+", default=[], metavar="HOST",
                        help="the canary host(s) (default: the inventory's first)")  # fmt: skip
    parser.add_argument("--batch", default="1", metavar="N|P%",
                        help="hosts per batch after the canary: a number, or a percentage of "
                             "those hosts (default 1)")  # fmt: skip
    parser.add_argument("--max-failures", type=int, default=0, metavar="K",
                        help="hosts after the canary that may fail before the rollout halts "
                             "(default 0; a failed canary always halts)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def load_state(args: argparse.Namespace) -> State:
    """The inventory as the pyinfra runs will see it: same working dir, group data and
    --data, read by the same loader (plumbing.cli)."""
    try:
        return cli.load_state(args.inventory, args.data, args.group_data)
    except cli.CommandLineError as error:
        raise UsageError(str(error)) from None


def check_settings(state: State) -> None:
    """Every host's data (and its proxy's token, on this machine) is valid before the first
    host is touched, not when its batch comes."""
    for host in state.inventory:
        try:
            settings = load_settings(host.data)
            if settings.auth_proxy:
                clients_for_host(settings)  # checked, never kept or printed
        except SettingsError as error:
            raise UsageError(f"{host.name}: {error}") from None


def pyinfra_step(args: argparse.Namespace, deploy_file: str, changes: bool):
    """A step that runs ``deploy_file`` on a batch's hosts with pyinfra, as a user would."""

    def step(hosts: list[str]) -> dict[str, StepResult]:
        command = [sys.executable, "-m", "pyinfra", "-y", "--json", args.inventory,
                   str(ROOT / deploy_file)]  # fmt: skip
        for name in hosts:
            command += ["--limit", name]
        for directory in args.group_data:
            command += ["--group-data", directory]
        for pair in args.data:
            command += ["--data", pair]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        results = read_run(done.returncode, done.stdout, done.stderr, hosts)
        if not changes:  # the proof always "changes" (it writes and removes its canary)
            results = {name: replace(r, changed=False) for name, r in results.items()}
        return results

    return step


def heartbeat_step(state: State):
    """A step that reads each host's heartbeat through its declared URL, from the host itself."""
    by_name = {host.name: host for host in state.inventory}

    def step(hosts: list[str]) -> dict[str, StepResult]:
        greenlets = [gevent.spawn(heartbeat, by_name[name]) for name in hosts]
        gevent.joinall(greenlets)
        return dict(zip(hosts, (greenlet.get() for greenlet in greenlets), strict=True))

    return step


def heartbeat(host: Any) -> StepResult:
    """200 with a heartbeat through the URL (and token) deploy.py declares, and the version."""
    try:
        host.connect(show_errors=False, raise_exceptions=True)
        with ctx_host.use(host):
            settings = preflight.settings_for_host()
            owner = preflight.resolve_owner(settings)
            declared = Declared(settings, owner.uid, owner.gid)
            # HealthCheck.read: with TLS on, the proxy's CA and name too.
            health = host.get_fact(
                ChromaHealth, container=declared.chroma_container, **declared.health_check.read
            )
    except ConnectError as error:
        return StepResult(ok=False, reason=f"cannot connect: {error}")
    except PyinfraError as error:
        return StepResult(ok=False, reason=str(error).removeprefix(f"{host.name}: "))
    return heartbeat_verdict(health, declared.url, settings.version)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        size = parse_batch(args.batch)
        max_failures = check_max_failures(args.max_failures)
        state = load_state(args)
        hosts = [host.name for host in state.inventory]
        canaries = select_canaries(hosts, args.canary)
        check_settings(state)
    except UsageError as error:
        print(f"rollout.py: {error}", file=sys.stderr)
        return EXIT_FAILED
    batches = plan_batches(hosts, canaries, size)
    print(describe_plan(batches, size, max_failures), file=sys.stderr)
    rollout = run_rollout(
        batches,
        max_failures,
        deploy=pyinfra_step(args, "deploy.py", changes=True),
        prove=pyinfra_step(args, "prove.py", changes=False),
        heartbeat=heartbeat_step(state),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        clock=time.monotonic,
    )
    print(render_json(rollout) if args.json else render_table(rollout))
    return rollout.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
