"""The JSON Schema of the data keys, generated from the settings declaration.

`python -m declaration.settings_schema > schemas/data-keys.schema.json` writes the shipped
file; a test fails when it differs from what :class:`declaration.settings.Settings` gives.
Editors and other tools can check a host's data with it before a run. pydantic turns each
key's type into JSON Schema; it is imported here only, never on a deploy's path.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, get_type_hints

from pydantic import TypeAdapter

from declaration.settings import PREFIX, Settings


def key_schema(written_as: Any, default: Any, description: str, core: bool) -> dict[str, Any]:
    """One key: the type to write, its default as written, its meaning."""
    schema = TypeAdapter(written_as).json_schema()
    if schema.get("type") == "object":  # a mapping, kept as sorted pairs: written as a mapping
        default = dict(default)
    schema.update(default=json.loads(json.dumps(default)), description=description)
    if core:
        schema["core"] = True
    return dict(sorted(schema.items()))


def data_keys_schema() -> dict[str, Any]:
    """Every ``chroma_`` key with its type, default and description; other keys pass."""
    types = get_type_hints(Settings)
    properties = {
        PREFIX + declared.name: key_schema(
            declared.metadata["written_as"] or types[declared.name],
            declared.default,
            declared.metadata["description"],
            declared.metadata["core"],
        )
        for declared in fields(Settings)
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/chroma-deploy/chroma-deploy/schemas/data-keys.schema.json",
        "title": "chroma-deploy data keys",
        "description": (
            "The data of one host (group_data/all.py, inventory.py host data, --data): every "
            f"{PREFIX} key chroma-deploy reads, generated from declaration/settings.py. Types are "
            "the ones to write in data files; --data strings such as '8001' or 'true' are read "
            f"as well. An unknown {PREFIX} key is refused (a typo would fall back to a default); "
            "keys of pyinfra or your own pass. core: always defined, other tools may rely on it. "
            "Rules across keys (e.g. chroma_app_enabled needs chroma_app_image) and the checks "
            "of each value are in the model, not here."
        ),
        "type": "object",
        "properties": properties,
        "patternProperties": {f"^(?!{PREFIX})": {}},
        "additionalProperties": False,
    }


def schema_text() -> str:
    return json.dumps(data_keys_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
