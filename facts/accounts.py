"""Who the connecting user is, and the ids of the declared owner and group."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections


class Accounts(FactBase[dict[str, Any]]):
    """The login user and the declared owner and group as numeric ids.

    ``{"login_user", "login_uid", "login_group", "login_gid", "owner": None |
    {"name": str|None, "uid", "gid"}, "group": None | {"name": str|None, "gid"}}``.
    ``owner``/``group`` None: a name with no account. A numeric id with no
    account gives ``name`` None (and, for an owner, ``gid`` -1). Unset owner
    or group means the login user and their primary group.
    """

    owner: str | None = None
    group: str | None = None

    def command(self, owner: str | None = None, group: str | None = None) -> str:
        self.owner, self.group = owner, group
        parts = ["echo @@login; id -un; id -u; id -gn; id -g"]
        if owner is not None:
            parts.append(f"echo @@owner; getent passwd {q(owner)} || true")
        if group is not None:
            parts.append(f"echo @@group; getent group {q(group)} || true")
        return "; ".join(parts)

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        try:
            user, uid, group_name, gid = found["login"][:4]
            login = {"login_user": user, "login_uid": int(uid),
                     "login_group": group_name, "login_gid": int(gid)}  # fmt: skip
        except (KeyError, ValueError):
            raise parse_error("Accounts", "no answer from id") from None
        owner: dict[str, Any] | None = {"name": user, "uid": int(uid), "gid": int(gid)}
        if self.owner is not None:
            owner = self._owner(found.get("owner", []))
        group: dict[str, Any] | None = {"name": group_name, "gid": int(gid)}
        if self.group is not None:
            group = self._group(found.get("group", []))
        return {**login, "owner": owner, "group": group}

    def _owner(self, lines: list[str]) -> dict[str, Any] | None:
        if lines:
            name, _, uid, gid = lines[0].split(":")[:4]
            return {"name": name, "uid": int(uid), "gid": int(gid)}
        if self.owner and self.owner.isdigit():
            return {"name": None, "uid": int(self.owner), "gid": -1}
        return None

    def _group(self, lines: list[str]) -> dict[str, Any] | None:
        if lines:
            name, _, gid = lines[0].split(":")[:3]
            return {"name": name, "gid": int(gid)}
        if self.group and self.group.isdigit():
            return {"name": None, "gid": int(self.group)}
        return None
