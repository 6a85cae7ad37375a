"""The data dirs (and any path) as they are on disk: stat, Chroma's file, size, .gitkeep."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word, to_int

STAT_FORMAT = "%F|%u|%g|%U|%G|%a"


def parse_stat(line: str, fact: str) -> dict[str, Any]:
    """One ``stat -c STAT_FORMAT`` line; user/group None when the id has no account.

    ``{"type": "directory"|"regular file"|"symbolic link"|..., "uid": int,
    "gid": int, "user": str|None, "group": str|None, "mode": "750"}``.
    """
    fields = line.split("|")
    if len(fields) != 6:
        raise parse_error(fact, f"unexpected stat line {line!r}")
    kind, uid, gid, user, group, mode = fields
    return {
        "type": kind,
        "uid": to_int(uid, fact, "uid"),
        "gid": to_int(gid, fact, "gid"),
        "user": None if user == "UNKNOWN" else user,
        "group": None if group == "UNKNOWN" else group,
        "mode": mode,
    }


class DataDirs(FactBase[dict[str, Any]]):
    """Each path as the host has it, read in one command for all paths.

    ``{path: None | {"type", "uid", "gid", "user", "group", "mode",
    "has_sqlite": bool, "size_bytes": int, "gitkeep": None | {"uid", "gid",
    "mode", "size"}}}``. None: nothing at the path (a dangling symlink is
    reported, as "symbolic link"). ``user``/``group`` None: the id has no
    account. ``mode`` is octal as ``stat -c %a`` prints it ("750").
    ``has_sqlite``: ``chroma.sqlite3`` is a file directly in it. ``size_bytes``
    is ``du -sb`` (0 when unreadable). ``gitkeep`` None: no ``.gitkeep`` in it.
    ``sha256``: the content's digest, for the regular files named in ``digests``
    (else None); only the digest is read, so a secret never reaches the output.
    ``gitkeep_kind``: what is at ``.gitkeep`` when it is there but not a regular
    file (a dir: creating the file would write into it), else None. ``acl``: an
    extended or default ACL is set (the ``+`` of ``ls -l``, which needs no acl
    package), with ``setfacl`` True when the host can remove it. ``foreign``:
    for the dirs named in ``contents``, the first thing found inside that is
    not owned by the dir's uid and gid, or that its owner cannot read and write
    (dirs: and enter), ``{"path": relative, "uid", "gid", "mode"}``; None when
    everything is (``find ... -quit``: it stops at the first, and walks the
    tree no more than ``du`` does). ``link``: the first symbolic link found
    inside instead (a ``chroma.sqlite3`` moved to another disk and linked back:
    the server in its container cannot follow it out of its mount), else None.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    # pyinfra calls command() and process() on one instance: command() keeps
    # the paths that process() maps the numbered sections back to.
    paths: tuple[str, ...] = ()

    def command(
        self,
        paths: list[str],
        digests: tuple[str, ...] | list[str] = (),
        contents: tuple[str, ...] | list[str] = (),
    ) -> str:
        # One path given as a string is one path, not a path per character.
        self.paths = (paths,) if isinstance(paths, str) else tuple(paths)
        parts = []
        for index, path in enumerate(self.paths):
            quoted = shell_word(path)
            # Every path is read on every run, on every host: a process per fact
            # where one will do (the shell's own expansions cut what du and
            # sha256sum print, not head and cut).
            digest = (
                # Read from stdin: sha256sum escapes a name that holds a newline.
                f'test -f {quoted} && {{ d=$(sha256sum < {quoted}); echo "sha256=${{d%% *}}"; }}; '
                if path in digests
                else ""
            )
            gitkeep = shell_word(f"{path}/.gitkeep")
            # The dir's own ids, cut from its stat line by the shell (no other process).
            inside = (
                f"s=${{s#*|}}; u=${{s%%|*}}; s=${{s#*|}}; g=${{s%%|*}}; test -d {quoted} && "
                f"find {quoted} -mindepth 1 \\( -type l -printf 'link=%P\\n' -quit \\) -o "
                f'\\( ! -uid "$u" -o ! -gid "$g" -o ! -perm -u=rw '
                "-o -type d ! -perm -u=x \\) -printf 'foreign=%U|%G|%m|%P\\n' -quit 2>/dev/null; "
                if path in contents
                else ""
            )
            parts.append(
                f"echo @@{index}; if test -e {quoted} || test -L {quoted}; then "
                f'set -- "$@" {quoted}; s=$(stat -c \'{STAT_FORMAT}\' -- {quoted}); echo "$s"; '
                f"test -f {quoted}/chroma.sqlite3 && echo sqlite; "
                # The leading digits only: du prints a name that holds a newline on two.
                f'u=$(du -sb -- {quoted} 2>/dev/null); echo "size=${{u%%[!0-9]*}}"; '
                f"if test -f {gitkeep}; then stat -c 'gitkeep=%u|%g|%a|%s' -- {gitkeep}; "
                f"elif test -e {gitkeep} || test -L {gitkeep}; then "
                f"stat -c 'gitkeep_kind=%F' -- {gitkeep}; fi; "
                f"{inside}{digest}fi"
            )
        # One ls for every path that exists, in the order given (-U), one line each (-b
        # escapes a newline in a name): its mode field ends with "+" for an extended
        # or default ACL. ls needs no acl package; removing an ACL needs setfacl.
        acl = (
            'echo @@acl; [ $# -eq 0 ] || ls -ldUb -- "$@" 2>/dev/null; '
            "command -v setfacl >/dev/null && echo setfacl=yes"
        )
        return "; ".join(["set --", *parts, acl, "true"])

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result: dict[str, Any] = {}
        for index, path in enumerate(self.paths):
            if str(index) not in found:
                raise parse_error("DataDirs", f"no answer for {path}")
            lines = found[str(index)]
            result[path] = _read_path(lines) if lines else None
        present = [path for path in self.paths if result[path] is not None]
        listed = [line for line in found.get("acl", []) if line != "setfacl=yes"]
        if "acl" in found and len(listed) != len(present):
            raise parse_error("DataDirs", f"ls listed {len(listed)} of {len(present)} paths")
        for path, line in zip(present, listed, strict=False):
            result[path]["acl"] = line.split(" ", 1)[0].endswith("+")
            result[path]["setfacl"] = "setfacl=yes" in found["acl"]
        return result


def _read_path(lines: list[str]) -> dict[str, Any]:
    state = parse_stat(lines[0], "DataDirs")
    state["has_sqlite"] = "sqlite" in lines[1:]
    state["size_bytes"] = 0
    state["gitkeep"] = None
    state["gitkeep_kind"] = None
    state["sha256"] = None
    state["acl"] = False
    state["setfacl"] = False
    state["foreign"] = None
    state["link"] = None
    for line in lines[1:]:
        if line.startswith("size="):
            state["size_bytes"] = to_int(line[5:] or "0", "DataDirs", "du size")
        elif line.startswith("gitkeep_kind="):
            state["gitkeep_kind"] = line[13:]
        elif line.startswith("foreign=") and state["foreign"] is None:
            fields = line[8:].split("|", 3)
            if len(fields) != 4:
                raise parse_error("DataDirs", f"unexpected owner line {line!r}")
            uid, gid, mode, relative = fields
            state["foreign"] = {
                "path": relative,
                "uid": to_int(uid, "DataDirs", "uid"),
                "gid": to_int(gid, "DataDirs", "gid"),
                "mode": mode,
            }
        elif line.startswith("link=") and state["link"] is None:
            state["link"] = line[5:]
        elif line.startswith("sha256="):
            state["sha256"] = line[7:] or None
        elif line.startswith("gitkeep="):
            fields = line[8:].split("|")
            if len(fields) != 4:
                raise parse_error("DataDirs", f"unexpected .gitkeep stat {line!r}")
            uid, gid, mode, size = fields
            state["gitkeep"] = {
                "uid": to_int(uid, "DataDirs", "uid"),
                "gid": to_int(gid, "DataDirs", "gid"),
                "mode": mode,
                "size": to_int(size, "DataDirs", "size"),
            }
    return state
