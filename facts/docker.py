"""Docker Engine, the Compose plugin and images on the host."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections


class DockerEngine(FactBase[dict[str, Any]]):
    """Docker Engine and Compose as the host has them. Always a dict, never None.

    ``{"cli": bool, "cli_version": str|None, "server_running": bool,
    "server_version": str|None, "compose_v2": str|None, "compose_v1": str|None,
    "systemd": bool}``. ``compose_v2`` is the version of the ``docker compose``
    plugin (None: not installed); ``compose_v1`` only reports a legacy
    ``docker-compose`` 1.x binary; ``systemd`` says whether a service manager runs.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "cli": False, "cli_version": None, "server_running": False, "server_version": None,
            "compose_v2": None, "compose_v1": None, "systemd": False,
        }  # fmt: skip

    def command(self) -> str:
        return (
            "echo @@cli; command -v docker >/dev/null 2>&1"
            " && docker version --format '{{.Client.Version}}' 2>/dev/null | head -n1; "
            "echo @@server; command -v docker >/dev/null 2>&1"
            " && docker version --format '{{.Server.Version}}' 2>/dev/null; "
            "echo @@compose_v2; command -v docker >/dev/null 2>&1"
            " && docker compose version --short 2>/dev/null; "
            "echo @@compose_v1; command -v docker-compose >/dev/null 2>&1"
            " && docker-compose version --short 2>/dev/null; "
            "echo @@systemd; test -d /run/systemd/system && echo yes; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = {name: " ".join(lines).strip() or None for name, lines in sections(output).items()}
        compose_v1 = found.get("compose_v1")
        return {
            "cli": found.get("cli") is not None,
            "cli_version": found.get("cli"),
            "server_running": found.get("server") is not None,
            "server_version": found.get("server"),
            "compose_v2": (found.get("compose_v2") or "").lstrip("v") or None,
            "compose_v1": compose_v1 if compose_v1 and compose_v1.startswith("1.") else None,
            "systemd": found.get("systemd") == "yes",
        }


class DockerImage(FactBase[dict[str, Any] | None]):
    """An image by reference: None when absent (or Docker absent or down).

    ``{"id": "sha256:...", "repo_tags": [...], "labels": {...}, "created": str}``.
    """

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
        except ValueError as error:
            raise parse_error("DockerImage", str(error)) from None
        return {
            "id": image["Id"],
            "repo_tags": image.get("RepoTags") or [],
            "labels": (image.get("Config") or {}).get("Labels") or {},
            "created": image.get("Created", ""),
        }
