"""Print the table of data keys in docs/configuration.md: `python -m declaration.settings_table`.

Generated from :class:`declaration.settings.Settings` (key, default, core, description,
example);
a test checks that docs/configuration.md contains exactly this table, so the docs
cannot fall behind the code.
"""

from __future__ import annotations

import shlex
from dataclasses import fields

from declaration.settings import PREFIX, Settings


def _default(value: object) -> str:
    if value is None or value == () or value == {}:
        return "unset"
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    return f"`{value}`"


def example(name: str, value: str, needs: tuple[str, ...]) -> str:
    """The example as typed: ``--data chroma_x=VALUE`` (quoted for a shell where it must be),
    with the other keys it needs."""
    pairs = [f"{PREFIX}{name}={value}", *needs]
    return " ".join(f"--data {shlex.quote(pair)}" for pair in pairs)


def settings_table() -> str:
    rows = ["| key | default | core | meaning | example |", "| --- | --- | --- | --- | --- |"]
    for declared in fields(Settings):
        core = "yes" if declared.metadata["core"] else ""
        meaning = declared.metadata["description"]
        typed = example(
            declared.name, declared.metadata["example"], declared.metadata["example_with"]
        )
        rows.append(
            f"| `{PREFIX}{declared.name}` | {_default(declared.default)} | {core} | {meaning} "
            f"| `{typed}` |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
