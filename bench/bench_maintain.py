"""What maintain.py's report costs on the host at 0 and at 200,000 records.

Run: `.venv/bin/python bench/bench_maintain.py [RECORDS]` (needs the chromadb/chroma:1.5.9
image). A throwaway 1.5.9 server on a temporary dir is fed RECORDS records (200,000 by
default) of 2-dimension vectors in batches of 5,000 through the real client; before and
after, files/chroma_maintain.py report (what the host runs: a private copy of
chroma.sqlite3, aggregate queries) is timed 5 times (median, wall and CPU) with the
server running, as the schedule runs it. The container and the dir are removed after.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "files" / "chroma_maintain.py"
BATCH = 5000


def timed_report(project: str) -> tuple[float, float, dict]:
    walls, cpus, found = [], [], {}
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        argv = [
            sys.executable,
            str(PROGRAM),
            "report",
            "--project-dir",
            project,
            "--data-dir",
            "data",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        walls.append(time.monotonic() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        found = json.loads(done.stdout)
    return statistics.median(walls), statistics.median(cpus), found


def main(records: int) -> None:
    import chromadb

    project = tempfile.mkdtemp(prefix="bench-maintain-")
    os.makedirs(f"{project}/data")
    name = f"bench-maintain-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8000", "-v",
                    f"{project}/data:/data", "chromadb/chroma:1.5.9"], check=True,
                   capture_output=True)  # fmt: skip
    try:
        port = subprocess.run(["docker", "port", name, "8000"], capture_output=True, text=True,
                              check=True).stdout.split(":")[-1].strip()  # fmt: skip
        client = None
        for _ in range(120):
            try:
                client = chromadb.HttpClient(host="127.0.0.1", port=int(port))
                client.heartbeat()
                break
            except Exception:
                time.sleep(0.5)
        assert client is not None
        for label, count in (("0 records", 0), (f"{records} records", records)):
            if count:
                started = time.monotonic()
                collection = client.create_collection("bench", embedding_function=None)
                for start in range(0, count, BATCH):
                    ids = [f"r{i}" for i in range(start, min(start + BATCH, count))]
                    collection.add(ids=ids, embeddings=[[float(i % 97), 1.0] for i in
                                                        range(len(ids))])  # fmt: skip
                print(f"fed {count} records in {time.monotonic() - started:.1f} s")
            wall, cpu, found = timed_report(project)
            print(f"{label}: report {wall:.3f} s wall, {cpu:.3f} s CPU (median of 5); "
                  f"records {found['records']}, chroma.sqlite3 {found['sqlite_bytes']} bytes, "
                  f"WAL {found['wal_bytes']}, data {found['data_bytes']} bytes, index estimate "
                  f"{found['index_memory_bytes']} bytes")  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
