"""What a live Chroma leaks and what it will run out of: files/chroma_maintain.py's report."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word


class MaintenanceReport(FactBase[dict[str, Any]]):
    """The host program's read-only report of one data dir, or why there is none.

    ``{"tool": bool, "report": dict | None, "error": str | None}``. ``tool`` False:
    chroma-deploy's host tools of this version are not on the host yet (maintain.py
    puts them there; nothing of the project is touched). ``report``: the program's
    JSON (schemas/maintain.schema.json, ``report``); ``error``: its one line when it
    could not read the data dir (none there, a database it cannot open).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"tool": False, "report": None, "error": None}

    def command(
        self,
        tools_dir: str,
        project_dir: str,
        data_dir: str,
        backup_target: str,
        mem_limit: int | None = None,
    ) -> str:
        tool = f"{tools_dir}/chroma_maintain.py"
        limit = f" --mem-limit {int(mem_limit)}" if mem_limit else ""
        return (
            f"test -f {shell_word(tool)} || {{ echo @@no-tool; exit 0; }}; echo @@report; "
            f"python3 {shell_word(tool)} report --project-dir {shell_word(project_dir)} "
            f"--data-dir {shell_word(data_dir)} --backup-target {shell_word(backup_target)}"
            f"{limit} 2>&1; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        if "no-tool" in found:
            return self.default()
        text = "".join(found.get("report", [])).strip()
        if text.startswith("{"):
            try:
                return {"tool": True, "report": json.loads(text), "error": None}
            except ValueError:
                raise parse_error("MaintenanceReport", f"not JSON: {text[:80]!r}") from None
        lines = [line.strip() for line in found.get("report", []) if line.strip()]
        return {"tool": True, "report": None, "error": lines[-1] if lines else "no answer"}
