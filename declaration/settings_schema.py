"""The JSON Schema of the data keys, generated from the settings model.

`python -m declaration.settings_schema > schemas/data-keys.schema.json` writes the shipped
file; a test fails when it differs from what :class:`declaration.settings.Settings` gives.
Editors and other tools can check a host's data with it before a run.
"""

from __future__ import annotations

import json
from typing import Any

from declaration.settings import PREFIX, Settings


def data_keys_schema() -> dict[str, Any]:
    """Every ``chroma_`` key with its type, default and description; other keys pass."""
    generated = Settings.model_json_schema(by_alias=True)
    properties = {
        key: {name: value for name, value in schema.items() if name != "title"}
        for key, schema in generated["properties"].items()
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
