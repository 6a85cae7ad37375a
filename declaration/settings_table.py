"""Print the table of data keys in docs/configuration.md: `python -m declaration.settings_table`.

Generated from :class:`declaration.settings.Settings` (key, default, core, description);
a test checks that docs/configuration.md contains exactly this table, so the docs
cannot fall behind the code.
"""

from __future__ import annotations

from declaration.settings import PREFIX, Settings


def _default(value: object) -> str:
    if value is None or value == () or value == {}:
        return "unset"
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| key | default | core | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        core = "yes" if field.json_schema_extra == {"core": True} else ""
        rows.append(
            f"| `{PREFIX}{name}` | {_default(field.default)} | {core} | {field.description} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
