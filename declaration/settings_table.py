"""Print the table of data keys in docs/configuration.md: `python -m declaration.settings_table`.

Generated from :class:`declaration.settings.Settings` (key, default, core, description);
a test checks that docs/configuration.md contains exactly this table, so the docs
cannot fall behind the code.
"""

from __future__ import annotations

from dataclasses import fields

from declaration.settings import PREFIX, Settings


def _default(value: object) -> str:
    if value is None or value == () or value == {}:
        return "unset"
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| key | default | core | meaning |", "| --- | --- | --- | --- |"]
    for declared in fields(Settings):
        core = "yes" if declared.metadata["core"] else ""
        meaning = declared.metadata["description"]
        rows.append(
            f"| `{PREFIX}{declared.name}` | {_default(declared.default)} | {core} | {meaning} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
