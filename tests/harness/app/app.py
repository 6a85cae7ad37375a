"""A stand-in for the seed's knowledge-base-agent: an application that uses Chroma.

It reads what the compose file's application service gives it, as a real one would:
``CHROMA_URL`` (Chroma, or the auth proxy in front of it), ``CHROMA_AUTH_TOKEN_FILE``
(the path of the 0600 token file, when the proxy is on; the token itself is never in
the environment), ``CHROMA_PERSIST_DIRECTORY`` (the fallback ``PersistentClient``'s
dir) and ``LOG_DIR``.

    app.py serve              write a batch through CHROMA_URL, read it back, stay up
    app.py write [--fallback] write a batch, read it back, print its ids as JSON, exit
    app.py ids [--fallback]   print the collection's record ids as JSON

Each batch has ids of its own (``<run>-<n>``), so records from an earlier container
are told apart from the ones the current container wrote. ``serve`` re-reads the
token file for every connection, so a new token needs no restart of the application.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import chromadb
from chromadb.api import ClientAPI
from chromadb.errors import NotFoundError

COLLECTION = "kb-app-records"
HEALTHY = Path("/tmp/kb-app.healthy")  # fresh while Chroma answers (the image's HEALTHCHECK)
HEARTBEAT_SECONDS = 10
TOKEN_PREFIX = "CHROMA_AUTH_TOKEN="

log = logging.getLogger("kb-app")


def token() -> str | None:
    """The token from the file CHROMA_AUTH_TOKEN_FILE names, read anew each time."""
    path = os.environ.get("CHROMA_AUTH_TOKEN_FILE")
    if not path:
        return None
    for line in Path(path).read_text().splitlines():
        if line.startswith(TOKEN_PREFIX):
            return line.removeprefix(TOKEN_PREFIX).strip()
    raise SystemExit(f"kb-app: {path} holds no {TOKEN_PREFIX} line")


def http_client() -> ClientAPI:
    url = urlsplit(os.environ["CHROMA_URL"])
    secret = token()
    headers = {"X-Chroma-Token": secret} if secret else {}
    return chromadb.HttpClient(host=url.hostname or "", port=url.port or 80, headers=headers)


def fallback_client() -> ClientAPI:
    return chromadb.PersistentClient(path=os.environ["CHROMA_PERSIST_DIRECTORY"])


def write_batch(client: ClientAPI, count: int) -> list[str]:
    """Add ``count`` records under a fresh run id, read them back, return their ids."""
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{n:04d}" for n in range(count)]
    collection = client.get_or_create_collection(COLLECTION, embedding_function=None)
    collection.add(
        ids=ids,
        embeddings=[[float(n), 1.0, 0.5] for n in range(count)],
        documents=[f"knowledge base note {n} of run {run}" for n in range(count)],
        metadatas=[{"run": run, "n": n} for n in range(count)],
    )
    found = sorted(collection.get(ids=ids, include=[])["ids"])
    if found != ids:
        raise RuntimeError(f"wrote {count} records as run {run}, read back {len(found)}")
    log.info("wrote and read back %d records as run %s (collection holds %d)",
             count, run, collection.count())  # fmt: skip
    return ids


def connect_with_retries(attempts: int = 30) -> ClientAPI:
    for attempt in range(1, attempts + 1):
        try:
            client = http_client()
            client.heartbeat()
            return client
        except Exception as error:
            log.warning("Chroma at %s does not answer yet (%d/%d): %s",
                        os.environ["CHROMA_URL"], attempt, attempts, error)  # fmt: skip
            time.sleep(1)
    raise SystemExit("kb-app: Chroma never answered")


def serve(count: int) -> None:
    HEALTHY.unlink(missing_ok=True)
    write_batch(connect_with_retries(), count)
    answering = True
    while True:
        try:
            http_client().heartbeat()  # a new client: a new token is picked up
            HEALTHY.touch()
            if not answering:
                log.info("Chroma answers again")
            answering = True
        except Exception as error:
            if answering:
                log.error("Chroma at %s stopped answering: %s", os.environ["CHROMA_URL"], error)
            answering = False
        time.sleep(HEARTBEAT_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(prog="kb-app")
    parser.add_argument("command", choices=["serve", "write", "ids"], nargs="?", default="serve")
    parser.add_argument("--fallback", action="store_true",
                        help="use the PersistentClient in CHROMA_PERSIST_DIRECTORY")  # fmt: skip
    parser.add_argument("--count", type=int, default=int(os.environ.get("KB_APP_RECORDS", "50")))
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.WARNING,  # not a line per HTTP request from httpx
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[
            logging.StreamHandler(sys.stderr),
            logging.FileHandler(Path(os.environ.get("LOG_DIR", "/app/logs")) / "app.log"),
        ],
    )
    log.setLevel(logging.INFO)
    where = os.environ["CHROMA_PERSIST_DIRECTORY"] if args.fallback else os.environ["CHROMA_URL"]
    log.info("%s through %s", args.command, "fallback " + where if args.fallback else where)
    if args.command == "serve":
        serve(args.count)
    client = fallback_client() if args.fallback else http_client()
    if args.command == "write":
        print(json.dumps(write_batch(client, args.count)))
    else:
        try:
            ids = client.get_collection(COLLECTION, embedding_function=None).get(include=[])["ids"]
        except NotFoundError:
            ids = []
        print(json.dumps(sorted(ids)))


if __name__ == "__main__":
    main()
