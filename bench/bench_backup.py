"""Time an off-host backup (files/chroma_offsite.py) against its floors, in one run.

Run: `.venv/bin/python bench/bench_backup.py [--gb 1]` (needs scripts/test-env.sh done;
0.1 GB by default). On one converged @local project holding records of 384-float vectors
until its data dir holds about that much, it measures, in this order:

- the floors of the downtime, Chroma stopped and started with no copy between, until
  its heartbeat answers (median of 3 each): by ``docker compose stop chroma`` and
  ``start``, and by ``docker stop`` and ``docker start`` of its container (the engine's
  own floor: no compose); and ``cp -a --reflink=auto`` of the stopped data dir (median
  of 3);
- the floor of the upload: restic's own ``backup`` of that stopped copy into a fresh
  local repository, then again (unchanged);
- a backup by chroma_offsite.py into another fresh local repository: its downtime
  (Chroma stopped until its heartbeat answers, from the status file), its total time,
  and where the time went (the status file's ``last_steps_seconds``);
- a second backup of the unchanged data dir (incremental: restic reads no file whose
  size and mtime are unchanged, and the manifest is the last run's when the database's
  bytes are).

The data is made once per size through the real image's API and kept in
``/var/cache/chroma-deploy/bench/chroma-<version>-<gb>gb`` (Chroma stopped when it was
copied there); each run copies it into its project's data dir (``--refill`` makes it
again). Filling through the client takes minutes per 100 MB here; the cache makes a run
of the 1 GB bench cost what the backups cost.

Targets (issue #23): downtime <= 1.5 x the cp -a floor; the incremental backup of an
unchanged 1 GB dir <= 10 s. Prints one JSON object and a Markdown table.
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
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import IMAGE, ROOT, checkout, deploy, throwaway_project

sys.path.insert(0, str(ROOT / "tests"))
from harness.offsite_config import init_repository, write_offsite

PASSWORD = "bench repository password"
DIMENSIONS = 384
BATCH = 2000
CACHE = Path("/var/cache/chroma-deploy/bench")


def du_bytes(path: str) -> int:
    done = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def fill(port: int, data_dir: str, target: int, clients: int = 3) -> int:
    """Records of 384 random floats (and a short document) until ``data_dir`` holds ``target``.

    ``clients`` batches are written at once, each by its own thread (the client's
    HTTP connection pool), so the server always has one to take while the next is
    encoded.
    """
    import chromadb
    import numpy as np

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    collection = client.create_collection("vectors", embedding_function=None)

    def add(first: int) -> None:
        rng = np.random.default_rng(first)  # one per batch: the threads share none
        collection.add(
            ids=[f"v{first + i:08d}" for i in range(BATCH)],
            embeddings=rng.random((BATCH, DIMENSIONS), dtype=np.float32),
            metadatas=[{"n": first + i} for i in range(BATCH)],
            documents=[f"record {first + i}" for i in range(BATCH)],
        )

    written, started = 0, time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        while (size := du_bytes(data_dir)) < target:
            list(pool.map(add, range(written, written + clients * BATCH, BATCH)))
            written += clients * BATCH
            rate = size / 1e6 / (time.perf_counter() - started) * 60
            print(f"fill: {written} records, {size / 1e6:.0f} MB ({rate:.0f} MB/min)",
                  file=sys.stderr)  # fmt: skip
    return written


def compose(project_dir: str, *args: str) -> str:
    done = subprocess.run(["docker", "compose", "--project-directory", project_dir, "-f",
                           f"{project_dir}/docker-compose.yml", *args], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


def wait_heartbeat(port: int) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                return
        except OSError:
            time.sleep(0.02)


def restart(project_dir: str, port: int, by_compose: bool) -> float:
    """Seconds from the stop of chroma until it answers again, with no copy between."""
    container = compose(project_dir, "ps", "--quiet", "chroma").strip()
    start = time.perf_counter()
    if by_compose:
        compose(project_dir, "stop", "chroma")
        compose(project_dir, "start", "chroma")
    else:
        subprocess.run(["docker", "stop", container], check=True, capture_output=True)
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
    wait_heartbeat(port)
    return time.perf_counter() - start


def restic_backup(repository: str, password_file: str, path: str) -> float:
    """Seconds restic's own backup of ``path`` takes (the same options as the program's)."""
    start = time.perf_counter()
    subprocess.run(["restic", "-r", repository, "--password-file", password_file, "--cache-dir",
                    "/var/cache/chroma-deploy/restic", "backup", "--json", "--ignore-inode",
                    "--ignore-ctime", path], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def offsite_backup(config: Path, tree: Path = ROOT) -> tuple[float, dict]:
    """Seconds a chroma_offsite.py backup (``tree``'s) takes, and the status file it wrote."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(tree / "files" / "chroma_offsite.py"), "backup",
                           "--config", str(config)], capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"chroma_offsite.py failed: {done.stderr}")
    status = json.loads((config.parent / "offsite-status.json").read_text())
    return seconds, status


def program_config(project_dir: str, name: str, repository: Path) -> Path:
    """A fresh repository, and the program's config for it; no status or memo of another run."""
    init_repository(repository, PASSWORD)
    for left in ("offsite-status.json", "offsite-manifest-memo.json"):
        Path(project_dir, ".chroma-deploy", left).unlink(missing_ok=True)
    return write_offsite(Path(project_dir), project_name=name, host="bench",
                         repository=str(repository), password=PASSWORD,
                         metrics_file=repository.with_name("metrics.prom"))  # fmt: skip


def cached_data(project_dir: str, port: int, gb: float, refill: bool) -> dict:
    """Put the bench's data for ``gb`` into the project's data dir (made once, then copied)."""
    cache = CACHE / f"chroma-{IMAGE.rsplit(':', 1)[1]}-{gb:g}gb"
    data_dir = f"{project_dir}/chroma_data"
    if refill and cache.exists():
        shutil.rmtree(cache)
    if cache.exists():
        compose(project_dir, "stop", "chroma")
        shutil.rmtree(data_dir)
        subprocess.run(["cp", "-a", str(cache / "data"), data_dir], check=True)
        compose(project_dir, "start", "--wait", "chroma")
        return json.loads((cache / "info.json").read_text())
    started = time.perf_counter()
    records = fill(port, data_dir, int(gb * 1e9))
    info = {"records": records, "fill_seconds": round(time.perf_counter() - started),
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    compose(project_dir, "stop", "chroma")
    making = cache.with_name(cache.name + ".making")
    shutil.rmtree(making, ignore_errors=True)
    making.mkdir(parents=True)
    subprocess.run(["cp", "-a", data_dir, str(making / "data")], check=True)
    (making / "info.json").write_text(json.dumps(info))
    making.rename(cache)
    compose(project_dir, "start", "--wait", "chroma")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=0.1, help="data dir size to fill to")
    parser.add_argument("--refill", action="store_true", help="make the cached data again")
    parser.add_argument("--baseline", help="also time this revision's program, before ours")
    args = parser.parse_args()
    name, port = "benchbackup", 18993
    work_dir = tempfile.TemporaryDirectory(prefix="chroma-bench-restic-", dir="/var/tmp")
    with throwaway_project(name, port) as (project_dir, data), work_dir as work:
        deploy(data)
        data_dir = f"{project_dir}/chroma_data"
        info = cached_data(project_dir, port, args.gb, args.refill)
        size = du_bytes(data_dir)

        compose_restarts = [restart(project_dir, port, by_compose=True) for _ in range(3)]
        docker_restarts = [restart(project_dir, port, by_compose=False) for _ in range(3)]
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

        baseline = {}
        if args.baseline:
            with checkout(args.baseline) as tree:
                config = program_config(project_dir, name, Path(work) / "restic-baseline")
                baseline = {"rev": args.baseline}
                for run in ("first", "second"):
                    seconds, status = offsite_backup(config, tree)
                    baseline[f"backup_{run}_downtime_s"] = status["last_downtime_seconds"]
                    baseline[f"backup_{run}_total_s"] = round(seconds, 2)
        config = program_config(project_dir, name, Path(work) / "restic-ours")
        first_s, first = offsite_backup(config)
        second_s, second = offsite_backup(config)
    cp_s = statistics.median(copies)
    compose_s, docker_s = statistics.median(compose_restarts), statistics.median(docker_restarts)
    result = {
        "records": second["last_records"],
        "data_dir_bytes": size,
        "filled_in_s": info["fill_seconds"],
        "restart_compose_s": round(compose_s, 2),
        "restart_docker_s": round(docker_s, 2),
        "cp_a_stopped_s": round(cp_s, 2),
        "restic_own_first_s": round(restic_first, 2),
        "restic_own_second_s": round(restic_second, 2),
        "backup_first_downtime_s": first["last_downtime_seconds"],
        "backup_first_total_s": round(first_s, 2),
        "backup_first_steps_s": first["last_steps_seconds"],
        "backup_second_downtime_s": second["last_downtime_seconds"],
        "backup_second_total_s": round(second_s, 2),
        "backup_second_steps_s": second["last_steps_seconds"],
        "backup_second_manifest": second["last_manifest"],
        "backup_second_added_bytes": second["last_added_bytes"],
        "downtime_over_cp": round(first["last_downtime_seconds"] / cp_s, 2),
        "downtime_over_docker_restart_plus_cp": round(
            first["last_downtime_seconds"] / (docker_s + cp_s), 2
        ),
        "baseline": baseline,
        "cores": os.cpu_count(),
        "load_1min_after": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=1))
    gb = size / 1e9
    print(f"\n| {gb:.2f} GB ({result['records']} records of {DIMENSIONS} floats) | seconds |")
    print("|---|---|")
    for label, key in (
        ("floor: `compose stop` + `start` of Chroma, no copy (median of 3)", "restart_compose_s"),
        ("floor: `docker stop` + `start` of its container, no copy (median of 3)",
         "restart_docker_s"),
        ("floor: `cp -a` of the stopped data dir (median of 3)", "cp_a_stopped_s"),
        ("backup: Chroma stopped (downtime), first", "backup_first_downtime_s"),
        ("backup: Chroma stopped (downtime), second", "backup_second_downtime_s"),
        ("floor: restic's own first backup of that copy", "restic_own_first_s"),
        ("backup: total, first snapshot", "backup_first_total_s"),
        ("floor: restic's own second backup (unchanged)", "restic_own_second_s"),
        ("backup: total, second (unchanged data)", "backup_second_total_s"),
    ):  # fmt: skip
        print(f"| {label} | {result[key]} |")
    print(
        f"\ndowntime / cp -a = {result['downtime_over_cp']} (target <= 1.5); downtime / "
        f"(docker stop + start + cp -a) = {result['downtime_over_docker_restart_plus_cp']}"
    )


if __name__ == "__main__":
    main()
