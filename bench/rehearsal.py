"""What the upgrade rehearsal costs: 0.6.3 -> 1.5.9 with and without it, in one run.

Run: `.venv/bin/python bench/rehearsal.py [RECORDS]` (needs scripts/test-env.sh done:
both images). For each mode it converges a throwaway project on 0.6.3, writes
RECORDS records (default 1,200) through the real client, then times the deploy that
upgrades to 1.5.9 (backup, rehearsal when on, switch, verification). Prints both
times and their ratio.
"""

from __future__ import annotations

import json
import sys
import time

import chromadb
from common import deploy, throwaway_project


def write(port: int, records: int) -> None:
    collection = chromadb.HttpClient(host="127.0.0.1", port=port).create_collection(
        "bench", embedding_function=None
    )
    for start in range(0, records, 500):
        ids = range(start, min(start + 500, records))
        collection.add(
            ids=[f"r{i}" for i in ids],
            embeddings=[[float(i % 13), float(i % 7), 1.0] for i in ids],
            documents=[f"record {i}" for i in ids],
            metadatas=[{"i": i} for i in ids],
        )


def upgrade_seconds(rehearsal: bool, records: int, port: int) -> float:
    name = f"benchrehearsal{int(rehearsal)}"
    with throwaway_project(name, port) as (_project_dir, data):
        data["chroma_upgrade_rehearsal"] = rehearsal
        deploy({**data, "chroma_version": "0.6.3"})
        time.sleep(2)
        write(port, records)
        seconds, _ = deploy({**data, "chroma_version": "1.5.9"})
        return seconds


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
    without = upgrade_seconds(False, records, 18991)
    with_it = upgrade_seconds(True, records, 18992)
    print(json.dumps({
        "records": records,
        "upgrade_without_rehearsal_s": round(without, 1),
        "upgrade_with_rehearsal_s": round(with_it, 1),
        "rehearsal_cost_s": round(with_it - without, 1),
        "with_over_without": round(with_it / without, 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
