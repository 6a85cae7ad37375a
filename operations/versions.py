"""What each Chroma version line needs: where it persists, how it is checked.

The seed lost data because its mount target was right for one server version
and wrong for the one that ran. Everything that differs between version lines
lives here, so the template, the deploy and the drift check ask one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class VersionLine:
    """How one Chroma server release line stores data and reports health."""

    name: str
    persist_path: str
    # Environment that pins the persist path explicitly, next to the mount.
    environment: tuple[tuple[str, str], ...]
    heartbeat_path: str
    # Compose healthcheck `test`, run inside the official image of that line.
    healthcheck: tuple[str, ...]
    # 0.x servers write chroma.log in their working dir (/chroma), which a
    # non-root user cannot write: the deploy mounts a file from logs/ there.
    log_file: str | None


def _bash_heartbeat(path: str) -> tuple[str, ...]:
    # 1.x images have no curl, wget or python; /bin/sh is dash, so bash's
    # /dev/tcp does the request. The template escapes '$' for compose.
    script = (
        "exec 3<>/dev/tcp/127.0.0.1/8000"
        f" && printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3"
        " && read -r proto status rest <&3"
        ' && [ "$status" = 200 ]'
    )
    return ("CMD", "/bin/bash", "-c", script)


def _parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def version_line(version: str) -> VersionLine:
    """The line a pinned ``X.Y.Z`` release belongs to (validated beforehand)."""
    parsed = _parse(version)
    if parsed >= (1, 0, 0):
        return VersionLine(
            name="1.x",
            persist_path="/data",
            environment=(("CHROMA_PERSIST_PATH", "/data"),),
            heartbeat_path="/api/v2/heartbeat",
            healthcheck=_bash_heartbeat("/api/v2/heartbeat"),
            log_file=None,
        )
    heartbeat = "/api/v2/heartbeat" if parsed >= (0, 5, 16) else "/api/v1/heartbeat"
    return VersionLine(
        name="0.x",
        persist_path="/chroma/chroma",
        environment=(
            ("IS_PERSISTENT", "TRUE"),
            ("PERSIST_DIRECTORY", "/chroma/chroma"),
            ("ANONYMIZED_TELEMETRY", "False"),
        ),
        heartbeat_path=heartbeat,
        healthcheck=("CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:8000{heartbeat}"),
        log_file="/chroma/chroma.log",
    )


def deployed_version(compose_content: str) -> str | None:
    """The chroma image tag a compose file written by chroma-deploy names."""
    try:
        image = yaml.safe_load(compose_content)["services"]["chroma"]["image"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    tag = str(image).rsplit(":", 1)[-1]
    parts = tag.split(".")
    return tag if len(parts) == 3 and all(part.isdigit() for part in parts) else None
