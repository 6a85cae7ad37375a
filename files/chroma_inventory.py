#!/usr/bin/env python3
"""Count what a Chroma server holds, per tenant, database and collection.

Runs on the host with the standard library only, so backups, restores,
migrations and the persistence proof verify data the same way on @local and
over SSH, from either side of a change:

    python3 chroma_inventory.py URL [--token-file FILE] [--tls-dir DIR] [--scope T/D ...]
                                [--scopes-from JSON]
    python3 chroma_inventory.py URL [--token-file FILE] [--tls-dir DIR]
                                --canary write|read|delete NAME
    python3 chroma_inventory.py URL [--token-file FILE] [--tls-dir DIR] --vector-sample
                                [--scopes-from-sqlite DB]
    python3 chroma_inventory.py sqlite:/path/to/chroma.sqlite3

Prints one JSON document: ``{"collections": {"TENANT/DATABASE/NAME": {"count": N,
"ids_sha256": H, "content_sha256": H}}}``. ``content_sha256`` covers every
record's id, document and metadata (a sample of one id in 16 when a collection
has 100,000 records or more). Vectors are not in it: a stopped server keeps
them in binary segment files, which the migrations compare byte for byte.

An upgrade changes those files, so it compares vectors through the API instead:
``--vector-sample`` reads the embeddings of up to 64 records per collection
(8 runs of 8, spread over it) from the running old server, as ``{"collections":
{"TENANT/DATABASE/NAME": {id: sha256 of the float32 values}}}``, and
:func:`vector_differences` names each sampled record the new server returns
another vector for (and whose vector it is, when it is another sampled one).

The SQLite side reads a private copy of the database and its write-ahead log,
so committed entries that Chroma has not checkpointed yet are seen, and the
original (a legacy volume, a stopped server's data dir) is never opened.
The token, when given, is read from its 0600 file and sent as X-Chroma-Token.
With ``--tls-dir`` (the host's ``<secrets>/tls``, where the deploy writes the
proxy's ``ca.pem`` and ``name``), an https URL's certificate is verified
against that CA for that name, while the connection goes to the URL's address:
the published port is reached at 127.0.0.1, which the certificate of
chroma_tls=files need not name (as curl --cacert --resolve does).
Exit codes: 0 done, 1 the server or the file could not be read.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import ssl
import struct
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

DEFAULT_SCOPE = "default_tenant/default_database"
PAGE = 1000
SAMPLE_FROM = 100_000  # records; above this the content checksum samples
VECTOR_RUNS, VECTOR_RUN = 8, 8  # an upgrade's vector sample: 8 runs of 8 records per collection


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def _sampled(record_id: str, total: int) -> bool:
    return total < SAMPLE_FROM or hashlib.sha256(record_id.encode()).hexdigest()[0] == "0"


def _content_line(record_id: str, document: object, metadata: object) -> str:
    return json.dumps([record_id, document, metadata or {}], sort_keys=True)


def vector_digest(embedding: list[float]) -> str:
    """sha256 of an embedding as the float32 values Chroma keeps, however JSON spelled them.

    0.x answers a float32 widened to a double (0.10000000149011612), 1.x its
    shortest spelling (0.1): packed as float32 both are the same bytes.
    """
    return hashlib.sha256(struct.pack(f"<{len(embedding)}f", *embedding)).hexdigest()


def summary(records: dict[str, tuple[object, object]]) -> dict:
    """count, ids and content checksums of ``{id: (document, metadata)}``."""
    total = len(records)
    return {
        "count": total,
        "ids_sha256": _digest(list(records)),
        "content_sha256": _digest(
            [
                _content_line(record_id, *content)
                for record_id, content in records.items()
                if _sampled(record_id, total)
            ]
        ),
    }


class NamedHTTPSConnection(http.client.HTTPSConnection):
    """A TLS connection to the URL's address that verifies the certificate for another name."""

    def __init__(self, host: str, *, server_name: str, context: ssl.SSLContext, **kwargs):
        super().__init__(host, context=context, **kwargs)
        self.server_name, self.tls_context = server_name, context

    def connect(self) -> None:
        self.sock = socket.create_connection(
            (self.host, self.port), self.timeout, self.source_address
        )
        # check_hostname is on (create_default_context): the handshake fails unless the
        # certificate chains to the CA and names server_name.
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


class NamedHTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's https through NamedHTTPSConnection: its errors stay urllib's (HTTPError, 404)."""

    def __init__(self, context: ssl.SSLContext, server_name: str):
        super().__init__(context=context)
        self.tls_context, self.server_name = context, server_name

    def https_open(self, req: urllib.request.Request):  # type: ignore[override]
        return self.do_open(self.connection, req)

    def connection(self, host: str, **kwargs) -> NamedHTTPSConnection:
        return NamedHTTPSConnection(
            host, server_name=self.server_name, context=self.tls_context, **kwargs
        )


class Chroma:
    def __init__(self, url: str, token_file: str | None, tls_dir: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.opener = urllib.request.build_opener()
        if tls_dir:
            if not url.startswith("https://"):
                raise ValueError(f"{url!r} is not an https URL, and --tls-dir was given")
            context = ssl.create_default_context(cafile=os.path.join(tls_dir, "ca.pem"))
            # ca.pem may be an issuer that is not a root (chroma_tls=acme: the ACME CA's
            # intermediate), trusted as an anchor as curl --cacert does (Python 3.10+).
            context.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
            with open(os.path.join(tls_dir, "name")) as named:
                server_name = named.read().strip()
            if not server_name:
                raise ValueError(f"{tls_dir}/name is empty")
            # No proxy from the environment: the connection goes to the URL's own address
            # (the host's published port), never through a tunnel.
            self.opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), NamedHTTPSHandler(context, server_name)
            )
        self.headers = {"Content-Type": "application/json"}
        if token_file:
            with open(token_file) as secret:
                for line in secret:
                    if line.startswith("CHROMA_AUTH_TOKEN="):
                        self.headers["X-Chroma-Token"] = line.split("=", 1)[1].strip()

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        # The scheme was checked in __init__: only http(s) reaches the opener.
        request = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, headers=self.headers, method=method
        )
        with self.opener.open(request, timeout=60) as answer:
            text = answer.read().decode()
        return json.loads(text) if text else None

    @staticmethod
    def base(scope: str) -> str:
        tenant, database = (urllib.parse.quote(part, safe="") for part in scope.split("/", 1))
        return f"/api/v2/tenants/{tenant}/databases/{database}/collections"

    def collections(self, scope: str = DEFAULT_SCOPE) -> list[dict]:
        found: list[dict] = []
        while True:
            try:
                page = self.call("GET", f"{self.base(scope)}?limit={PAGE}&offset={len(found)}")
            except urllib.error.HTTPError as error:
                if error.code == 404 and scope != DEFAULT_SCOPE:
                    return []  # a tenant or database the server does not have: nothing in it
                raise
            if not isinstance(page, list):
                raise ValueError(f"unexpected collections answer: {str(page)[:200]}")
            found += page
            if len(page) < PAGE:
                return found

    def records(self, scope: str, collection_id: str) -> dict[str, tuple[object, object]]:
        records: dict[str, tuple[object, object]] = {}
        while True:
            page = self.call(
                "POST", f"{self.base(scope)}/{collection_id}/get",
                {"include": ["documents", "metadatas"], "limit": PAGE, "offset": len(records)},
            )  # fmt: skip
            if not isinstance(page, dict):
                raise ValueError(f"unexpected get answer: {str(page)[:200]}")
            documents = page.get("documents") or [None] * len(page["ids"])
            metadatas = page.get("metadatas") or [None] * len(page["ids"])
            for record_id, document, metadata in zip(
                page["ids"], documents, metadatas, strict=True
            ):
                records[record_id] = (document, metadata)
            if len(page["ids"]) < PAGE:
                return records

    def count(self, scope: str, collection_id: str) -> int:
        found = self.call("GET", f"{self.base(scope)}/{collection_id}/count")
        if not isinstance(found, int):
            raise ValueError(f"unexpected count answer: {str(found)[:200]}")
        return found

    def embeddings(self, scope: str, collection_id: str, **where: object) -> dict[str, str]:
        """``{id: vector_digest}`` of the records ``where`` (ids, or limit and offset) selects."""
        page = self.call(
            "POST", f"{self.base(scope)}/{collection_id}/get", {"include": ["embeddings"], **where}
        )
        if not isinstance(page, dict):
            raise ValueError(f"unexpected get answer: {str(page)[:200]}")
        vectors = page.get("embeddings") or [None] * len(page["ids"])
        return {
            record_id: vector_digest(vector) if vector is not None else "none"
            for record_id, vector in zip(page["ids"], vectors, strict=True)
        }


def inventory(chroma: Chroma, scopes: list[str] | None = None) -> dict:
    """The server's inventory of ``scopes`` (tenant/database), the default one always."""
    result = {}
    for scope in sorted({DEFAULT_SCOPE, *(scopes or [])}):
        for collection in chroma.collections(scope):
            records = chroma.records(scope, collection["id"])
            result[f"{scope}/{collection['name']}"] = summary(records)
    return {"collections": result}


def vector_sample(chroma: Chroma, scopes: list[str] | None = None) -> dict:
    """Embeddings of up to VECTOR_RUNS * VECTOR_RUN records of every collection, by id.

    Runs of records at offsets spread over the collection, so the first, the
    middle and the last records written are all in it; a small collection is
    read whole.
    """
    result = {}
    for scope in sorted({DEFAULT_SCOPE, *(scopes or [])}):
        for collection in chroma.collections(scope):
            total = chroma.count(scope, collection["id"])
            runs = VECTOR_RUNS if total > VECTOR_RUNS * VECTOR_RUN else 1
            size = VECTOR_RUN if runs > 1 else VECTOR_RUNS * VECTOR_RUN
            found: dict[str, str] = {}
            for offset in sorted({run * total // runs for run in range(runs)}):
                found.update(chroma.embeddings(scope, collection["id"], limit=size, offset=offset))
            result[f"{scope}/{collection['name']}"] = found
    return {"collections": result}


def sampled_vectors_now(chroma: Chroma, sample: dict) -> dict:
    """What the server returns now for the ids of ``sample`` (vector_sample's answer)."""
    result = {}
    for scope in sorted({key.rsplit("/", 1)[0] for key in sample["collections"]}):
        ids_by_name = {
            key.rsplit("/", 1)[1]: list(found)
            for key, found in sample["collections"].items()
            if key.rsplit("/", 1)[0] == scope
        }
        for collection in chroma.collections(scope):
            ids = ids_by_name.get(collection["name"])
            if ids:
                found = chroma.embeddings(scope, collection["id"], ids=ids)
                result[f"{scope}/{collection['name']}"] = found
    return {"collections": result}


def vector_differences(before: dict, after: dict) -> list[str]:
    """Each sampled record whose vector is not the one it had, named; a swap says whose it is."""
    found = []
    for key, sample in sorted(before["collections"].items()):
        now = after["collections"].get(key, {})
        owners: dict[str, list[str]] = {}
        for record_id, digest in sample.items():
            owners.setdefault(digest, []).append(record_id)
        for record_id, digest in sorted(sample.items()):
            new = now.get(record_id)
            if new == digest:
                continue
            other = [owner for owner in owners.get(new or "", []) if owner != record_id]
            if new is None:
                found.append(f"{key}: {record_id} is not there")
            elif other:
                found.append(f"{key}: {record_id} returns the vector {other[0]} had")
            else:
                found.append(f"{key}: {record_id} returns another vector")
    return found


def sample_size(sample: dict) -> int:
    return sum(len(found) for found in sample["collections"].values())


def _typed(string_value, int_value, float_value, bool_value) -> object:
    if string_value is not None:
        return string_value
    if int_value is not None:
        return int_value
    if float_value is not None:
        return float_value
    if bool_value is not None:
        return bool(bool_value)
    return None


def sqlite_inventory(path: str) -> dict:
    """The same inventory read from a stopped server's chroma.sqlite3.

    Records are the rows of each collection's METADATA segment. A private copy
    of the file and its ``-wal`` is read, so committed entries not yet
    checkpointed count, and the original is never opened (nor changed).
    """
    with private_copy(path) as db:
        return _read_sqlite(db)


@contextlib.contextmanager
def private_copy(path: str) -> Iterator[sqlite3.Connection]:
    """A connection to a copy of ``path`` and its ``-wal``, removed afterwards."""
    if not os.path.isfile(path):
        raise OSError(f"{path}: no such file")
    with tempfile.TemporaryDirectory(prefix="chroma-inventory-") as work:
        copy = os.path.join(work, "chroma.sqlite3")
        shutil.copyfile(path, copy)
        if os.path.exists(path + "-wal"):
            shutil.copyfile(path + "-wal", copy + "-wal")
        db = sqlite3.connect(copy)
        try:
            yield db
        finally:
            db.close()


def sqlite_scopes(path: str) -> list[str]:
    """The tenant/database scopes a (running) server's chroma.sqlite3 names, from a copy.

    The API lists no tenants, so the vector sample learns them here. A copy
    taken while the server writes may be torn: then only the default scope.
    """
    try:
        with private_copy(path) as db:
            rows = db.execute("SELECT tenant_id, name FROM databases").fetchall()
    except (OSError, sqlite3.Error):
        return [DEFAULT_SCOPE]
    return sorted({f"{tenant}/{name}" for tenant, name in rows} | {DEFAULT_SCOPE})


def _read_sqlite(db: sqlite3.Connection) -> dict:
    collections = {
        collection_id: f"{tenant}/{database}/{name}"
        for collection_id, name, database, tenant in db.execute(
            "SELECT c.id, c.name, d.name, d.tenant_id FROM collections c "
            "JOIN databases d ON c.database_id = d.id"
        )
    }
    records: dict[str, dict[str, list]] = {key: {} for key in collections}
    rows: list[tuple[int, str, str]] = db.execute(
        "SELECT e.id, s.collection, e.embedding_id FROM embeddings e "
        "JOIN segments s ON e.segment_id = s.id WHERE s.scope = 'METADATA'"
    ).fetchall()
    by_row: dict[int, list] = {}
    for row_id, collection, record_id in rows:
        entry: list = [None, {}]
        records.setdefault(collection, {})[record_id] = entry
        by_row[row_id] = entry
    # A collection of SAMPLE_FROM records or more checksums the content of a sample only:
    # only the sample's metadata rows are read (the rest would be read and thrown away).
    totals = {collection: len(found) for collection, found in records.items()}
    only = ""
    if any(total >= SAMPLE_FROM for total in totals.values()):
        db.execute("CREATE TEMP TABLE wanted (id INTEGER PRIMARY KEY)")
        db.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", (
            (row_id,) for row_id, collection, record_id in rows
            if _sampled(record_id, totals[collection])))  # fmt: skip
        only = " WHERE id IN (SELECT id FROM temp.wanted)"
    columns = "id, key, string_value, int_value, float_value, bool_value"
    # Constants only in the text of these queries (no value from the data or a user).
    for row_id, key, *values in db.execute(
        f"SELECT {columns} FROM embedding_metadata{only}"  # noqa: S608
    ):
        entry = by_row.get(row_id)
        if entry is None:
            continue
        if key == "chroma:document":
            entry[0] = values[0]
        elif not key.startswith("chroma:"):
            entry[1][key] = _typed(*values)
    has_arrays = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'embedding_metadata_array'"
    ).fetchone()
    if has_arrays:  # 1.x keeps list values one row per item, in their order
        for row_id, key, *values in db.execute(
            f"SELECT {columns} FROM embedding_metadata_array{only} ORDER BY rowid"  # noqa: S608
        ):
            entry = by_row.get(row_id)
            if entry is not None:
                entry[1].setdefault(key, []).append(_typed(*values))
    result = {}
    for collection, name in collections.items():
        found = {
            record_id: (entry[0], entry[1]) for record_id, entry in records[collection].items()
        }
        result[name] = summary(found)
    return {"collections": result}


def scopes_of(found: dict) -> list[str]:
    """The tenant/database scopes an inventory names."""
    return sorted({key.rsplit("/", 1)[0] for key in found["collections"]})


def canary(chroma: Chroma, action: str, name: str) -> dict:
    """Write, read back or delete a one-record canary collection."""
    base = chroma.base(DEFAULT_SCOPE)
    if action == "write":
        created = chroma.call("POST", base, {"name": name, "get_or_create": True})
        assert isinstance(created, dict)
        chroma.call("POST", f"{base}/{created['id']}/add",
                    {"ids": ["canary"], "embeddings": [[0.5, 0.25, 0.125]],
                     "documents": ["chroma-deploy persistence canary"]})  # fmt: skip
        return {"canary": "written"}
    if action == "read":
        try:
            found = chroma.call("GET", f"{base}/{name}")
        except urllib.error.HTTPError:
            return {"canary": "missing"}
        assert isinstance(found, dict)
        ids = list(chroma.records(DEFAULT_SCOPE, found["id"]))
        return {"canary": "present" if ids == ["canary"] else "missing"}
    chroma.call("DELETE", f"{base}/{name}")
    return {"canary": "deleted"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="http(s) URL of the server, or sqlite:PATH of a stopped one")
    parser.add_argument("--token-file")
    parser.add_argument("--tls-dir", help="the proxy's ca.pem and name: verify https with them")
    parser.add_argument("--scope", action="append", default=[], help="TENANT/DATABASE")
    parser.add_argument(
        "--scopes-from",
        metavar="MANIFEST",
        help="also read every tenant/database this inventory names",
    )
    parser.add_argument("--canary", nargs=2, metavar=("ACTION", "NAME"))
    parser.add_argument("--vector-sample", action="store_true", help="embeddings of a sample")
    parser.add_argument(
        "--scopes-from-sqlite", metavar="DB", help="the server's chroma.sqlite3, for its scopes"
    )
    args = parser.parse_args()
    try:
        if args.url.startswith("sqlite:"):
            print(json.dumps(sqlite_inventory(args.url.removeprefix("sqlite:")), sort_keys=True))
            return 0
        chroma = Chroma(args.url, args.token_file, args.tls_dir)
        if args.canary:
            print(json.dumps(canary(chroma, *args.canary)))
        elif args.vector_sample:
            scopes = sqlite_scopes(args.scopes_from_sqlite) if args.scopes_from_sqlite else []
            print(json.dumps(vector_sample(chroma, scopes), sort_keys=True))
        else:
            scopes = list(args.scope)
            if args.scopes_from:
                with open(args.scopes_from) as handle:
                    scopes += scopes_of(json.load(handle))
            print(json.dumps(inventory(chroma, scopes), sort_keys=True))
    except (urllib.error.URLError, OSError, ValueError, KeyError, sqlite3.Error) as error:
        print(f"chroma_inventory: {args.url}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
