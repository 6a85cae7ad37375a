"""Print the table of data keys in docs/configuration.md: `python -m declaration.settings_table`.

A test checks that docs/configuration.md contains exactly this table, so the docs
cannot fall behind the code.
"""

from __future__ import annotations

from declaration.settings import SETTINGS


def _default(value: object) -> str:
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| key | default | core | meaning |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        default = "unset" if setting.default is None else _default(setting.default)
        required = "yes" if setting.required else ""
        rows.append(f"| `{setting.key}` | {default} | {required} | {setting.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
