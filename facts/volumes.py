"""Named volumes left from a setup before bind mounts, and whether they hold Chroma data."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q


class LegacyVolumes(FactBase[list[dict[str, Any]]]):
    """Volumes named one of ``names``, or ``<project>_<name>`` as compose names them.

    ``[{"name", "mountpoint", "compose_project": str|None, "has_chroma_data":
    bool (chroma.sqlite3 at the volume's root), "size_bytes", "used_by":
    [container names]}]``. Empty when none match or Docker is absent or down.
    """

    @staticmethod
    def default() -> list[dict[str, Any]]:
        return []

    names: tuple[str, ...] = ()

    def command(self, names: list[str]) -> str:
        self.names = tuple(names)
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            "for v in $(docker volume ls -q 2>/dev/null); do "
            'case "$v" in '
            + "|".join(f"{q(n)}|*_{q(n)}" for n in names)
            + ") echo @@volume; docker volume inspect --format '{{json .}}' \"$v\"; "
            "m=$(docker volume inspect --format '{{.Mountpoint}}' \"$v\"); "
            'test -f "$m/chroma.sqlite3" && echo sqlite; '
            'echo size=$(du -sb "$m" 2>/dev/null | cut -f1); '
            "echo users=$(docker ps -a --filter volume=\"$v\" --format '{{.Names}}'"
            " | tr '\\n' ' ');; "
            "esac; done; true"
        )

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        volumes = []
        blocks: list[list[str]] = []
        for line in output:
            if line.startswith("@@volume"):
                blocks.append([])
            elif blocks:
                blocks[-1].append(line)
        for block in blocks:
            try:
                info = json.loads(block[0])
            except (ValueError, IndexError) as error:
                raise parse_error("LegacyVolumes", str(error)) from None
            labels = info.get("Labels") or {}
            volume = {
                "name": info["Name"],
                "mountpoint": info.get("Mountpoint", ""),
                "compose_project": labels.get("com.docker.compose.project"),
                "has_chroma_data": "sqlite" in block[1:],
                "size_bytes": 0,
                "used_by": [],
            }
            for line in block[1:]:
                if line.startswith("size="):
                    volume["size_bytes"] = int(line[5:] or 0)
                elif line.startswith("users="):
                    volume["used_by"] = line[6:].split()
            volumes.append(volume)
        return sorted(volumes, key=lambda v: v["name"])
