"""Docker Engine, the Compose plugin and images on the host."""

from __future__ import annotations

import json
import re
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word, to_int

# Client and server in one call: a daemon that does not answer costs one wait, not two.
_VERSIONS = "'{{.Client.Version}}|{{if .Server}}{{.Server.Version}}{{end}}'"

# Where Debian, Ubuntu and Docker's own packages put the engine and its unit. The
# sbin dirs are added because a login as a plain user may not have them on PATH.
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
_UNITS = (
    "/etc/systemd/system/docker.service",
    "/lib/systemd/system/docker.service",
    "/usr/lib/systemd/system/docker.service",
)
PID_FILE = "/var/run/docker.pid"

# Where the docker CLI looks for its plugins on Linux, in its order (docker/cli,
# cli-plugins/manager): the user's config dir, then the system dirs.
_PLUGIN_DIRS = (
    '"${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"',
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)

# Reads /proc with the shell's own `read`: no fork per process, no procps needed.
# A dockerd in another pid namespace (an engine inside a container) is not the host's.
# The plugin is found by its file, and `dockerd --version` runs only when no server
# answered: each Go program started costs 60-75 ms of CPU, and this fact is read on
# every run. Only a plugin in none of the usual dirs costs `docker compose version`.
_COMMAND = "\n".join((
    "echo @@cli; command -v docker 2>/dev/null",
    "v=",
    "if command -v docker >/dev/null 2>&1; then",
    f"  v=$(docker version --format {_VERSIONS} 2>/dev/null | head -n 1)",
    '  echo @@versions; echo "$v"',
    "  echo @@compose_v2; p=",
    f"  for d in {' '.join(_PLUGIN_DIRS)}; do",
    '    if [ -x "$d/docker-compose" ]; then p="$d/docker-compose"; echo "$p"; break; fi',
    "  done",
    '  [ -n "$p" ] || { docker compose version --short >/dev/null 2>&1 && echo docker compose; }',
    "fi",
    "echo @@compose_v1; command -v docker-compose >/dev/null 2>&1"
    " && docker-compose version --short 2>/dev/null",
    f'echo @@dockerd; d=$(PATH="$PATH:{_SBIN}"; command -v dockerd) && echo "$d"'
    ' && case "$v" in *"|"?*) ;; *) "$d" --version 2>/dev/null | head -n 1 ;; esac',
    f"echo @@unit; for u in {' '.join(_UNITS)}; do",
    '  if [ -e "$u" ]; then echo "$u"; break; fi',
    "done",
    "echo @@dockerd_pids; ns=$(readlink /proc/self/ns/pid); for p in /proc/[0-9]*; do",
    '  c=; { read -r c <"$p/comm"; } 2>/dev/null; [ "$c" = dockerd ] || continue',
    '  n=$(readlink "$p/ns/pid" 2>/dev/null)'
    '; [ -z "$n" ] || [ "$n" = "$ns" ] && echo "${p#/proc/}"',
    "done",
    f"echo @@pid_file; if [ -f {PID_FILE} ]; then",
    f"  pid=; {{ read -r pid <{PID_FILE}; }} 2>/dev/null; echo \"$pid\"; c=",
    '  case "$pid" in ""|*[!0-9]*) ;; *) { read -r c <"/proc/$pid/comm"; } 2>/dev/null ;; esac',
    '  echo "$c"',
    "fi",
    "echo @@systemd; test -d /run/systemd/system && echo yes; true",
))  # fmt: skip


def _engine_state(
    running: bool, installed: bool, cli: bool, dockerd_pids: list[int], pid_file: object
) -> str:
    """One word for what must happen to get a running engine (see DockerEngine)."""
    if running:
        return "running"
    if not installed:
        return "cli_only" if cli else "absent"
    if dockerd_pids:
        return "starting"
    if pid_file is not None:
        return "stale_pid"
    return "stopped"


class DockerEngine(FactBase[dict[str, Any]]):
    """Docker Engine, the docker CLI and Compose as the host has them. Always a dict.

    The engine is installed when ``dockerd`` (``dockerd``: its path, found with
    the sbin dirs added to PATH) or a systemd unit for it (``service_unit``)
    exists; a ``docker`` command alone is only the CLI, which images such as
    this project's CI machine ship without an engine. ``state`` sums it up:

    - ``absent``: no CLI, no engine;
    - ``cli_only``: a ``docker`` CLI but no engine;
    - ``stopped``: installed, not answering, no dockerd process, no pid file;
    - ``stale_pid``: the same with ``/var/run/docker.pid`` left behind (when
      its pid now belongs to another process, dockerd refuses to start);
    - ``starting``: a dockerd process exists but the daemon does not answer yet;
    - ``running``: ``docker version`` got an answer from a server.

    Other keys: ``cli`` (bool) and ``cli_version``; ``engine_version`` (the
    running server's version, else what ``dockerd --version`` says; it may be
    older than the CLI, which negotiates the API down); ``server_running`` and
    ``server_version`` (None: no answer);
    ``dockerd_pids`` (list of int); ``pid_file`` (None, or ``{"pid": int|None,
    "process": str|None}``: the pid it names, None when not a number, and that
    process's name, None when it does not exist); ``compose_v2`` (where the ``docker
    compose`` plugin is: its path in the CLI's plugin dirs, or ``docker compose``
    when only the CLI itself finds it; None: not installed); ``compose_v1`` (a legacy
    ``docker-compose`` 1.x, None: none, or a v2 one); ``systemd`` (a service
    manager runs: ``/run/systemd/system`` is a dir).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "state": "absent", "cli": False, "cli_version": None, "dockerd": None,
            "engine_version": None, "service_unit": None, "server_running": False,
            "server_version": None, "dockerd_pids": [], "pid_file": None,
            "compose_v2": None, "compose_v1": None, "systemd": False,
        }  # fmt: skip

    def command(self) -> str:
        return _COMMAND

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        found = {name: " ".join(lines).strip() for name, lines in parts.items()}
        if "systemd" not in found:
            raise parse_error("DockerEngine", "the @@systemd section is missing")
        client, _, server = found.get("versions", "").partition("|")
        compose_v2 = next(
            (line.strip() for line in parts.get("compose_v2", []) if line.strip()), ""
        )
        compose_v1 = found.get("compose_v1", "").removeprefix("v")
        dockerd_lines = [line.strip() for line in parts.get("dockerd", []) if line.strip()]
        dockerd = dockerd_lines[0] if dockerd_lines else None
        engine_version = server.strip() or None  # the server's own word, when it answered
        if len(dockerd_lines) > 1:
            match = re.search(r"version ([^\s,]+)", dockerd_lines[1])
            engine_version = match.group(1) if match else None
        pids = [
            to_int(pid, "DockerEngine", "a dockerd pid")
            for pid in parts.get("dockerd_pids", [])
            if pid.strip()
        ]
        pid_file = None
        if parts.get("pid_file"):  # the section prints nothing without a pid file
            recorded = [*parts["pid_file"], "", ""]
            number = recorded[0].strip()
            pid_file = {
                "pid": int(number) if number.isdigit() else None,
                "process": recorded[1].strip() or None,
            }
        cli = bool(found.get("cli"))
        service_unit = found.get("unit") or None
        running = bool(server.strip())
        return {
            "state": _engine_state(running, bool(dockerd or service_unit), cli, pids, pid_file),
            "cli": cli,
            "cli_version": client.strip() or None,
            "dockerd": dockerd,
            "engine_version": engine_version,
            "service_unit": service_unit,
            "server_running": running,
            "server_version": server.strip() or None,
            "dockerd_pids": pids,
            "pid_file": pid_file,
            "compose_v2": compose_v2 or None,
            "compose_v1": compose_v1 if compose_v1.startswith("1.") else None,
            "systemd": found["systemd"] == "yes",
        }


class DockerImage(FactBase[dict[str, Any] | None]):
    """An image by reference, as the host's engine has it.

    None when the image is absent, or Docker is absent or its daemon down.
    Else ``{"id": "sha256:...", "repo_tags": [str], "labels": {str: str},
    "created": str (RFC 3339 time)}``; ``labels`` is empty when it has none.
    """

    @staticmethod
    def default() -> dict[str, Any] | None:
        return None

    def command(self, ref: str) -> str:
        return (
            "command -v docker >/dev/null 2>&1 && "
            f"docker image inspect --format '{{{{json .}}}}' {shell_word(ref)} 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> dict[str, Any] | None:
        text = "".join(output).strip()
        if not text:
            return None
        try:
            image = json.loads(text)
            return {
                "id": str(image["Id"]),
                "repo_tags": list(image.get("RepoTags") or []),
                "labels": dict((image.get("Config") or {}).get("Labels") or {}),
                "created": str(image.get("Created", "")),
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise parse_error("DockerImage", f"{type(error).__name__}: {error}") from None
