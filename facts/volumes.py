"""Named volumes left from a setup before bind mounts, and whether they hold Chroma data."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, shell_word, to_int


def legacy_volume_names(
    legacy_volumes: tuple[str, ...] | list[str], adopt_volume: str | None
) -> list[str]:
    """The names LegacyVolumes is read with: the legacy volumes, then the one to adopt.

    The one list the deploy's batch, its migration and drift.py read, so the
    three ask for the same volumes (and one reading serves them all).
    """
    return [*legacy_volumes, *([adopt_volume] if adopt_volume else [])]


class LegacyVolumes(FactBase[list[dict[str, Any]]]):
    """Volumes named one of ``names``, or ``<project>_<name>`` as compose names them.

    ``[{"name": str, "mountpoint": str, "compose_project": str|None (label
    com.docker.compose.project), "has_chroma_data": bool (chroma.sqlite3 at
    the volume's root, tested on the host), "size_bytes": int (du -sb, 0 when
    unreadable), "users": [{"name", "project" (compose project label or
    None)}] (containers that use it, stopped ones too), "contents": "N
    collections, M records" or None (python3 missing or unreadable)}]`` sorted by
    name. Empty when none match, ``names`` is empty, or Docker is absent or
    its daemon down.
    """

    @staticmethod
    def default() -> list[dict[str, Any]]:
        return []

    def command(self, names: list[str]) -> str:
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            return "true"
        patterns = "|".join(f"{shell_word(n)}|*_{shell_word(n)}" for n in names)
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            "for v in $(docker volume ls -q 2>/dev/null); do "
            f'case "$v" in {patterns}) '
            # A volume removed since the listing (another project's `down -v`) is
            # gone: left out, as if it had not been listed, not a failed read.
            "j=$(docker volume inspect --format '{{json .}}' \"$v\" 2>/dev/null) || continue; "
            'echo @@volume; printf "%s\\n" "$j"; '
            "m=$(docker volume inspect --format '{{.Mountpoint}}' \"$v\" 2>/dev/null); "
            'test -n "$m" && test -f "$m/chroma.sqlite3" && echo sqlite; '
            'echo size=$(du -sb -- "$m" 2>/dev/null | cut -f1); '
            'docker ps -a --filter volume="$v" --format '
            "'user={{.Names}}={{.Label \"com.docker.compose.project\"}}' 2>/dev/null; "
            'test -f "$m/chroma.sqlite3" && '
            f'python3 -c {shell_word(_CONTENTS)} "$m/chroma.sqlite3" '
            "2>/dev/null;; "
            "esac; done; true"
        )

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        blocks: list[list[str]] = []
        for line in output:
            if line.startswith("@@volume"):
                blocks.append([])
            elif blocks:
                blocks[-1].append(line)
        volumes = [_volume(block) for block in blocks]
        return sorted(volumes, key=lambda v: v["name"])


def _volume(block: list[str]) -> dict[str, Any]:
    try:
        info = json.loads(block[0])
        labels = info.get("Labels") or {}
        volume: dict[str, Any] = {
            "name": str(info["Name"]),
            "mountpoint": str(info.get("Mountpoint", "")),
            "compose_project": labels.get("com.docker.compose.project"),
            "has_chroma_data": "sqlite" in block[1:],
            "size_bytes": 0,
            "users": [],
            "contents": None,
        }
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as error:
        raise parse_error(
            "LegacyVolumes", f"volume inspect: {type(error).__name__}: {error}"
        ) from None
    for line in block[1:]:
        if line.startswith("size="):
            volume["size_bytes"] = to_int(line[5:] or "0", "LegacyVolumes", "du size")
        elif line.startswith("user="):
            name, _, project = line[5:].partition("=")
            volume["users"].append({"name": name, "project": project or None})
        elif line.startswith("contents="):
            volume["contents"] = line[9:]
    volume["users"].sort(key=lambda user: user["name"])
    return volume


# Counted read-only (immutable) for the report only: the migration reads a copy.
_CONTENTS = (
    "import sqlite3, sys; db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro&immutable=1', "
    "uri=True); c = db.execute('SELECT count(*) FROM collections').fetchone()[0]; "
    'r = db.execute("SELECT count(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id '
    "WHERE s.scope = 'METADATA'\").fetchone()[0]; print(f'contents={c} collections, {r} records')"
)
