#!/usr/bin/env python3
"""One project's off-host backup: the one program cron and backup.py both run.

    chroma_offsite.py backup --config <project_dir>/.chroma-deploy/offsite.json

Standard library only; uploaded next to chroma_restic.py (how restic is
called) and chroma_safety.py (manifest, space check, atomic JSON). The config
and the secrets it names are written by the deploy (operations/offsite.py).

A run, in order, each step before the next:

1. takes the project lock (``flock`` on ``<lock_dir>/lock``, the lock
   files/chroma-lock.sh takes for deploy.py and backup.py), waiting up to the
   config's ``lock_timeout``; when the run that called this (backup.py) holds
   it already, this run is part of that one and goes on;
2. replaces a staging copy a killed run left, and checks there is room for a
   new one on the data dir's filesystem: too little, and Chroma is never stopped;
3. removes restic's stale locks (a killed run's), which opens the repository:
   a wrong password, no repository or an unreachable host stops the run here,
   before Chroma is touched;
4. stops the chroma service (only it: a proxy in front of it keeps running),
   copies the data dir into the staging dir (``cp -a --reflink=auto``) and
   starts it again with ``compose start --wait``: the same containers, so
   compose's recorded verdict stays true. The downtime is this copy only, until
   Chroma's heartbeat answers; compose's verdict is waited for after step 5;
5. writes the manifest (chroma_safety.manifest_of: counts, id and content
   checksums per tenant/database/collection) from the copy, or reuses the last
   one when the bytes it is read from are the same (manifest_for), and uploads
   the staging dir with ``restic backup`` while Chroma serves; the copy is
   removed after, whatever happened;
6. with a keep set, ``restic forget --prune`` of this project's snapshots of
   this host only (``--tag project=`` and ``--host``): a repository shared with
   other projects and hosts loses nothing of theirs;
7. every 7 days (the status file says when the last one ran), ``restic check
   --read-data-subset``;
8. writes the status file and the Prometheus textfile (write, then rename).

A snapshot holds ``<staging_dir>/data/`` (the data dir as Chroma left it) and
``<staging_dir>/manifest.json``; tags ``project=``, ``host=`` and
``chroma_version=`` (the image the host runs, not what a config says).

A fault prints ONE line on stderr, ``<host>: <key>: <what>; <what to do>``,
and exits 1, with Chroma running again and nothing lost: the repository's
earlier snapshots are untouched, and a killed run leaves at most the staging
copy (which the next run replaces) and restic's stale lock (which the next run
removes); Chroma stopped by a run killed during the copy is started again by
the next run (a marker names what it stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chroma_restic import VERDICTS, Offsite, last_line, restic_args, verdict
from chroma_safety import (
    MARGIN_BYTES,
    database_problem,
    manifest_of,
    replaced_under,
    stamp,
    tree_size,
    write_json,
)

CHECK_EVERY = 7 * 24 * 3600  # seconds between two `restic check --read-data-subset`
LOCK_RETRY = 5  # seconds between two tries while another restic holds the repository
SERVICE = "chroma"  # the compose service that opens the data dir
METRIC = "chroma_deploy_backup"
MANIFEST_MEMO = "offsite-manifest-memo.json"  # beside the status file: manifest_for


class Fault(Exception):
    """A step that failed: ``key`` names the setting to look at, the text what to do."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Interrupted(Fault):
    """SIGTERM, SIGINT or SIGHUP (a timeout, a shutdown, Ctrl-C): undo, record, then stop."""

    def __init__(self, name: str) -> None:
        super().__init__("chroma_backup_repository", name)
        self.name = name


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _interrupted(number: int, _frame: object) -> None:
    """The first stop signal raises where the run is, so Chroma is started again at once
    (not by the next scheduled run, a day later); the next ones wait for that undo."""
    for each in STOP_SIGNALS:
        signal.signal(each, lambda *_: None)
    raise Interrupted(signal.Signals(number).name)


def now_iso(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --- the project lock --------------------------------------------------------------------


def ancestors() -> set[int]:
    """This process's parents up to init: the run that called this, if any, is one of them."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        match = re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE)
        pid = int(match.group(1)) if match else 0
    return found


def held_by_caller(lock_dir: Path) -> bool:
    """Whether the lock's holder (chroma-lock.sh's ``pid N on this host``) called this run."""
    with contextlib.suppress(OSError):
        match = re.search(r"pid (\d+) on this host", (lock_dir / "holder").read_text())
        return bool(match) and int(match.group(1)) in ancestors()  # type: ignore[union-attr]
    return False


@contextlib.contextmanager
def project_lock(offsite: Offsite) -> Iterator[None]:
    """The project's flock for the run's whole life, or a Fault naming the holder."""
    lock_dir = Path(offsite["lock_dir"])
    lock_dir.mkdir(parents=True, exist_ok=True)
    # Not inherited by restic or docker (Python's descriptors are close-on-exec): a killed
    # run frees the lock at once, and the upload it started dies with it (run_restic).
    handle = open(lock_dir / "lock", "a")  # noqa: SIM115 - held until the run ends
    try:
        timeout = int(offsite.values.get("lock_timeout", 300))
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if held_by_caller(lock_dir):  # backup.py took it for this run
                    yield
                    return
                if time.monotonic() >= deadline:
                    holder = (lock_dir / "holder").read_text().strip() if (
                        lock_dir / "holder").exists() else "holder unknown"  # fmt: skip
                    raise Fault(
                        "chroma_lock_timeout",
                        f"the project is locked by another run for more than {timeout} s: "
                        f"{holder}; nothing was backed up: the next run tries again, or raise "
                        "chroma_lock_timeout",
                    ) from None
                time.sleep(0.5)
        (lock_dir / "holder").write_text(
            f"chroma_offsite.py backup, pid {os.getpid()} on this host, since {now_iso()}\n"
        )
        yield
    finally:
        handle.close()


# --- restic ------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In restic's child: SIGKILL when this program dies, so a killed run uploads nothing more.

    Without it an orphaned restic would go on reading the staging copy that the
    next run (free to take the project lock) removes and copies anew.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def restic(offsite: Offsite, *args: str) -> subprocess.CompletedProcess[str]:
    """One restic call; while another restic holds the repository, tries again for a while.

    restic 0.14 has no ``--retry-lock``: an exclusive lock (another project's
    prune in a shared repository, a ``check``) is waited for, ``LOCK_RETRY``
    seconds apart, up to the config's ``restic_lock_wait`` (300 s).
    """
    deadline = time.monotonic() + float(offsite.values.get("restic_lock_wait", 300))
    while True:
        done = subprocess.run(
            restic_args(offsite, *args), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, check=False, preexec_fn=_die_with_parent,
        )  # fmt: skip
        remaining = deadline - time.monotonic()
        if verdict(done) != "locked" or remaining <= 0:
            return done
        time.sleep(min(LOCK_RETRY, remaining))  # the last try is at the deadline


def redacted(offsite: Offsite, text: str) -> str:
    """restic's words without the repository string (it may name a user, a bucket, a path)."""
    with contextlib.suppress(OSError):
        repository = offsite.repository
        if repository:
            text = text.replace(repository, "<chroma_backup_repository>")
    return text


def restic_fault(offsite: Offsite, done: subprocess.CompletedProcess[str], doing: str,
                 kept: str) -> Fault:  # fmt: skip
    """The one line for a failed restic call: what restic said, the key, what to do.

    ``doing``: what the call was for; ``kept``: what is true of the data now.
    """
    why = verdict(done)
    words = dict(VERDICTS).get(why)
    # The line that names the fault (restic adds hints after it), else restic's last.
    named = [line.strip() for line in done.stderr.splitlines() if words and words.search(line)]
    said = redacted(offsite, (named[0] if named else "") or last_line(done.stderr)
                    or last_line(done.stdout) or "no output")  # fmt: skip
    if why == "wrong password":
        return Fault("chroma_backup_password_file",
                     f"{doing}: the password does not open the repository (restic: {said}); "
                     f"{kept}: put the repository's password in chroma_backup_password_file "
                     "and deploy again")  # fmt: skip
    if why == "locked":
        return Fault("chroma_backup_repository",
                     f"{doing}: the repository is locked by another restic (restic: {said}); "
                     f"{kept}: the next run tries again; if that restic is gone, run restic "
                     "unlock on the repository")  # fmt: skip
    if why == "disk full":
        return Fault("chroma_backup_repository",
                     f"{doing}: the repository's disk is full (restic: {said}); {kept}: free "
                     "space there or set chroma_backup_keep_daily/_weekly/_monthly, then run "
                     "again")  # fmt: skip
    if why == "no repository":
        return Fault("chroma_backup_repository",
                     f"{doing}: there is no repository at chroma_backup_repository (restic: "
                     f"{said}); {kept}: deploy to initialise it, or fix the key")  # fmt: skip
    if why in ("host key", "unreachable"):
        key = "chroma_backup_known_hosts" if why == "host key" else "chroma_backup_repository"
        what = "is not the one pinned" if why == "host key" else "unreachable"
        return Fault(key, f"{doing}: the repository's host {what} (restic: {said}); {kept}: "
                          "check the host, the network and chroma_backup_ssh_key / "
                          "chroma_backup_known_hosts, then run again")  # fmt: skip
    return Fault("chroma_backup_repository",
                 f"{doing}: restic failed (restic: {said}); {kept}: fix what restic says, then "
                 "run again")  # fmt: skip


def summary_of(stdout: str) -> dict:
    """restic backup --json's summary line (snapshot_id, total_bytes_processed...)."""
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("message_type") == "summary":
                return message
    return {}


# --- compose -----------------------------------------------------------------------------


def compose_args(offsite: Offsite, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", offsite["project_dir"],
            "-f", offsite["compose_file"], *args]  # fmt: skip


def compose_env(project_dir: str) -> list[str]:
    """The COMPOSE_ variables the project's .env sets (as facts/project.py reads them).

    compose obeys them over ``-f`` and the file's ``name:``: with COMPOSE_PROJECT_NAME
    it lists another project, so Chroma would not be stopped and a live database copied.
    """
    try:
        text = Path(project_dir, ".env").read_text(errors="replace")
    except OSError:
        return []
    found = (re.match(r"\s*(?:export\s+)?(COMPOSE_[A-Za-z0-9_]*)\s*=", line)
             for line in text.splitlines())  # fmt: skip
    return sorted({match.group(1) for match in found if match})


def docker(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)  # fmt: skip


def compose(offsite: Offsite, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(compose_args(offsite, *args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)  # fmt: skip


def running_services(offsite: Offsite) -> list[str]:
    if not os.path.isfile(offsite["compose_file"]):
        return []
    done = compose(offsite, "ps", "--services", "--status", "running")
    if done.returncode != 0:
        raise Fault("chroma_project_dir",
                    f"docker compose ps failed ({last_line(done.stderr)}); nothing was "
                    "stopped: check docker on the host, then run again")  # fmt: skip
    return done.stdout.split()


def chroma_version(offsite: Offsite) -> str:
    """The running chroma container's image tag, else the compose file's: what wrote the data."""
    images = []
    for container in chroma_containers(offsite):
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{.Config.Image}}", container],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        images.append(inspected.stdout.strip())
    config = compose(offsite, "config", "--format", "json")
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        images.append(json.loads(config.stdout)["services"][SERVICE]["image"])
    for image in images:
        tag = image.rsplit("/", 1)[-1].partition("@")[0].rpartition(":")[2] if ":" in image.rsplit(
            "/", 1)[-1] else ""  # fmt: skip
        if re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", tag):
            return tag
    return "unknown"


def holders(path: str) -> list[str]:
    """``pid N (comm)`` of each process that has ``path`` open, a container's too.

    By device and inode (a container's process names the file by its own mount):
    after the stop of chroma nobody may hold the database, or Chroma was not
    really stopped (its service renamed by hand, another stack on the data dir) and a
    copy would be of a live database. Processes this user cannot see are not listed.
    """
    try:
        wanted = os.stat(path)
    except OSError:
        return []
    found = []
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    held = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino):
                        comm = Path(f"/proc/{pid}/comm").read_text().strip()
                        found.append(f"pid {pid} ({comm})")
                        break
    return found


def stopped_marker(offsite: Offsite) -> Path:
    return Path(offsite["staging_dir"]).with_name("offsite-stopped.json")


def chroma_containers(offsite: Offsite) -> list[str]:
    listed = compose(offsite, "ps", "--all", "--quiet", SERVICE)
    return listed.stdout.split() if listed.returncode == 0 else []


def chroma_heartbeats(containers: list[str]) -> list[str]:
    """The heartbeat URL at each address the started chroma container has (none yet: [])."""
    urls = []
    for container in containers:
        found = subprocess.run(
            ["docker", "inspect", "--format",
             "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        urls += [f"http://{address}:8000/api/v2/heartbeat" for address in found.stdout.split()]
    return urls


def answers(urls: list[str]) -> bool:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=0.5):  # noqa: S310 - http to the container
                return True
        except Exception:  # noqa: S112 - not up yet, or an address the host cannot reach
            continue
    return False


def start_services(offsite: Offsite, services: list[str]) -> subprocess.Popen[str]:
    """``compose start --wait`` of ``services``, running: :func:`served`, then :func:`started`."""
    return subprocess.Popen(
        compose_args(offsite, "start", "--wait", "--wait-timeout", str(offsite["wait_timeout"]),
                     *services),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def served(
    offsite: Offsite, starting: subprocess.Popen[str], containers: list[str] | None
) -> float:
    """The moment Chroma served again: its heartbeat's first answer at the container's address.

    That comes before compose's health check says so (it probes every few
    seconds); where the host cannot reach that address (Chroma behind the auth
    proxy, on an internal network), the moment ``start --wait`` returned.
    ``containers``: chroma's, listed before the stop (the same ids after ``start``),
    so the downtime pays for no listing.
    """
    urls: list[str] = []
    next_look = 0.0
    while starting.poll() is None:
        if not urls and time.monotonic() >= next_look:
            containers = containers or chroma_containers(offsite)
            urls, next_look = chroma_heartbeats(containers), time.monotonic() + 0.5
        if urls and answers(urls):
            return time.monotonic()
        time.sleep(0.05)
    return time.monotonic()


def started(offsite: Offsite, starting: subprocess.Popen[str]) -> str | None:
    """Waits for ``start --wait`` (every service healthy): None, or compose's last line.

    The stopped marker goes only once compose said so.
    """
    _, stderr = starting.communicate()
    if starting.returncode != 0:
        return last_line(stderr or "") or "no output"
    stopped_marker(offsite).unlink(missing_ok=True)
    return None


def start_again(
    offsite: Offsite, services: list[str], containers: list[str] | None = None
) -> tuple[str | None, float]:
    """``compose start --wait`` what this run (or a killed one) stopped: why not, and when.

    Returns (None, or compose's last line) and the moment Chroma served again
    (:func:`served`).
    """
    if not services:
        return None, time.monotonic()
    starting = start_services(offsite, services)
    serving = served(offsite, starting, containers) if SERVICE in services else time.monotonic()
    return started(offsite, starting), serving


# --- the run -----------------------------------------------------------------------------


def copy_stopped(
    offsite: Offsite, data_dir: str, staging: Path, result: dict
) -> subprocess.Popen[str] | None:
    """Stop chroma, ``cp -a --reflink=auto`` the data dir, start it again: the downtime.

    Returns once Chroma serves again (:func:`served`), with ``compose start --wait``
    still running: the caller reads and uploads the copy meanwhile, and then waits
    for it (:func:`started`): compose's health check probes every few seconds, and
    the upload need not wait for its verdict.
    """
    running = running_services(offsite)
    stop = [SERVICE] if SERVICE in running else []
    containers = chroma_containers(offsite) if stop else []
    stopped_at = time.monotonic()
    try:
        if stop:
            # Written first: a run killed while Chroma is down is undone by the next one.
            write_json(stopped_marker(offsite), {"services": running, "since": now_iso()})
            # docker's stop of the containers compose made for the service (their own stop
            # signal and timeout, as compose's stop sends them), not compose's: compose loads
            # the project first, a part of a second here, and inside the downtime.
            done = (docker(["stop", *containers]) if containers
                    else compose(offsite, "stop", *stop))  # fmt: skip
            if done.returncode != 0:
                problem, _ = start_again(offsite, running)
                started_again = "" if problem is None else f" and Chroma did not start: {problem}"
                raise Fault("chroma_project_dir",
                            f"the stop of {SERVICE} failed ({last_line(done.stderr)}); "
                            f"nothing was copied{started_again}: check docker on the host, then "
                            "run again")  # fmt: skip
        live = holders(os.path.join(data_dir, "chroma.sqlite3"))
        if live:
            problem = start_again(offsite, running, containers)[0] if stop else None
            started_again = "" if problem is None else f"; Chroma did not start: {problem}"
            raise Fault("chroma_project_dir",
                        f"after the stop of {SERVICE}, {data_dir}/chroma.sqlite3 is still "
                        f"open by {', '.join(live[:3])}: another server holds this data dir (the "
                        "compose file edited by hand, another stack on it); nothing was copied "
                        f"or uploaded{started_again}: run drift.py and deploy.py, then back up "
                        "again")  # fmt: skip
        copied = subprocess.run(["cp", "-a", "--reflink=auto", data_dir, str(staging / "data")],
                                capture_output=True, text=True, check=False)  # fmt: skip
    except Interrupted:
        if stop:  # subprocess.run killed the stop or the cp it waited for
            start_again(offsite, running, containers)
        raise
    if stop and containers:
        # The same containers, started by docker at once; compose's start of what was
        # running (nothing left to start) then waits for its health verdict.
        docker(["start", *containers])
    starting = start_services(offsite, running) if running else None
    serving = served(offsite, starting, containers) if starting and stop else time.monotonic()
    result["downtime_seconds"] = round(serving - stopped_at, 3) if stop else 0.0
    if copied.returncode != 0:
        problem = started(offsite, starting) if starting else None
        started_again = "" if problem is None else f"; Chroma did not start: {problem}"
        raise Fault("chroma_data_dir",
                    f"the staging copy of {data_dir} failed ({last_line(copied.stderr)}); "
                    f"nothing was uploaded{started_again}: free space or fix what cp says, "
                    "then run again")  # fmt: skip
    return starting


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when there is no such file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def manifest_for(offsite: Offsite, copy: Path, project: str, version: str, result: dict) -> dict:
    """The copy's manifest (chroma_safety.manifest_of), its collections reused when they must
    be the same.

    The collections (counts, id and content checksums) are a function of three
    things only: the bytes of the copy's ``chroma.sqlite3`` and of its ``-wal``
    (chroma_inventory reads nothing else) and the inventory's own code. The last
    run's collections are kept beside the status file with the sha256 of each;
    when all three digests are the same again, so are the collections, and reading
    every record again (seconds per 100,000) is skipped. A digest, not a size and
    mtime: a file rewritten with its size and mtime kept is read again.

    restic decides by size and mtime (``--ignore-inode --ignore-ctime``) whether to
    read a file again. Where the database's bytes changed but its size and mtime
    are those of the last run's copy, restic would keep the old bytes under the new
    manifest; the copy's mtime is then set to now, so restic reads it.
    """
    sqlite = copy / "chroma.sqlite3"
    files = [sqlite, sqlite.with_name("chroma.sqlite3-wal")]
    key = {
        "sqlite": file_sha256(sqlite),
        "wal": file_sha256(files[1]),
        "inventory": file_sha256(Path(__file__).with_name("chroma_inventory.py")),
    }
    stats = [[path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else None
             for path in files]  # fmt: skip
    memo_file = Path(offsite["status_file"]).with_name(MANIFEST_MEMO)
    memo: dict = {}
    with contextlib.suppress(OSError, ValueError):
        memo = json.loads(memo_file.read_text())
    if memo.get("key") == key and isinstance(memo.get("collections"), dict):
        result["manifest"] = "reused"
        return {"collections": memo["collections"], "project": project, "version": version,
                "created": stamp()}  # fmt: skip
    last = memo.get("stats") if isinstance(memo.get("stats"), list) else []
    for path, now, before in zip(files, stats, [*last, None, None][:2], strict=True):
        if now is not None and now == before:  # new bytes under the last copy's size and mtime
            os.utime(path)
            now[1] = path.stat().st_mtime_ns
    manifest = manifest_of(str(sqlite), project, version, None)
    write_json(memo_file, {"key": key, "stats": stats, "collections": manifest["collections"]})
    result["manifest"] = "read"
    return manifest


def mark(result: dict, step: str) -> None:
    """The seconds since the last mark, as ``step`` (the status file's last_steps_seconds)."""
    now = time.monotonic()
    result.setdefault("steps", {})[step] = round(now - result.get("marked", now), 3)
    result["marked"] = now


def back_up(offsite: Offsite, status: dict, result: dict) -> None:
    """Steps 2 to 7 of the module's docstring; a Fault stops at the first that fails."""
    result["marked"] = time.monotonic()
    project, host = offsite["project_name"], offsite["host"]
    staging = Path(offsite["staging_dir"])
    data_dir = os.path.join(offsite["project_dir"], offsite["data_dir"])
    chroma_is_serving = "Chroma kept serving"
    marker = stopped_marker(offsite)
    names = compose_env(offsite["project_dir"])
    if names:
        raise Fault("chroma_project_dir",
                    f"{offsite['project_dir']}/.env sets {names[0]}, which docker compose obeys "
                    "over the project's compose file (the backup would stop nothing and copy a "
                    "live database); nothing was stopped or uploaded: remove that line "
                    "(chroma-deploy never edits your .env), then run again")  # fmt: skip
    # A verification that did not match blocks backup.py and deploy.py (operations/migrate.py
    # data_safety_guard) until the user acts; so it blocks the schedule's run too.
    state_dir = Path(offsite["project_dir"], ".chroma-deploy")
    failed = sorted(path.name for path in state_dir.glob("failed-*"))
    if failed:
        raise Fault("chroma_accept_failed_verification",
                    f"{len(failed)} verification(s) failed on this host ({', '.join(failed)} "
                    f"in {state_dir}); nothing was stopped or uploaded (a snapshot of unverified "
                    "data would be the newest, and with a keep set forget good ones): restore the "
                    "backup or the copy it names, or deploy with "
                    "chroma_accept_failed_verification=true to go on as it is")  # fmt: skip
    if marker.exists():  # a run killed while Chroma was stopped: serve first
        problem, _ = start_again(offsite, json.loads(marker.read_text())["services"])
        if problem is not None:
            raise Fault("chroma_project_dir",
                        f"Chroma, stopped by a backup that was killed, did not start again "
                        f"({problem}); nothing was backed up: run deploy.py")  # fmt: skip
    if not os.path.isfile(offsite["compose_file"]):
        # Without it Chroma could not be stopped, and a copy of a live database is no backup.
        raise Fault("chroma_project_dir",
                    f"{offsite['compose_file']} is not there, so Chroma cannot be stopped for a "
                    "consistent copy; nothing was backed up: run deploy.py, then back up "
                    "again")  # fmt: skip
    if not os.path.isdir(data_dir):
        raise Fault("chroma_data_dir", f"{data_dir} is not there; nothing was backed up: "
                    "deploy the project first")  # fmt: skip
    if not os.path.isfile(os.path.join(data_dir, "chroma.sqlite3")):
        # Emptied, or never opened: its snapshot would restore as an empty database (and
        # become `latest`), and with a keep set it would forget a good snapshot.
        raise Fault("chroma_data_dir",
                    f"{data_dir} has no chroma.sqlite3 (Chroma never opened it, or it was "
                    "emptied); Chroma was not stopped and nothing was uploaded or forgotten: "
                    "a snapshot of it would restore as an empty database; deploy the project "
                    "(or restore it), then back up again")  # fmt: skip
    # What blocks deploy.py and backup.py (the data-safety guard, the dir the server has
    # open) blocks the schedule's run too, before Chroma is stopped: a snapshot of another
    # database would be `latest`, and with a keep set forget the good ones.
    problem = database_problem(data_dir)
    if problem and not offsite.values.get("allow_empty_data_dir"):
        raise Fault("chroma_allow_empty_data_dir",
                    f"{problem}; Chroma was not stopped and nothing was uploaded or forgotten: "
                    "put the database back (restore.py), or, when its collections were "
                    "deleted, run maintain.py --apply orphans; or deploy with "
                    "chroma_allow_empty_data_dir=true")  # fmt: skip
    replaced = replaced_under(f"{project}-{SERVICE}-1")
    if replaced:
        raise Fault("chroma_data_dir",
                    f"{replaced} is not the dir the running {project}-{SERVICE}-1 has open (it "
                    "was moved away while Chroma ran and another put in its place): its next "
                    "start would serve the other; Chroma was not stopped and nothing was "
                    f"uploaded: put the dir it serves back at {replaced}, or stop the stack and "
                    "deploy")  # fmt: skip
    if staging.exists():
        shutil.rmtree(staging)  # our own copy from a killed run, never data
    need = tree_size(data_dir)
    free = shutil.disk_usage(staging.parent).free
    if free < need + MARGIN_BYTES:
        raise Fault("chroma_data_dir",
                    f"no space for the staging copy on {staging.parent}'s filesystem: it needs "
                    f"{need} bytes plus a {MARGIN_BYTES} byte margin and {free} are free; "
                    f"Chroma was not stopped and nothing was uploaded: free space there, then "
                    "run again")  # fmt: skip
    # Removes only stale locks (a killed run's); it opens the repository, so a wrong
    # password, no repository or an unreachable host stops the run before Chroma does.
    mark(result, "checks")
    opened = restic(offsite, "unlock")
    mark(result, "unlock")
    if opened.returncode != 0:
        raise restic_fault(offsite, opened, "the repository could not be opened",
                           f"nothing was stopped or uploaded and {chroma_is_serving}")  # fmt: skip
    version = chroma_version(offsite)
    mark(result, "version")
    staging.mkdir(mode=0o700)
    starting = None
    try:
        starting = copy_stopped(offsite, data_dir, staging, result)
        mark(result, "copy")
        manifest = manifest_for(offsite, staging / "data", project, version, result)
        mark(result, "manifest")
        write_json(staging / "manifest.json", manifest)
        result["records"] = sum(item["count"] for item in manifest["collections"].values())
        previous = status.get("last_records")
        if (not result["records"] and isinstance(previous, int) and previous > 0
                and not offsite.values.get("allow_empty_data_dir")):  # fmt: skip
            # An emptied data dir that Chroma opened again: its snapshot would become
            # `latest`, and with a keep set each night's would push a good one out.
            raise Fault("chroma_data_dir",
                        f"{data_dir} holds no records, and the last snapshot "
                        f"({status.get('last_snapshot')}) held {previous}: the data dir was "
                        "emptied or replaced; nothing was uploaded or forgotten: restore the "
                        "data (restore.py), or, if emptying it was meant, deploy with "
                        "chroma_allow_empty_data_dir=true")  # fmt: skip
        uploaded = restic(
            offsite, "backup", "--json", "--host", host,
            "--tag", f"project={project}", "--tag", f"host={host}",
            "--tag", f"chroma_version={version}", "--tag", f"records={result['records']}",
            # cp -a keeps each file's mtime: an unchanged file is not read again, though its
            # inode and ctime are new in every copy.
            "--ignore-inode", "--ignore-ctime", str(staging),
        )  # fmt: skip
        mark(result, "upload")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        problem = started(offsite, starting) if starting else None
        mark(result, "healthy")
        if problem is not None:
            result["start_problem"] = problem
            chroma_is_serving = f"Chroma did not start again after the copy ({problem})"
    summary = summary_of(uploaded.stdout)
    if uploaded.returncode != 0 or not summary.get("snapshot_id"):
        raise restic_fault(offsite, uploaded, "the upload failed",
                           f"no snapshot was written, the earlier ones are intact and "
                           f"{chroma_is_serving}")  # fmt: skip
    result.update(snapshot=summary["snapshot_id"], version=version,
                  size_bytes=int(summary.get("total_bytes_processed", 0)),
                  added_bytes=int(summary.get("data_added", 0)), success=time.time())  # fmt: skip
    if result.get("start_problem"):
        raise Fault("chroma_project_dir",
                    f"snapshot {summary['snapshot_id']} was written, but Chroma did not start "
                    f"again after the copy ({result['start_problem']}): run deploy.py")  # fmt: skip
    keep = offsite.values.get("keep") or {}
    keeps = [(f"--keep-{name}", str(keep[name])) for name in ("daily", "weekly", "monthly")
             if keep.get(name)]  # fmt: skip
    if keeps:
        pruned = restic(offsite, "forget", "--prune", "--tag", f"project={project}",
                        "--host", host, *(word for pair in keeps for word in pair))  # fmt: skip
        if pruned.returncode != 0:
            raise restic_fault(offsite, pruned, f"snapshot {summary['snapshot_id']} was "
                               "written but old ones were not forgotten",
                               "nothing was deleted")  # fmt: skip
    mark(result, "forget")
    listed = restic(offsite, "snapshots", "--json", "--host", host, "--tag", f"project={project}")
    mark(result, "snapshots")
    with contextlib.suppress(ValueError, TypeError):
        result["snapshots"] = len(json.loads(listed.stdout) or [])
    if time.time() - float(status.get("last_check") or 0) >= CHECK_EVERY:
        subset = str(offsite.values.get("check_subset") or "5%")
        checked = restic(offsite, "check", "--read-data-subset", subset)
        mark(result, "check")
        result.update(check=time.time(), check_ok=checked.returncode == 0)
        if checked.returncode != 0:
            raise restic_fault(offsite, checked, f"restic check --read-data-subset {subset} "
                               "did not pass", f"snapshot {summary['snapshot_id']} was written "
                               "and nothing was deleted")  # fmt: skip


def label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS = (
    ("last_success_timestamp_seconds", "Unix time of the last backup that wrote a snapshot.",
     "last_success"),
    ("last_duration_seconds", "Seconds the last backup run took, start to end.",
     "last_duration_seconds"),
    ("last_downtime_seconds", "Seconds Chroma was stopped by the last run (the local copy).",
     "last_downtime_seconds"),
    ("last_size_bytes", "Bytes of data the last snapshot holds.", "last_size_bytes"),
    ("last_added_bytes", "Bytes the last snapshot added to the repository.", "last_added_bytes"),
    ("snapshots", "This project's and host's snapshots in the repository.", "snapshots"),
    ("last_exit_code", "The last run's exit code (0: the backup and its steps succeeded).",
     "last_exit_code"),
    ("last_check_timestamp_seconds", "Unix time of the last restic check --read-data-subset.",
     "last_check"),
    ("last_check_success", "1 when the last restic check found no error, else 0.",
     "last_check_ok"),
)  # fmt: skip


def metrics_text(offsite: Offsite, status: dict) -> str:
    labels = (f'project="{label_value(offsite["project_name"])}",'
              f'host="{label_value(offsite["host"])}"')  # fmt: skip
    lines = []
    for name, help_text, field in METRICS:
        value = status.get(field)
        value = float(value) if isinstance(value, int | float) else 0.0
        shown = str(int(value)) if value.is_integer() else repr(value)
        lines += [f"# HELP {METRIC}_{name} {help_text}", f"# TYPE {METRIC}_{name} gauge",
                  f"{METRIC}_{name}{{{labels}}} {shown}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def record(offsite: Offsite, status: dict, result: dict, exit_code: int, error: str) -> dict:
    """The status file and the metrics textfile, each written whole (write, then rename)."""
    status = dict(status)
    status.update(
        last_run=time.time(), last_exit_code=exit_code, last_error=error,
        last_duration_seconds=result["duration_seconds"],
        last_downtime_seconds=result.get("downtime_seconds", 0.0),
        last_steps_seconds=result.get("steps", {}),
    )  # fmt: skip
    if "success" in result:
        status.update(last_success=result["success"], last_snapshot=result["snapshot"],
                      last_size_bytes=result["size_bytes"],
                      last_added_bytes=result["added_bytes"],
                      last_records=result.get("records"),
                      last_manifest=result.get("manifest"),
                      chroma_version=result["version"])  # fmt: skip
    if "snapshots" in result:
        status["snapshots"] = result["snapshots"]
    if "check" in result:
        status.update(last_check=result["check"], last_check_ok=int(result["check_ok"]))
    status_file = Path(offsite["status_file"])
    status_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(status_file, status)
    metrics = Path(offsite["metrics_file"])
    umask = os.umask(0o022)  # node_exporter, another user, must reach the file: not 0700 dirs
    try:
        metrics.parent.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(umask)
    tmp = metrics.with_name(f".{metrics.name}.{os.getpid()}.tmp")
    tmp.write_text(metrics_text(offsite, status))
    tmp.chmod(0o644)  # node_exporter reads it; it holds no secret
    os.replace(tmp, metrics)
    return status


def backup(args: argparse.Namespace) -> int:
    try:
        offsite = Offsite.load(args.config)
    except (OSError, ValueError) as error:
        print(f"{socket.gethostname()}: chroma_backup_repository: {args.config} cannot be read "
              f"({type(error).__name__}: {error}); nothing was backed up: run deploy.py with "
              "chroma_backup_repository set, which writes it", file=sys.stderr)  # fmt: skip
        return 1
    os.umask(0o077)  # the staging copy and the status file: the owner's only
    started = time.monotonic()
    status_file = Path(offsite["status_file"])
    status: dict = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(status_file.read_text())
    result: dict = {}
    exit_code, error = 0, ""
    for each in STOP_SIGNALS:
        signal.signal(each, _interrupted)
    try:
        with project_lock(offsite):
            back_up(offsite, status, result)
    except Interrupted as stopped:
        exit_code = 1
        written = (f"snapshot {result['snapshot']} was written" if "snapshot" in result
                   else "no snapshot was written")  # fmt: skip
        error = (f"{offsite['host']}: {stopped.key}: the backup was stopped by {stopped.name}; "
                 f"{written}, Chroma was started again (or kept serving) and the earlier "
                 "snapshots are intact: the next run tries again")  # fmt: skip
    except Fault as fault:
        exit_code, error = 1, f"{offsite['host']}: {fault.key}: {fault}"
    except Exception as failure:
        exit_code = 1
        error = (f"{offsite['host']}: chroma_backup_repository: the backup failed "
                 f"({type(failure).__name__}: {failure}); run again, and report it if it "
                 "stays")  # fmt: skip
    for each in STOP_SIGNALS:  # the run is over: its record is written whole
        signal.signal(each, lambda *_: None)
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    error = redacted(offsite, error)
    record(offsite, status, result, exit_code, error)
    if exit_code:
        print(error, file=sys.stderr)
        return exit_code
    print(f"{offsite['host']}: snapshot {result['snapshot']} of {offsite['project_name']} "
          f"written: {result.get('records', 0)} records, {result['size_bytes']} bytes "
          f"({result['added_bytes']} new), Chroma stopped {result.get('downtime_seconds', 0):.1f} "
          f"s, {result['duration_seconds']:.1f} s in all")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    backed_up = commands.add_parser("backup")
    backed_up.add_argument(
        "--config", required=True, help="<project_dir>/.chroma-deploy/offsite.json"
    )
    args = parser.parse_args()
    return backup(args)


if __name__ == "__main__":
    sys.exit(main())
