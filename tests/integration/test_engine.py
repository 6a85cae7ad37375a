"""The dockerd supervisor on a host without an engine: it refuses and says why, no loop.

Runs files/dockerd-supervisor.sh for real in a container made from the local
Debian base, once with no Docker at all and once with this machine's docker
CLI (28.x) mounted in but no dockerd: the machine image of issue #13, on which
the old supervisor wrote `dockerd: not found` every 2 s for ever.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.docker

BASE_IMAGE = "chroma-deploy/debian-base:bookworm"
SUPERVISOR = ROOT / "files" / "dockerd-supervisor.sh"

# Both ways the deploy and the harness start it; `timeout` ends a loop that never would.
SCRIPT = (
    "sh /supervisor start; echo start=$?; "
    "timeout 10 sh /supervisor; echo loop=$?; "
    "echo log; cat /var/log/dockerd.log"
)


@pytest.mark.parametrize("cli", [False, True], ids=["no_docker", "cli_only"])
def test_supervisor_refuses_to_start_without_dockerd_and_says_why(cli: bool):
    mounts = ["--volume", f"{SUPERVISOR}:/supervisor:ro"]
    if cli:
        docker = shutil.which("docker")
        assert docker, "this machine's docker CLI is the one to mount in"
        mounts += ["--volume", f"{Path(docker).resolve()}:/usr/local/bin/docker:ro"]
    name = f"cdsupervisor{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            ["docker", "run", "--rm", "--name", name, *mounts, BASE_IMAGE, "sh", "-c", SCRIPT],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:  # a supervisor that loops would outlive the client
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    out, _, log = done.stdout.partition("log\n")
    assert out.split() == ["start=1", "loop=1"], done.stdout
    reason = "no dockerd on this host, so Docker Engine is not installed"
    assert done.stderr.count(reason) == 2, done.stderr
    assert "apt-get install docker.io" in done.stderr
    # One line per refusal in the log the deploy's error points to, not one every 2 s.
    assert len(log.splitlines()) == 2 and all(reason in line for line in log.splitlines()), log
