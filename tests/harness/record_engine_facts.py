"""Record the DockerEngine fact's fixtures from real hosts, one per engine state.

Runs the fact's own command on the SSH test hosts of ssh_hosts.py, each made
fresh so it starts as its kind (a host without Docker, one with only a docker
CLI, one with the engine stopped and a stale pid file, one with Compose v1
only), on one of them again after changing its state for real (pid file gone:
stopped; a pid file holding no number; dockerd just launched: starting; the
v2 plugin copied in beside v1),
and on this machine (engine running). Writes
tests/fixtures/facts/docker.DockerEngine/<case>.json with the command, what the
host printed and the value the fact reads from it; review the diff before
committing. The hosts are left fresh-made again for the fleet tests.

    .venv/bin/python tests/harness/record_engine_facts.py
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

from facts.docker import DockerEngine  # noqa: E402
from harness.ssh_hosts import BY_NAME, Fleet, ensure_fleet  # noqa: E402

OUT = TESTS / "fixtures" / "facts" / "docker.DockerEngine"


def _lines(text: str) -> list[str]:
    """Split as pyinfra does: at "\\n", without a last empty line."""
    lines = text.split("\n") if text else []
    if text.endswith("\n"):
        lines.pop()
    return lines


def _write(case: str, command: str, output: list[str]) -> None:
    fact = DockerEngine().process(output)
    fixture = {"args": {}, "command": command, "fact": fact, "output": output}
    (OUT / f"{case}.json").write_text(json.dumps(fixture, indent=2, sort_keys=True) + "\n")
    print(f"{case}: state {fact['state']}")


def _on_host(fleet: Fleet, name: str, command: str, before: str = "") -> list[str]:
    """The command's output on a fleet host, as pyinfra's `sh -c` would run it."""
    script = f"{before}\nsh -c {shlex.quote(command)}"
    return _lines(fleet.ssh(BY_NAME[name], script).stdout)


def _here(command: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=True, env=env
    )
    return _lines(done.stdout)


def main() -> None:
    command = DockerEngine().command()
    OUT.mkdir(parents=True, exist_ok=True)
    fleet = ensure_fleet(fresh=True)
    _write("absent", command, _on_host(fleet, "cdfleet3", command))
    _write("cli_only", command, _on_host(fleet, "cdfleet4", command))
    _write("stale_pid", command, _on_host(fleet, "cdfleet1", command))
    _write("compose_v1_only", command, _on_host(fleet, "cdfleet2", command))

    # The stopped host with its pid file gone, then with dockerd just launched.
    _write("stopped", command, _on_host(fleet, "cdfleet1", command, "rm /var/run/docker.pid"))
    garble = "echo not-a-pid >/var/run/docker.pid"
    _write("stale_pid_not_a_number", command, _on_host(fleet, "cdfleet1", command, garble))
    fleet.ssh(BY_NAME["cdfleet1"], "rm /var/run/docker.pid")
    launch = "setsid -f dockerd >>/var/log/dockerd.log 2>&1 </dev/null"
    _write("starting", command, _on_host(fleet, "cdfleet1", command, launch))

    # Compose v1 with the v2 plugin beside it, as the deploy leaves cdfleet2.
    plugin = "/usr/local/lib/docker/cli-plugins/docker-compose"
    compose = Path(sys.executable).with_name("docker-compose")
    fleet.ssh(BY_NAME["cdfleet2"], f"mkdir -p {Path(plugin).parent}")
    subprocess.run(["docker", "cp", str(compose), f"cdfleet2:{plugin}"], check=True)
    _write("legacy_v1_beside_v2", command, _on_host(fleet, "cdfleet2", command))

    # This machine: its engine runs; with .venv/bin first on PATH the docker-compose
    # found is the pinned v2 binary, which is not a legacy v1.
    path = os.environ.get("PATH", "")
    outside_venv = ":".join(p for p in path.split(":") if p != str(compose.parent))
    _write("running", command, _here(command, {**os.environ, "PATH": outside_venv}))
    with_venv = {**os.environ, "PATH": f"{compose.parent}:{outside_venv}"}
    _write("standalone_v2_is_not_v1", command, _here(command, with_venv))

    time.sleep(1)
    ensure_fleet(fresh=True)


if __name__ == "__main__":
    main()
