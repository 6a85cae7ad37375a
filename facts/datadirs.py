"""The project dir and data dirs as they are on disk."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections

STAT_FORMAT = "%F|%u|%g|%U|%G|%a"


def parse_stat(line: str, fact: str) -> dict[str, Any]:
    """One ``stat -c STAT_FORMAT`` line; user/group None when the id has no account."""
    try:
        kind, uid, gid, user, group, mode = line.split("|")
        return {
            "type": kind, "uid": int(uid), "gid": int(gid),
            "user": None if user == "UNKNOWN" else user,
            "group": None if group == "UNKNOWN" else group,
            "mode": mode,
        }  # fmt: skip
    except ValueError:
        raise parse_error(fact, f"unexpected stat line {line!r}") from None


class DataDirs(FactBase[dict[str, Any]]):
    """Each path: None when missing, else its stat and what it holds.

    ``{path: None | {"type", "uid", "gid", "user" (None: no account), "group",
    "mode" ("750"), "has_sqlite": bool (chroma.sqlite3 directly inside),
    "size_bytes": int, "gitkeep": None | {"uid", "gid", "mode", "size"}}}``.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    paths: tuple[str, ...] = ()

    def command(self, paths: list[str]) -> str:
        self.paths = tuple(paths)
        parts = []
        for index, path in enumerate(paths):
            quoted = q(path)
            parts.append(
                f"echo @@{index}; if test -e {quoted} || test -L {quoted}; then "
                f"stat -c '{STAT_FORMAT}' {quoted}; "
                f"test -f {quoted}/chroma.sqlite3 && echo sqlite; "
                f"echo size=$(du -sb {quoted} 2>/dev/null | cut -f1); "
                f"test -f {quoted}/.gitkeep"
                f" && echo gitkeep=$(stat -c '%u|%g|%a|%s' {quoted}/.gitkeep); "
                "fi"
            )
        return "; ".join(parts) + "; true"

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result: dict[str, Any] = {}
        for index, path in enumerate(self.paths):
            lines = found.get(str(index), [])
            if not lines:
                result[path] = None
                continue
            state = parse_stat(lines[0], "DataDirs")
            state["has_sqlite"] = "sqlite" in lines[1:]
            state["size_bytes"] = 0
            state["gitkeep"] = None
            for line in lines[1:]:
                if line.startswith("size="):
                    state["size_bytes"] = int(line[5:] or 0)
                elif line.startswith("gitkeep="):
                    uid, gid, mode, size = line[8:].split("|")
                    state["gitkeep"] = {
                        "uid": int(uid),
                        "gid": int(gid),
                        "mode": mode,
                        "size": int(size),
                    }
            result[path] = state
        return result
