"""The project's snapshots in its off-host repository, as restore.py finds them while it plans."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, shell_word


class OffsiteSnapshots(FactBase[dict[str, Any]]):
    """``restic snapshots --tag project=<name>`` through the host's own config (read-only).

    ``{"readable": bool, "snapshots": [{"id", "short_id", "time", "hostname",
    "paths", "version"}], "chosen": snapshot | None, "fault": str | None}``: the
    list oldest first, from every host; ``chosen``: the one ``snapshot`` names
    (``latest``: the newest), resolved by the host tool as its restore does.
    ``readable`` False: the host cannot read the repository yet (no restic, no
    ``offsite.json``, or this control machine's host tools not uploaded: a host
    the stack never ran on), so restore.py decides once they are in place.
    ``fault``: the one line the host tool refuses with (no such snapshot, an
    empty repository, a wrong password, an unreachable host). The repository and
    its password are read from the 0600 files the config names, never passed here.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"readable": False, "snapshots": [], "chosen": None, "fault": None}

    def command(self, config: str, tools_dir: str, snapshot: str) -> str:
        tool = shell_word(f"{tools_dir}/chroma_offsite_restore.py")
        return (
            f"test -f {shell_word(config)} && test -f {tool} && command -v restic >/dev/null "
            f"|| exit 0; echo @@snapshots; python3 {tool} snapshots --config {shell_word(config)} "
            f"--snapshot {shell_word(snapshot)}"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        lines = [line for line in output if line.strip()]
        if not lines or lines[0].strip() != "@@snapshots":
            return self.default()
        try:
            found = json.loads("".join(lines[1:]))
        except ValueError as error:
            raise parse_error("OffsiteSnapshots", f"JSON: {error}") from None
        if not isinstance(found, dict):
            raise parse_error("OffsiteSnapshots", "not a JSON object")
        return {
            "readable": True,
            "snapshots": list(found.get("snapshots") or []),
            "chosen": found.get("chosen"),
            "fault": found.get("fault"),
        }
