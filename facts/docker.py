"""Docker Engine, the Compose plugin and images on the host."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections

# Client and server in one call: a daemon that does not answer costs one wait, not two.
_VERSIONS = "'{{.Client.Version}}|{{if .Server}}{{.Server.Version}}{{end}}'"


class DockerEngine(FactBase[dict[str, Any]]):
    """Docker Engine and Compose as the host has them. Always a dict, never None.

    ``{"cli": bool, "cli_version": str|None, "server_running": bool,
    "server_version": str|None, "compose_v2": str|None, "compose_v1": str|None,
    "systemd": bool}``. ``cli`` False: no ``docker`` command on PATH (then every
    version is None). ``server_running`` False: the daemon does not answer.
    ``compose_v2`` is the version of the ``docker compose`` plugin (None: not
    installed); ``compose_v1`` only reports a legacy ``docker-compose`` 1.x
    binary (None: none, or a v2 one); ``systemd`` says whether a service
    manager runs (``/run/systemd/system`` is a dir).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "cli": False, "cli_version": None, "server_running": False, "server_version": None,
            "compose_v2": None, "compose_v1": None, "systemd": False,
        }  # fmt: skip

    def command(self) -> str:
        return (
            "if command -v docker >/dev/null 2>&1; then "
            f"echo @@versions; docker version --format {_VERSIONS} 2>/dev/null | head -n 1; "
            "echo @@compose_v2; docker compose version --short 2>/dev/null; fi; "
            "echo @@compose_v1; command -v docker-compose >/dev/null 2>&1"
            " && docker-compose version --short 2>/dev/null; "
            "echo @@systemd; test -d /run/systemd/system && echo yes; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = {name: " ".join(lines).strip() for name, lines in sections(output).items()}
        if "systemd" not in found:
            raise parse_error("DockerEngine", "the @@systemd section is missing")
        client, _, server = found.get("versions", "").partition("|")
        compose_v2 = found.get("compose_v2", "").removeprefix("v")
        compose_v1 = found.get("compose_v1", "").removeprefix("v")
        return {
            "cli": "versions" in found,
            "cli_version": client.strip() or None,
            "server_running": bool(server.strip()),
            "server_version": server.strip() or None,
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
            f"docker image inspect --format '{{{{json .}}}}' {q(ref)} 2>/dev/null || true"
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
