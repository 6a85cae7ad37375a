"""A data dir without Chroma data where there was some: the deploy's refusal lines for it.

Pure functions of facts.project.SafetyState, read by the data-safety guard before anything
changes (operations/migrate.py) and again by the step that would make a new data dir's
schema (operations/schema.py): a refused start can leave a schema-less chroma.sqlite3 that
the guard counts as a database, and a new schema must never be made where data was.
"""

from __future__ import annotations

from typing import Any

from declaration.targets import DataTarget


def data_left_aside(state: dict[str, Any], data: DataTarget, has_data: bool) -> str | None:
    """The refusal for a data dir without Chroma data (``has_data`` False) while a copy of it
    was moved aside beside it, or a restore did not finish (SafetyState); else None."""
    unfinished = "restore-pending.json" in state["records"]
    if has_data or not (unfinished or state["aside"]):
        return None
    return (
        f"chroma_allow_empty_data_dir: {data.path} holds no Chroma data while "
        f"{', '.join(state['aside']) or 'an unfinished restore'} exists beside it; put the "
        "data back (restore.py, or move that copy into place), or set "
        "chroma_allow_empty_data_dir=true to start an empty server"
    )


def database_lost(state: dict[str, Any], data: DataTarget, has_data: bool) -> str | None:
    """The refusal for segment dirs in a data dir whose database is gone (``has_data`` False:
    no chroma.sqlite3, or one with no schema), else None. A new database would serve none
    of their records."""
    lost = [] if has_data else state["data_segment_dirs"]
    if not lost:
        return None
    return (
        f"chroma_allow_empty_data_dir: {data.path} holds {len(lost)} segment dir(s) of Chroma "
        f"({lost[0]}) but no chroma.sqlite3 with a schema, the database that names them (moved "
        "away, emptied or lost?), and a new one would serve none of their records; put "
        "chroma.sqlite3 back (or restore an archive with restore.py), or set "
        "chroma_allow_empty_data_dir=true to start an empty server beside them"
    )
