"""The files chroma-deploy writes in the project dir: compose file and .gitignore."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections
from facts.datadirs import STAT_FORMAT, parse_stat


class ProjectFiles(FactBase[dict[str, Any]]):
    """The project dir's stat, its compose file and its .gitignore.

    ``{"dir": None | stat, "compose": None | {"sha256", "content"},
    "gitignore": None | [lines], "gitignore_ends_with_newline": bool}``.
    None means the dir or file is missing. Contents travel base64-encoded, so
    any text survives the line-based output.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "dir": None,
            "compose": None,
            "gitignore": None,
            "gitignore_ends_with_newline": False,
        }

    def command(self, project_dir: str, compose_file: str = "docker-compose.yml") -> str:
        directory = q(project_dir)
        compose = q(f"{project_dir}/{compose_file}")
        gitignore = q(f"{project_dir}/.gitignore")
        return (
            f"test -d {directory} || exit 0; echo @@dir; stat -c '{STAT_FORMAT}' {directory}; "
            f"if test -f {compose}; then echo @@compose; base64 -w0 < {compose}; echo; fi; "
            f"if test -f {gitignore}; then echo @@gitignore; base64 -w0 < {gitignore}; echo; fi; "
            "true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        result = self.default()
        if found.get("dir"):
            result["dir"] = parse_stat(found["dir"][0], "ProjectFiles")
        if "compose" in found:
            content = _decode(found["compose"])
            result["compose"] = {
                "sha256": hashlib.sha256(content.encode()).hexdigest(),
                "content": content,
            }
        if "gitignore" in found:
            text = _decode(found["gitignore"])
            result["gitignore"] = text.splitlines()
            result["gitignore_ends_with_newline"] = text.endswith("\n") or text == ""
        return result


def _decode(lines: list[str]) -> str:
    try:
        return base64.b64decode("".join(lines).strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise parse_error("ProjectFiles", str(error)) from None
