"""A data dir without Chroma data where there was some: the deploy's refusal lines for it.

Pure functions of facts.project.SafetyState (and facts.datahomes.DataSchema), read by the
data-safety guard before anything changes (operations/migrate.py), again by the step that
would make a new data dir's schema (operations/schema.py): a refused start can leave a
schema-less chroma.sqlite3 that the guard counts as a database, and a new schema must never
be made where data was; and by drift.py (checks/compare.py), which says what the deploy
would refuse.
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


def schema_less(schema: dict[str, Any]) -> bool:
    """DataSchema's answer for a chroma.sqlite3 that holds no schema (no migration recorded):
    what a validating server that refused an empty data dir leaves behind."""
    return schema["levels"] is None and "no such table" in (schema["error"] or "")


def names_none(schema: dict[str, Any]) -> bool:
    """A database with a schema and collections of its own that names none of the segment
    dirs beside it (DataSchema's counts): another stack's, or another day's put back.

    One that names no collection at all is not refused: a new server's database beside old
    dirs and one whose collections were all deleted (1.x leaks their dirs, as prove.py's own
    canary does) hold the same rows, and the second is an ordinary state (maintain.py
    reports its dirs as orphans). docs/data-safety.md names the first a known limit.
    """
    if not schema["levels"] or not schema["collections"]:
        return False
    if schema.get("segment_dirs_named") is None:
        return False
    return bool(schema["segment_dirs"]) and schema["segment_dirs_named"] == 0


def damaged(schema: dict[str, Any]) -> bool:
    """DataSchema could not read the file as a database (SQLite's DatabaseError: "file is not
    a database", "database disk image is malformed": a copy cut short, a disk error), as
    opposed to a host without python3 or a lock held a while."""
    return (schema["error"] or "").startswith("DatabaseError")


def database_damaged(schema: dict[str, Any], data: DataTarget) -> str | None:
    """The refusal for a chroma.sqlite3 SQLite cannot read (``damaged``), else None: a server
    still serving has the whole file open; its next start would fail on this one."""
    if not damaged(schema):
        return None
    return (
        f"chroma_allow_empty_data_dir: {data.path}/chroma.sqlite3 cannot be read as a database "
        f"({schema['error']}): damaged or cut short (a copy that failed?); nothing was "
        "changed: put a whole copy back (or restore an archive with restore.py), or set "
        "chroma_allow_empty_data_dir=true to go on with it"
    )


def segments_unnamed(state: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """What stands beside the data dir's segment dirs instead of the database that names
    them (no chroma.sqlite3, one with no schema, one that names none of them), or a
    chroma.sqlite3 that cannot be read at all, else None: drift's database_lost, what the
    deploy refuses."""
    if state["data_has_sqlite"] and damaged(schema):
        return f"a chroma.sqlite3 that cannot be read ({schema['error']})"
    if not state["data_segment_dirs"]:
        return None
    if not state["data_has_sqlite"] or schema_less(schema):
        return "no chroma.sqlite3 with a schema"
    if names_none(schema):
        return f"a chroma.sqlite3 that names none of them ({schema['collections']} collection(s))"
    return None


def database_names_none(
    state: dict[str, Any], schema: dict[str, Any], data: DataTarget
) -> str | None:
    """The refusal for segment dirs beside a chroma.sqlite3 with collections of its own that
    names none of them (``names_none``), else None.

    Chroma keeps a collection's vectors in a segment dir and everything else (its name,
    ids, documents, metadata) in chroma.sqlite3, and a database names the segments it
    made. One that names none of the dirs beside it is either the wrong file put back
    (another stack's: the records are gone with the file that named them), or the
    collections that had the dirs were deleted through the API (1.x and 0.6.3 leave their
    dirs: maintain.py's orphans) and the new ones hold no vector yet. The deploy asks,
    and the answer that keeps data is the default.
    """
    dirs = state["data_segment_dirs"]
    if not dirs or not state["data_has_sqlite"] or not names_none(schema):
        return None
    return (
        f"chroma_allow_empty_data_dir: {data.path} holds {len(dirs)} segment dir(s) of Chroma "
        f"({dirs[0]}) beside a chroma.sqlite3 that names none of them ({schema['collections']}"
        " collection(s)): the database that named them was replaced (put it back, or restore "
        "an archive with restore.py), or the collections they held were deleted (maintain.py "
        "--apply orphans moves their dirs aside); or set chroma_allow_empty_data_dir=true to serve "
        "that database beside them"
    )
