"""Who the connecting user is, and the ids of the declared owner and group."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word, to_int


class Accounts(FactBase[dict[str, Any]]):
    """The login user and the declared owner and group as numeric ids.

    ``{"login_user": str, "login_uid": int, "login_group": str, "login_gid":
    int, "owner": None | {"name": str|None, "uid": int, "gid": int}, "group":
    None | {"name": str|None, "gid": int}}``. ``owner``/``group`` arguments
    None: the login user and their primary group. Result ``owner``/``group``
    None: a name with no account. A numeric id with no account gives ``name``
    None (and, for an owner, ``gid`` -1: no primary group known). A login id
    without an account name is reported by its number.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        """Only when ``id`` could not run at all: nothing is known, ids are -1."""
        return {"login_user": "", "login_uid": -1, "login_group": "", "login_gid": -1,
                "owner": None, "group": None}  # fmt: skip

    owner: str | None = None
    group: str | None = None

    def command(self, owner: str | None = None, group: str | None = None) -> str:
        self.owner = None if owner is None else str(owner)
        self.group = None if group is None else str(group)
        parts = [
            "echo @@login; id -un 2>/dev/null || id -u; id -u; id -gn 2>/dev/null || id -g; id -g"
        ]
        if self.owner is not None:
            parts.append(f"echo @@owner; getent passwd {shell_word(self.owner)} || true")
        if self.group is not None:
            parts.append(f"echo @@group; getent group {shell_word(self.group)} || true")
        return "; ".join(parts)

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        login_lines = found.get("login", [])
        if len(login_lines) != 4:
            raise parse_error("Accounts", f"expected 4 lines from id, got {login_lines!r}")
        user, uid, group_name, gid = (line.strip() for line in login_lines)
        login = {
            "login_user": user,
            "login_uid": to_int(uid, "Accounts", "login uid"),
            "login_group": group_name,
            "login_gid": to_int(gid, "Accounts", "login gid"),
        }
        owner: dict[str, Any] | None = {
            "name": user, "uid": login["login_uid"], "gid": login["login_gid"],
        }  # fmt: skip
        if self.owner is not None:
            owner = self._owner(found.get("owner", []))
        group: dict[str, Any] | None = {"name": group_name, "gid": login["login_gid"]}
        if self.group is not None:
            group = self._group(found.get("group", []))
        return {**login, "owner": owner, "group": group}

    def _owner(self, lines: list[str]) -> dict[str, Any] | None:
        entry = next((line for line in lines if line.strip()), None)
        if entry is not None:
            fields = entry.split(":")
            if len(fields) < 4:
                raise parse_error("Accounts", f"unexpected passwd entry {entry!r}")
            return {
                "name": fields[0],
                "uid": to_int(fields[2], "Accounts", "uid"),
                "gid": to_int(fields[3], "Accounts", "gid"),
            }
        if self.owner is not None and self.owner.isdigit():
            return {"name": None, "uid": int(self.owner), "gid": -1}
        return None

    def _group(self, lines: list[str]) -> dict[str, Any] | None:
        entry = next((line for line in lines if line.strip()), None)
        if entry is not None:
            fields = entry.split(":")
            if len(fields) < 3:
                raise parse_error("Accounts", f"unexpected group entry {entry!r}")
            return {"name": fields[0], "gid": to_int(fields[2], "Accounts", "gid")}
        if self.group is not None and self.group.isdigit():
            return {"name": None, "gid": int(self.group)}
        return None


class UsedIds(FactBase[dict[str, list[int]] | None]):
    """Every uid and gid the host's accounts and groups use, to pick a free system id.

    ``{"uids": [int, ...], "gids": [int, ...]}``, sorted. None when ``getent``
    printed nothing at all (no such command): no id is known to be free.
    """

    @staticmethod
    def default() -> dict[str, list[int]] | None:
        return None

    def command(self) -> str:
        return (
            "echo @@uids; getent passwd 2>/dev/null | cut -d: -f3; "
            "echo @@gids; getent group 2>/dev/null | cut -d: -f3"
        )

    def process(self, output: list[str]) -> dict[str, list[int]] | None:
        found = sections(output)
        uids = [to_int(line, "UsedIds", "uid") for line in found.get("uids", []) if line.strip()]
        gids = [to_int(line, "UsedIds", "gid") for line in found.get("gids", []) if line.strip()]
        if not uids and not gids:
            return None
        return {"uids": sorted(set(uids)), "gids": sorted(set(gids))}


def free_system_id(used: dict[str, list[int]] | None) -> int | None:
    """The highest id from 999 down to 100 that is neither a uid nor a gid, as useradd -r picks.

    One number for the account and its group, so files show the same id for both.
    """
    if used is None:
        return None
    taken = set(used["uids"]) | set(used["gids"])
    return next((i for i in range(999, 99, -1) if i not in taken), None)
