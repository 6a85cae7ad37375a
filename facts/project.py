"""The files chroma-deploy writes in the project dir: compose file and .gitignore."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word, to_int
from facts.datadirs import STAT_FORMAT, parse_stat

# What a plain `docker compose` typed in the project dir reads besides (or instead of)
# our docker-compose.yml: the files it prefers to it (compose.yaml and compose.yml win,
# docker-compose.yaml makes it warn and pick one), the overrides it merges into it, and
# the .env whose COMPOSE_ variables win over the file, even over our own `-f`.
COMPOSE_READS = (
    ".env",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)


class ProjectFiles(FactBase[dict[str, Any]]):
    """The project dir's stat, its compose file and its .gitignore.

    ``{"dir": None | {"type", "uid", "gid", "user", "group", "mode"} (as
    DataDirs), "compose": None | {"sha256": hex of the file's bytes,
    "content": str}, "gitignore": None | [line, ...],
    "gitignore_ends_with_newline": bool}``. None: the dir (then everything is
    None) or the file is missing. Contents travel base64-encoded, so any text
    survives the line-based output; bytes that are not UTF-8 read as U+FFFD.
    ``gitignore`` lines are split at "\\n" only, as git reads them (a CRLF
    file's "\\r" is dropped, as git drops it). ``gitignore_ends_with_newline``
    is also True for an empty file: a line can be appended as is.
    ``files``: ``{name: stat as "dir"}`` for the compose file, ``.gitignore`` and
    every name of COMPOSE_READS that exists in the project dir, whatever its
    kind (a dir where the compose file belongs shows here, not in "compose").
    ``env_compose``: the names of the COMPOSE_ variables ``.env`` sets (names
    only: a value may be a secret).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "dir": None,
            "compose": None,
            "gitignore": None,
            "gitignore_ends_with_newline": False,
            "files": {},
            "env_compose": [],
        }

    # pyinfra calls command() and process() on one instance: command() keeps the
    # names that process() maps the numbered stat lines back to.
    names: tuple[str, ...] = ()

    def command(self, project_dir: str, compose_file: str = "docker-compose.yml") -> str:
        directory = shell_word(project_dir)
        compose = shell_word(f"{project_dir}/{compose_file}")
        gitignore = shell_word(f"{project_dir}/.gitignore")
        self.names = (compose_file, ".gitignore", *COMPOSE_READS)
        names = " ".join(shell_word(name) for name in self.names)
        env = shell_word(f"{project_dir}/.env")
        return (
            f"test -d {directory} || exit 0; echo @@dir; stat -c '{STAT_FORMAT}' -- {directory}; "
            f"if test -f {compose}; then echo @@compose; base64 -w0 < {compose}; echo; fi; "
            f"if test -f {gitignore}; then echo @@gitignore; base64 -w0 < {gitignore}; echo; fi; "
            # One stat for all the names that exist, after the list of their numbers.
            f"echo @@files; set --; n=; i=0; for f in {names}; do "
            f'p={directory}/"$f"; {{ test -e "$p" || test -L "$p"; }} && '
            'set -- "$@" "$p" && n="$n $i"; i=$((i + 1)); done; echo "at$n"; '
            f"[ $# -eq 0 ] || stat -c '{STAT_FORMAT}' -- \"$@\"; "
            f"if test -f {env}; then echo @@env; sed -n "
            "'s/^[[:space:]]*\\(export[[:space:]]\\{1,\\}\\)\\{0,1\\}\\(COMPOSE_[A-Za-z0-9_]*\\)"
            f"[[:space:]]*=.*/\\2/p' {env}; fi; "
            "true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if "dir" not in found:  # pyinfra itself gives default() for no output
            return result
        if not found["dir"]:
            raise parse_error("ProjectFiles", "no stat line for the project dir")
        result["dir"] = parse_stat(found["dir"][0], "ProjectFiles")
        if "compose" in found:
            raw = _decode(found["compose"])
            result["compose"] = {
                "sha256": hashlib.sha256(raw).hexdigest(),
                "content": raw.decode("utf-8", errors="replace"),
            }
        if "gitignore" in found:
            text = _decode(found["gitignore"]).decode("utf-8", errors="replace")
            lines = text.split("\n")
            if text.endswith("\n") or not text:
                lines.pop()
            result["gitignore"] = [line.removesuffix("\r") for line in lines]
            result["gitignore_ends_with_newline"] = text.endswith("\n") or not text
        listed = found.get("files") or ["at"]
        numbers = listed[0].removeprefix("at").split()
        if not listed[0].startswith("at") or len(numbers) != len(listed) - 1:
            raise parse_error("ProjectFiles", f"unexpected list of files {listed!r}")
        for number, line in zip(numbers, listed[1:], strict=True):
            name = self.names[to_int(number, "ProjectFiles", "file number")]
            result["files"][name] = parse_stat(line, "ProjectFiles")
        result["env_compose"] = sorted(
            {line.strip() for line in found.get("env", []) if line.strip()}
        )
        return result


def _decode(lines: list[str]) -> bytes:
    try:
        return base64.b64decode("".join(lines).strip(), validate=True)
    except (ValueError, binascii.Error) as error:
        raise parse_error("ProjectFiles", f"base64: {error}") from None


# The shape of a segment dir's name (a UUID: 8-4-4-4-12 hex digits), as a shell glob.
SEGMENT_GLOB = "-".join("[0-9a-f]" * n for n in (8, 4, 4, 4, 12))


class SafetyState(FactBase[dict[str, Any]]):
    """The data-safety records of a project and the copies moved aside beside its data dir.

    ``{"records": [file names in <project>/.chroma-deploy, sorted], "aside":
    [names in the project dir that start with "<data_dir>." (copies moved
    aside by a restore or a failed migration)], "data_has_sqlite": bool,
    "data_segment_dirs": [the data dir's dirs named as Chroma names a segment's
    (a UUID), sorted]}``. Empty lists and False when the project dir does not exist.
    Segment dirs without the ``chroma.sqlite3`` that names them are a database moved
    away or lost, never a new data dir (operations/migrate.py data_safety_guard).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"records": [], "aside": [], "data_has_sqlite": False, "data_segment_dirs": []}

    def command(self, project_dir: str, data_dir: str) -> str:
        state = shell_word(f"{project_dir}/.chroma-deploy")
        data = shell_word(f"{project_dir}/{data_dir}")
        return (
            f"echo @@records; test -d {state} && ls -1A {state}; "
            f"echo @@aside; cd {shell_word(project_dir)} 2>/dev/null && "
            f'for p in {shell_word(data_dir)}.*; do test -e "$p" && echo "$p"; done; '
            f"echo @@sqlite; test -f {shell_word(f'{project_dir}/{data_dir}/chroma.sqlite3')} "
            "&& echo yes; "
            f"echo @@segments; for d in {data}/{SEGMENT_GLOB}; do "
            'test -d "$d" && printf \'%s\\n\' "${d##*/}"; done; '
            "true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        return {
            "records": sorted(line for line in found.get("records", []) if line.strip()),
            "aside": sorted(line for line in found.get("aside", []) if line.strip()),
            "data_has_sqlite": any(line.strip() == "yes" for line in found.get("sqlite", [])),
            "data_segment_dirs": sorted(
                line.strip() for line in found.get("segments", []) if line.strip()
            ),
        }
