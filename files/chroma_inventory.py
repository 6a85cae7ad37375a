#!/usr/bin/env python3
"""Count what a Chroma server holds: collections, records, a checksum of the ids.

Runs on the host with the standard library only, so backups, restores and the
persistence proof can verify data the same way on @local and over SSH.

    python3 chroma_inventory.py URL [--token-file FILE] [--canary write|read|delete NAME]
    python3 chroma_inventory.py sqlite:/path/to/chroma.sqlite3

Prints one JSON document: {"collections": {name: {"count": N, "ids_sha256": H}}}.
The token, when given, is read from its 0600 file and sent as X-Chroma-Token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.error
import urllib.request

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"
PAGE = 1000


class Chroma:
    def __init__(self, url: str, token_file: str | None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token_file:
            with open(token_file) as secret:
                for line in secret:
                    if line.startswith("CHROMA_AUTH_TOKEN="):
                        self.headers["X-Chroma-Token"] = line.split("=", 1)[1].strip()

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        # The scheme was checked in __init__: only http(s) reaches urlopen.
        request = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, headers=self.headers, method=method
        )
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            text = answer.read().decode()
        return json.loads(text) if text else None

    def collections(self) -> list[dict]:
        found: list[dict] = []
        while True:
            page = self.call("GET", f"{BASE}?limit={PAGE}&offset={len(found)}")
            assert isinstance(page, list)
            found += page
            if len(page) < PAGE:
                return found

    def ids(self, collection_id: str) -> list[str]:
        ids: list[str] = []
        while True:
            page = self.call(
                "POST", f"{BASE}/{collection_id}/get",
                {"include": [], "limit": PAGE, "offset": len(ids)},
            )  # fmt: skip
            assert isinstance(page, dict)
            ids += page["ids"]
            if len(page["ids"]) < PAGE:
                return ids


def inventory(chroma: Chroma) -> dict:
    result = {}
    for collection in chroma.collections():
        ids = sorted(chroma.ids(collection["id"]))
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        result[collection["name"]] = {"count": len(ids), "ids_sha256": digest}
    return {"collections": result}


def sqlite_inventory(path: str) -> dict:
    """The same inventory read from a stopped server's chroma.sqlite3, read-only.

    Records are the rows of each collection's METADATA segment; the file is opened
    immutable, so reading a legacy volume never changes it.
    """
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        names = dict(db.execute("SELECT id, name FROM collections"))
        rows = db.execute(
            "SELECT s.collection, e.embedding_id FROM embeddings e "
            "JOIN segments s ON e.segment_id = s.id WHERE s.scope = 'METADATA'"
        )
        ids: dict[str, list[str]] = {collection: [] for collection in names}
        for collection, record in rows:
            ids.setdefault(collection, []).append(record)
    finally:
        db.close()
    result = {}
    for collection, name in names.items():
        found = sorted(ids[collection])
        digest = hashlib.sha256("\n".join(found).encode()).hexdigest()
        result[name] = {"count": len(found), "ids_sha256": digest}
    return {"collections": result}


def canary(chroma: Chroma, action: str, name: str) -> dict:
    """Write, read back or delete a one-record canary collection."""
    if action == "write":
        created = chroma.call("POST", BASE, {"name": name, "get_or_create": True})
        assert isinstance(created, dict)
        chroma.call("POST", f"{BASE}/{created['id']}/add",
                    {"ids": ["canary"], "embeddings": [[0.5, 0.25, 0.125]],
                     "documents": ["chroma-deploy persistence canary"]})  # fmt: skip
        return {"canary": "written"}
    if action == "read":
        try:
            found = chroma.call("GET", f"{BASE}/{name}")
        except urllib.error.HTTPError:
            return {"canary": "missing"}
        assert isinstance(found, dict)
        ids = chroma.ids(found["id"])
        return {"canary": "present" if ids == ["canary"] else "missing"}
    chroma.call("DELETE", f"{BASE}/{name}")
    return {"canary": "deleted"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="http(s) URL of the server, or sqlite:PATH of a stopped one")
    parser.add_argument("--token-file")
    parser.add_argument("--canary", nargs=2, metavar=("ACTION", "NAME"))
    parser.add_argument(
        "--verify", metavar="RECORD",
        help="compare the server with a pending record's 'before'; print "
        "'match|mismatch KIND SUBJECT TO BACKUP' and exit 0 or 3",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        if args.url.startswith("sqlite:"):
            print(json.dumps(sqlite_inventory(args.url.removeprefix("sqlite:")), sort_keys=True))
            return 0
        chroma = Chroma(args.url, args.token_file)
        if args.verify:
            with open(args.verify) as handle:
                record = json.load(handle)
            same = inventory(chroma) == record["before"]
            kind = record.get("kind", "volume")
            subject = record.get("volume") or record.get("from", "-")
            print("match" if same else "mismatch", kind, subject,
                  record.get("to", "-"), record.get("backup", "-"))  # fmt: skip
            return 0 if same else 3
        if args.canary:
            print(json.dumps(canary(chroma, *args.canary)))
        else:
            print(json.dumps(inventory(chroma), sort_keys=True))
    except (urllib.error.URLError, OSError, ValueError, ImportError) as error:
        print(f"chroma_inventory: {args.url}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
