"""Time an off-host backup (files/chroma_offsite.py) against its floors, in one run.

Run: `.venv/bin/python bench/bench_backup.py [--gb 1]` (needs scripts/test-env.sh done;
0.1 GB by default). On one converged @local project filled with records of 384-float
vectors until its data dir holds about that much, it measures, in this order:

- the floors of the downtime: ``compose stop chroma`` then ``start`` until it answers,
  with no copy between (median of 3), and ``cp -a --reflink=auto`` of the data dir with
  Chroma stopped (median of 3);
- the floor of the upload: restic's own ``backup`` of that stopped copy into a fresh
  local repository;
- a backup by chroma_offsite.py into another fresh local repository: its downtime
  (Chroma stopped, from the status file) and its total time;
- a second backup of the unchanged data dir (incremental: restic reads no file whose
  size and mtime are unchanged), and restic's own second backup of its copy.

Targets (issue #23): downtime <= 1.5 x the cp -a floor; the incremental backup of
an unchanged 1 GB dir <= 10 s. Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, deploy, throwaway_project

sys.path.insert(0, str(ROOT / "tests"))
from harness.offsite_config import init_repository, write_offsite

PASSWORD = "bench repository password"
DIMENSIONS = 384
BATCH = 2000


def du_bytes(path: str) -> int:
    done = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def fill(port: int, data_dir: str, target: int) -> int:
    """Records of 384 random floats (and a short document) until ``data_dir`` holds ``target``."""
    import chromadb
    import numpy as np

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    collection = client.create_collection("vectors", embedding_function=None)
    rng = np.random.default_rng(23)
    written = 0
    while du_bytes(data_dir) < target:
        vectors = rng.random((BATCH, DIMENSIONS), dtype=np.float32)
        collection.add(
            ids=[f"v{written + i:08d}" for i in range(BATCH)],
            embeddings=vectors,
            metadatas=[{"n": written + i} for i in range(BATCH)],
            documents=[f"record {written + i}" for i in range(BATCH)],
        )
        written += BATCH
    return written


def compose(project_dir: str, *args: str) -> None:
    subprocess.run(["docker", "compose", "--project-directory", project_dir, "-f",
                    f"{project_dir}/docker-compose.yml", *args], check=True,
                   capture_output=True)  # fmt: skip


def restart(project_dir: str, port: int) -> float:
    """Seconds from ``compose stop chroma`` until it answers again, with no copy between."""
    import urllib.request

    start = time.perf_counter()
    compose(project_dir, "stop", "chroma")
    compose(project_dir, "start", "chroma")
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.05)


def restic_backup(repository: str, password_file: str, path: str) -> float:
    """Seconds restic's own backup of ``path`` takes (the same options as the program's)."""
    start = time.perf_counter()
    subprocess.run(["restic", "-r", repository, "--password-file", password_file, "--cache-dir",
                    "/var/cache/chroma-deploy/restic", "backup", "--json", "--ignore-inode",
                    "--ignore-ctime", path], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def offsite_backup(config: Path) -> tuple[float, dict]:
    """Seconds a chroma_offsite.py backup takes, and the status file it wrote."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "files" / "chroma_offsite.py"), "backup",
                           "--config", str(config)], capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"chroma_offsite.py failed: {done.stderr}")
    status = json.loads((config.parent / "offsite-status.json").read_text())
    return seconds, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=0.1, help="data dir size to fill to")
    args = parser.parse_args()
    name, port = "benchbackup", 18993
    work_dir = tempfile.TemporaryDirectory(prefix="chroma-bench-restic-", dir="/var/tmp")
    with throwaway_project(name, port) as (project_dir, data), work_dir as work:
        deploy(data)
        data_dir = f"{project_dir}/chroma_data"
        records = fill(port, data_dir, int(args.gb * 1e9))
        size = du_bytes(data_dir)

        restarts = [restart(project_dir, port) for _ in range(3)]
        compose(project_dir, "stop", "chroma")
        copies = []
        for attempt in range(3):
            copy = f"{project_dir}/.chroma-deploy/bench-copy-{attempt}"
            start = time.perf_counter()
            subprocess.run(["cp", "-a", "--reflink=auto", data_dir, copy], check=True)
            copies.append(time.perf_counter() - start)
            if attempt:
                shutil.rmtree(copy)
        compose(project_dir, "start", "--wait", "chroma")
        floor_copy = f"{project_dir}/.chroma-deploy/bench-copy-0"
        password_file = f"{work}/password"
        Path(password_file).write_text(PASSWORD + "\n")
        own = f"{work}/restic-own"
        init_repository(Path(own), PASSWORD)
        restic_first = restic_backup(own, password_file, floor_copy)
        restic_second = restic_backup(own, password_file, floor_copy)
        shutil.rmtree(floor_copy)

        ours = Path(work) / "restic-ours"
        init_repository(ours, PASSWORD)
        config = write_offsite(Path(project_dir), project_name=name, host="bench",
                               repository=str(ours), password=PASSWORD,
                               metrics_file=Path(work) / "metrics.prom")  # fmt: skip
        first_s, first = offsite_backup(config)
        second_s, second = offsite_backup(config)
    cp_s = statistics.median(copies)
    restart_s = statistics.median(restarts)
    result = {
        "restart_no_copy_s": round(restart_s, 2),
        "records": records,
        "data_dir_bytes": size,
        "cp_a_stopped_s": round(cp_s, 2),
        "restic_own_first_s": round(restic_first, 2),
        "restic_own_second_s": round(restic_second, 2),
        "backup_first_downtime_s": first["last_downtime_seconds"],
        "backup_first_total_s": round(first_s, 2),
        "backup_second_downtime_s": second["last_downtime_seconds"],
        "backup_second_total_s": round(second_s, 2),
        "backup_second_added_bytes": second["last_added_bytes"],
        "downtime_over_cp": round(first["last_downtime_seconds"] / cp_s, 2),
        "downtime_over_restart_plus_cp": round(
            first["last_downtime_seconds"] / (restart_s + cp_s), 2
        ),
        "cores": os.cpu_count(),
        "load_1min_after": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=1))
    gb = size / 1e9
    print(f"\n| {gb:.2f} GB ({records} records of {DIMENSIONS} floats) | seconds |\n|---|---|")
    for label, value in (
        (
            "floor: Chroma stopped and started, no copy (median of 3)",
            result["restart_no_copy_s"],
        ),
        ("floor: `cp -a` of the stopped data dir (median of 3)", result["cp_a_stopped_s"]),
        ("floor: restic's own first backup of that copy", result["restic_own_first_s"]),
        ("backup: Chroma stopped (downtime)", result["backup_first_downtime_s"]),
        ("backup: total, first snapshot", result["backup_first_total_s"]),
        ("floor: restic's own second backup (unchanged)", result["restic_own_second_s"]),
        ("backup: downtime, second (unchanged data)", result["backup_second_downtime_s"]),
        ("backup: total, second (unchanged data)", result["backup_second_total_s"]),
    ):
        print(f"| {label} | {value} |")
    print(
        f"\ndowntime / cp -a = {result['downtime_over_cp']} (target <= 1.5); downtime / "
        f"(restart + cp -a) = {result['downtime_over_restart_plus_cp']}"
    )


if __name__ == "__main__":
    main()
