"""Print the migration level a Chroma database's schema is at: ``DIR=LEVEL`` per line.

Chroma records every schema migration it applied in the ``migrations`` table of
``chroma.sqlite3`` (one row per migration, numbered per dir: embeddings_queue,
metadb, sysdb), and a newer server applies its own on first open, one way. The
highest number per dir tells which version line wrote the data, whatever the
compose file or the image tag say (declaration/versions.py maps levels to
releases). Read-only: the file is opened with ``mode=ro``, so a live server's
database is never written. Prints nothing when the file has no such table.
Then ``@collections=N``, and ``@segment_dirs=N`` and ``@segment_dirs_named=M``: the
segment dirs beside the file (named by UUID, as facts/project.py's SEGMENT_GLOB
matches them) and how many of them its ``segments`` table names. A database that
names none of the dirs beside it is not the one that wrote them (checks/empty_data.py).
Standard library only; run by facts/datahomes.py's DataSchema as ``python3 - PATH``.
"""

import os
import re
import sqlite3
import sys
from urllib.parse import quote

SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

try:
    db = sqlite3.connect(f"file:{quote(sys.argv[1])}?mode=ro", uri=True, timeout=10)
    rows = db.execute("SELECT dir, MAX(version) FROM migrations GROUP BY dir").fetchall()
    # How many collections it holds: a server started on a wrong mount leaves an empty
    # database there, which is nothing to take over.
    collections = db.execute("SELECT COUNT(*) FROM collections").fetchone()[0]
    named = {row[0] for row in db.execute("SELECT id FROM segments")}
except sqlite3.Error as error:
    print(f"error={type(error).__name__}: {error}")
    sys.exit(0)
for directory, level in sorted(rows):
    print(f"{directory}={level}")
print(f"@collections={collections}")
here = os.path.dirname(os.path.abspath(sys.argv[1]))
try:
    dirs = [
        name
        for name in os.listdir(here)
        if SEGMENT_DIR.fullmatch(name) and os.path.isdir(os.path.join(here, name))
    ]
except OSError:
    sys.exit(0)  # not listed: the counts stay unknown
print(f"@segment_dirs={len(dirs)}")
print(f"@segment_dirs_named={sum(name in named for name in dirs)}")
