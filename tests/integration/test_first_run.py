"""The README's main command as a newcomer runs it: `scripts/up.sh` from a fresh clone.

The clone is made with git from this repo (committed files only, no .venv) and
deploys into a fresh project dir, port and compose project, with this machine's
engine stopped first: the supervisor that keeps it up and dockerd, each by its
pid. The deploy must find the engine installed but stopped and start it itself.
Stopping the engine stops every container on it, so the outage is kept short:
the clone's .venv is made (scripts/bootstrap.sh, the first thing up.sh runs)
before the engine stops, and up.sh then finds it ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, DeployRun, free_port, restart_engine, sh

# serial: stops the engine.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.serial]

SUPERVISOR = "/usr/local/sbin/chroma-deploy-dockerd"
ENGINE_OP = "Docker Engine and Compose v2"


def _own_processes() -> dict[int, list[bytes]]:
    """pid -> argv of the processes in this pid namespace (not those inside containers)."""
    own_ns = os.readlink("/proc/self/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != own_ns:
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
    return found


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not exit within {seconds} s")
        time.sleep(0.2)


def stop_engine() -> None:
    """Stop this machine's engine: first what would restart it, then dockerd, by pid."""
    for pid, argv in _own_processes().items():
        if SUPERVISOR.encode() in argv:
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, 10)
    dockerd = int(Path("/var/run/docker.pid").read_text())
    os.kill(dockerd, signal.SIGTERM)
    _wait_gone(dockerd, 60)


def up(clone: Path, *args: str) -> tuple[DeployRun, float]:
    """`scripts/up.sh ARGS --json` in the clone, with no trace of this repo's .venv."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PATH"] = ":".join(
        part for part in env.get("PATH", "").split(":") if not part.startswith(str(ROOT))
    )
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "scripts/up.sh", *args, "--json"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return DeployRun(done.returncode, done.stdout, done.stderr), time.perf_counter() - started


def test_up_sh_from_a_fresh_clone_starts_the_stopped_engine_and_converges(tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()
    bootstrap = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=clone, capture_output=True, text=True, timeout=900
    )
    assert bootstrap.returncode == 0, bootstrap.stderr
    project_dir = tmp_path / "stack"
    name = f"cdfirst{uuid.uuid4().hex[:8]}"
    port = free_port()
    args = (
        "--data", f"chroma_project_dir={project_dir}", "--data", f"chroma_port={port}",
        "--data", f"chroma_compose_project={name}",
    )  # fmt: skip

    stop_engine()
    try:
        stopped = sh("docker info", check=False).returncode != 0
        first, first_seconds = up(clone, *args)
        second, second_seconds = up(clone, *args)
        beat = httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=5).text
    except httpx.HTTPError as error:
        beat = f"no heartbeat: {error}"
    finally:
        if sh("docker info", check=False).returncode != 0:
            restart_engine()
        if (project_dir / "docker-compose.yml").exists():
            subprocess.run(
                ["docker", "compose", "down", "--timeout", "5"],
                cwd=project_dir, capture_output=True, timeout=120, check=False,
            )  # fmt: skip
    print(f"up.sh with the engine stopped: {first_seconds:.1f} s, again {second_seconds:.1f} s")

    assert stopped
    assert first.returncode == 0, first.output
    assert ENGINE_OP in first.changed_operations, first.changed_operations
    assert second.returncode == 0, second.output
    assert second.changed_operations == [], second.output
    assert second.result["totals"]["success"] == 0
    assert "nanosecond heartbeat" in beat, beat
