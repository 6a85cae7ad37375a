"""Whether the host opens its off-host restic repository, read with a given config (#23)."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, shell_word


class ResticRepository(FactBase[dict[str, Any]]):
    """What restic on the host says of the repository a config file names.

    ``{"verdict": str | None, "reason": str}``: files/chroma_restic.py's verdict
    ("ok", "wrong password", "no repository", "host key", "unreachable", "locked",
    "disk full", "failed") of ``restic --no-lock cat config`` (it reads the
    repository's config with the password and writes nothing, not even a lock),
    and the line of restic's or ssh's stderr that says why. ``verdict`` None:
    the tool or python3 is not on the host, or the config file is missing.
    The repository and password come from the files the config names: neither is
    on the command line nor in the output.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"verdict": None, "reason": ""}

    def command(self, tools_dir: str, config: str) -> str:
        tool = shell_word(f"{tools_dir}/chroma_restic.py")
        return (
            f"test -f {tool} && test -f {shell_word(config)} && "
            f"python3 {tool} verdict --config {shell_word(config)} 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        text = "".join(output).strip()
        if not text:
            return self.default()
        try:
            found = json.loads(text)
        except ValueError:
            raise parse_error("ResticRepository", f"not JSON: {text[:80]!r}") from None
        return {"verdict": found.get("verdict"), "reason": found.get("reason", "")}
