"""Whether a Chroma 1.x container's last start was refused by its schema guard.

A 1.x server that validates its schema (``CHROMA_SQLITEDB__MIGRATION_MODE=validate``,
chroma-deploy's default) exits at start when its data lacks migrations its image
would apply: an image newer than the data, set by hand, or data older than the
image. It says so in its log, once per start, and the restart policy starts it
again: tried on the real 1.5.9 image, it prints
``Error creating Frontend Config: MigrationError(UnappliedMigrationsFound)`` and exits 1.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import shell_word

# What 1.x says when it refuses data with a migration pending (upstream rust/sqlite/src/db.rs,
# SqliteCreationError::UnappliedMigrationsFound, read on the real 1.5.9 image's log).
REFUSAL = "UnappliedMigrationsFound"


class SchemaRefusal(FactBase[dict[str, Any]]):
    """The line of ``container``'s last words that says its schema guard refused the data.

    ``{"refused": bool, "said": the line (None: not refused)}``. Only the end of its log
    counts (the last 20 lines: a refusal is 5): a container that ran after a refusal
    (chroma-deploy applied the migrations) has said more since, and one in a restart loop
    between two starts still shows its last refusal (its log since ``State.StartedAt`` is
    empty until the new start prints it). Not refused when Docker or the container is
    absent. Read only for a chroma container that is not running healthy: a no-op run
    never asks.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"refused": False, "said": None}

    def command(self, container: str) -> str:
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            f"docker logs --tail 20 {shell_word(container)} 2>&1"
            f" | grep -m 1 -F {shell_word(REFUSAL)}; true"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        said = next((line.strip() for line in output if REFUSAL in line), None)
        return {"refused": said is not None, "said": said}


def not_serving(containers: list[dict[str, Any]]) -> str | None:
    """The name of the project's chroma container when it is not running healthy, else None:
    the one container whose last start SchemaRefusal is worth reading (ComposeStack's list)."""
    for container in containers:
        if container["service"] != "chroma" or container.get("oneoff"):
            continue
        if container["state"] == "running" and container["health"] in ("healthy", None):
            continue
        return str(container["name"])
    return None
