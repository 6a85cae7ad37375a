"""Shared test helpers: run the real deploy, read real facts, talk to real Chroma."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


# pyinfra names the operations of a @deploy "<deploy name> | <operation name>".
DEPLOY_PREFIX = "Chroma stack | "


@dataclass
class DeployRun:
    """What one `pyinfra --json @local deploy.py` run returned."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        """pyinfra's results; operation names without the "Chroma stack | " deploy prefix."""
        result = json.loads(self.stdout)["results"]
        for op in result["operations"]:
            op["name"] = op["name"].removeprefix(DEPLOY_PREFIX)
        return result

    @property
    def changed_operations(self) -> list[str]:
        """Names of the operations pyinfra itself counts as changed."""
        return [op["name"] for op in self.result["operations"] if op["success"]]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _run(
    command: list[str],
    data: dict[str, Any],
    extra: tuple[str, ...],
    env: dict[str, str] | None,
    timeout: int = 900,
    cwd: Path = ROOT,
) -> DeployRun:
    """Run one of the project's commands (from the repo root unless told), --data per key."""
    args = list(command)
    for key, value in data.items():
        args += ["--data", f"{key}={value}"]
    args += list(extra)
    completed = run_command(args, cwd, env or os.environ.copy(), timeout)
    if _COST_FILE:  # the stack starts (stack_up's step line) this run waited for
        _cost_add("stack starts", (completed.stdout + completed.stderr).count(" s for healthy"))
    return DeployRun(completed.returncode, completed.stdout, completed.stderr)


# pyinfra and the project's Python entry files are started by tests/harness/forkserver.py,
# which imported pyinfra once (about 0.7 s of CPU saved a run, on a suite bound by its two
# cores); CHROMA_DEPLOY_TEST_FORK=0 starts each as a process of its own.
_FORK = os.environ.get("CHROMA_DEPLOY_TEST_FORK", "1") != "0"
_forkserver: dict[str, Any] = {}


def _forked(args: list[str]) -> bool:
    """A command the fork server runs: pyinfra, or python with one of the repo's files."""
    if not _FORK:
        return False
    if args[0] == PYINFRA:
        return True
    return args[0] == sys.executable and len(args) > 1 and (ROOT / args[1]).parent == ROOT


def _forkserver_path() -> str:
    """The socket of this process's fork server, started on first use."""
    server = _forkserver.get("process")
    if server is None or server.poll() is not None:
        import tempfile

        path = os.path.join(tempfile.mkdtemp(prefix="cdfork"), "socket")
        _forkserver["process"] = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "harness" / "forkserver.py"), path],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _forkserver["path"] = path
        for _ in range(1200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the fork server did not start (tests/harness/forkserver.py)")
    return _forkserver["path"]


class ForkedRun:
    """A command the fork server runs, as much of a ``subprocess.Popen`` as the tests use:
    ``pid`` (its session's too: ``os.killpg`` ends it and what it started), ``stdout`` and
    ``stderr`` (text, universal newlines; None when not asked for), ``poll()``, ``wait()``."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], pipes: tuple[bool, bool]):
        import socket

        self.args = args
        self.returncode: int | None = None
        self.cpu = 0.0
        self._kind = _program_kind(args)
        self._begun = time.monotonic()
        _cost_add(f"runs: {self._kind}")
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ends = [os.open(os.devnull, os.O_RDONLY)]
        readers: list[int | None] = []
        for piped in pipes:
            if piped:
                read, write = os.pipe()
                readers.append(read)
                ends.append(write)
            else:
                readers.append(None)
                ends.append(os.open(os.devnull, os.O_WRONLY))
        try:
            self._connection.connect(_forkserver_path())
            request = json.dumps({"argv": args, "cwd": str(cwd), "env": env}).encode()
            socket.send_fds(self._connection, [request], ends)
        finally:
            for fd in ends:
                os.close(fd)
        self.pid = int(self._connection.recv(64))
        self.stdout, self.stderr = (
            None if fd is None else open(fd, encoding="utf-8", newline=None)  # noqa: SIM115
            for fd in readers
        )

    def _answered(self, answer: bytes) -> int:
        if answer:
            code, cpu = answer.split()
            self.returncode, self.cpu = int(code), float(cpu)
        else:  # the connection closed without an answer: killed by a signal
            self.returncode = -9
        self._connection.close()
        _cost_add(f"seconds: {self._kind}", time.monotonic() - self._begun)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            self._connection.setblocking(False)
            try:
                return self._answered(self._connection.recv(64))
            except BlockingIOError:
                return None
            finally:
                if self.returncode is None:
                    self._connection.setblocking(True)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._connection.settimeout(timeout)
            try:
                return self._answered(self._connection.recv(64))
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL to the run's whole session, as killing its process group does."""
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


def start_command(
    args: list[str], cwd: Path, env: dict[str, str], stdout: bool = True, stderr: bool = True
) -> ForkedRun | subprocess.Popen[str]:
    """Start a command in a session of its own, its output piped (or thrown away): through
    the fork server when it runs the command, else as a process."""
    if _forked(args):
        return ForkedRun(args, cwd, env, (stdout, stderr))
    return subprocess.Popen(
        args, cwd=cwd, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
    )  # fmt: skip


def run_command(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)``, through the fork server
    when it runs the command; killed (its whole session) at the timeout."""
    if not _forked(args):
        return subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
    run = ForkedRun(args, cwd, env, (True, True))
    assert run.stdout is not None and run.stderr is not None
    from concurrent.futures import wait

    with ThreadPoolExecutor(2) as pool:  # until the run and all it started closed their output
        reads = [pool.submit(run.stdout.read), pool.submit(run.stderr.read)]
        if wait(reads, timeout=timeout).not_done:
            run.kill()
            raise subprocess.TimeoutExpired(args, timeout)
    out, err = (read.result() for read in reads)
    run.stdout.close()
    run.stderr.close()
    return subprocess.CompletedProcess(args, run.wait(timeout), out, err)


def run_deploy(
    data: dict[str, Any],
    *extra: str,
    env: dict[str, str] | None = None,
    inventory: str = "@local",
    deploy_file: str = "deploy.py",
    timeout: int = 900,
    cwd: Path = ROOT,
) -> DeployRun:
    """Run the real CLI as a user would, with --json so the result is pyinfra's own."""
    command = [PYINFRA, "-y", "--json", inventory, deploy_file]
    return _run(command, data, extra, env, timeout, cwd)


def run_drift(
    data: dict[str, Any],
    *extra: str,
    inventory: str = "@local",
    env: dict[str, str] | None = None,
    timeout: int = 900,
) -> DeployRun:
    """Run drift.py as a user would; --json output parsed by the caller."""
    return _run([sys.executable, "drift.py", inventory], data, extra, env, timeout)


def converge(
    data: dict[str, Any], env: dict[str, str] | None = None, *extra: str, **where: Any
) -> DeployRun:
    """Deploy, then deploy again and assert the second run changed nothing.

    ``extra``: more arguments for both runs (``-vvv``: the commands in the output).
    ``where``: run_deploy's ``deploy_file`` and ``cwd``, to run from elsewhere.
    """
    first = run_deploy(data, *extra, env=env, **where)
    assert first.returncode == 0, first.output
    assert first.result["failed_hosts"] == []
    second = run_deploy(data, *extra, env=env, **where)
    assert second.returncode == 0, second.output
    assert second.changed_operations == [], second.output
    assert second.result["totals"]["success"] == 0
    return first


def read_fact(fact_cls: type, **kwargs: Any) -> Any:
    """Run a fact's own command on this machine and process its output with the fact."""
    fact = fact_cls()
    command = str(fact.command(**kwargs))
    completed = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=120, check=True
    )
    return fact.process(completed.stdout.splitlines())


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=300, check=check
    )


def stat(path: Path) -> tuple[int, int, str]:
    """uid, gid and octal mode, read with stat(1), independently of the facts."""
    uid, gid, mode = sh(f"stat -c '%u %g %a' '{path}'").stdout.split()
    return int(uid), int(gid), mode


def restart_engine() -> None:
    """After dockerd was stopped: wait for it to be gone, start it the way the harness does.

    The harness's supervisor (files/dockerd-supervisor.sh) restarts dockerd by itself;
    starting it again is a no-op when it already runs (it holds a lock).
    """
    for _ in range(60):
        if sh("pgrep -x dockerd", check=False).returncode != 0:
            break
        time.sleep(0.5)
    supervisor = "/usr/local/sbin/chroma-deploy-dockerd"
    sh(
        f"test -x {supervisor} || "
        f"install -m 0755 '{ROOT}/files/dockerd-supervisor.sh' {supervisor}; "
        f"setsid -f {supervisor} </dev/null >/dev/null 2>&1; "
        "for _ in $(seq 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"
    )


def wait_for_heartbeat(port: int) -> None:
    """Until Chroma answers on the port (for stacks started by hand in tests)."""
    import httpx

    for _ in range(240):  # 2 minutes: a busy machine starts Chroma slower
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no heartbeat on port {port}")


def chroma_address(name: str) -> str:
    """Chroma's address on the stack's internal network (behind the auth proxy)."""
    network = f"{name}_internal"
    return sh(f"docker inspect -f '{{{{(index .NetworkSettings.Networks \"{network}\")"
              f".IPAddress}}}}' {name}-chroma-1").stdout.strip()  # fmt: skip


def move_chroma(name: str) -> tuple[str, str, float]:
    """Chroma stopped, its address taken by another container, Chroma started again on a
    new one (as after a reboot or a recreate), the same container: the old address, the
    new, and when it was started (time.monotonic)."""
    old = chroma_address(name)
    sh(f"docker stop -t 10 {name}-chroma-1")
    try:
        sh(f"docker run -d --name {name}-holder --network {name}_internal "
           "--entrypoint sleep chroma-deploy/debian-base:bookworm 300")  # fmt: skip
        begun = time.monotonic()
        sh(f"docker start {name}-chroma-1")
    finally:
        sh(f"docker rm -f {name}-holder", check=False)
    new = chroma_address(name)
    assert new != old, f"Chroma kept its address {old}: nothing to find again"
    return old, new, begun


def compose_down(project_dir: Path) -> None:
    sh(f"cd '{project_dir}' && docker compose down --timeout 5")


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory):
    """A fresh project dir and compose project name, torn down afterwards.

    Teardown stops the stack; the data dirs are left to pytest's tmp cleanup.
    """
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    project_dir = base / "stack"
    yield project_dir, name
    if (project_dir / "docker-compose.yml").exists():
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
    sh(
        f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
        "2>/dev/null || true",
        check=False,
    )
    remove_cron_entries(project_dir)
    shutil.rmtree(base, ignore_errors=True)


def remove_cron_entries(project_dir: Path) -> None:
    """Take the project's scheduled backup out of root's crontab (a deploy with a repository
    set declares one), as chroma_backup_schedule=off would; other lines stay."""
    from declaration.schedule import project_lines

    listed = sh("crontab -l -u root 2>/dev/null", check=False).stdout.splitlines()
    ours = project_lines(listed, str(project_dir))
    if ours:
        keep = "".join(f"{line}\n" for line in listed if line not in ours)
        subprocess.run(["crontab", "-u", "root", "-"], input=keep, text=True, check=True)


# Each pytest-xdist worker ("gw0", "gw1") takes ports from a range of its own: a port
# one worker handed out but had not bound yet is never handed out by the other.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_next_port = [18100 + (int(_worker[2:]) * 1500 if _worker[2:].isdigit() else 0)
              + (os.getpid() % 200) * 4]  # fmt: skip


def free_port() -> int:
    import socket

    while True:
        _next_port[0] += 1
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", _next_port[0])) != 0:
                return _next_port[0]


def base_data(project_dir: Path, name: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "chroma_project_dir": str(project_dir),
        "chroma_compose_project": name,
        "chroma_port": free_port(),
    }
    data.update(extra)
    return data


def chroma_client(port: int):
    import chromadb

    return chromadb.HttpClient(host="127.0.0.1", port=port)


RECORDS = 600  # per collection in the migration tests: 1,200 in all


def write_records(
    port: int, names: tuple[str, ...] = ("manuals", "tickets"), per_collection: int = RECORDS
) -> dict[str, list[str]]:
    """Collections of records with embeddings, metadata and documents, by the real client."""
    client = chroma_client(port)
    written = {}
    for name in names:
        collection = client.create_collection(name, embedding_function=None)
        ids = [f"{name}-{i:05d}" for i in range(per_collection)]
        for start in range(0, per_collection, 200):
            chunk = range(start, min(start + 200, per_collection))
            collection.add(
                ids=[ids[i] for i in chunk],
                embeddings=[[float(i % 17), float(i % 19), float(i % 23), 1.0] for i in chunk],
                metadatas=[{"n": i, "source": name} for i in chunk],
                documents=[f"{name} record {i}" for i in chunk],
            )
        written[name] = ids
    return written


def read_records(port: int) -> dict[str, list[str]]:
    """Every collection's sorted record ids, read back by the real client."""
    client = chroma_client(port)
    return {
        c.name: sorted(
            client.get_collection(c.name, embedding_function=None).get(include=[])["ids"]
        )
        for c in client.list_collections()
    }


def seed_before_state(project_dir, name: str, port: int) -> None:
    """The seed's BEFORE in this compose project: a named volume, on the path 1.x persists to.

    Its own dir, but the compose project chroma-deploy takes over, as when a user
    deploys into the project the seed's file made.
    """
    legacy = project_dir.parent / "legacy"
    legacy.mkdir()
    (legacy / "docker-compose.yml").write_text(
        f"name: {name}\n"
        "services:\n"
        "  chroma:\n"
        "    image: chromadb/chroma:1.5.9\n"
        f"    ports: ['127.0.0.1:{port}:8000']\n"
        "    volumes: ['chroma_data:/data']\n"
        "volumes:\n"
        "  chroma_data: {}\n"
    )
    sh(f"cd '{legacy}' && docker compose up -d")
    wait_for_heartbeat(port)


@pytest.fixture
def legacy(project):
    """A project whose data sits in a seed-style stack's named volume; torn down after."""
    project_dir, name = project
    data = base_data(project_dir, name)
    volume = f"{name}_chroma_data"
    seed_before_state(project_dir, name, data["chroma_port"])
    yield project_dir, data, volume
    sh(f"cd '{project_dir.parent / 'legacy'}' && docker compose down", check=False)
    sh(f"docker volume rm {volume}", check=False)  # the test's own throwaway volume


@contextmanager
def project_lock_held(project_dir: Path, holder: str) -> Iterator[None]:
    """Hold the project's lock as another run would (plumbing/lock.py), naming ``holder``."""
    from plumbing.lock import lock_dir

    directory = Path(lock_dir(str(project_dir)))
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (directory / "holder").write_text(f"{holder}\n")
        yield


# With CHROMA_DEPLOY_TEST_COST=<file>, one JSON line per test and phase (setup, call,
# teardown) appended to the file: wall and CPU seconds (this process, and the programs it
# ran and waited for: pyinfra, drift.py, docker), the machine's busy and idle CPU seconds
# from /proc/stat over the same time, the programs started by kind, the seconds spent in
# pyinfra and drift.py runs and in sleeps, and the stack starts the deploys reported.
# Where a test's time goes, read without changing what it does (docs/testing.md).
_COST_FILE = os.environ.get("CHROMA_DEPLOY_TEST_COST")
_cost: dict[str, float] = {}


def _cost_add(key: str, amount: float = 1) -> None:
    _cost[key] = _cost.get(key, 0) + amount


def _program_kind(args: Any) -> str:
    words = [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)]
    line = " ".join(words)
    first = Path(words[0]).name if words else ""
    if first == "pyinfra":
        return "pyinfra --dry" if "--dry" in words else "pyinfra"
    for entry in ("drift.py", "rollout.py", "prove.py"):
        if entry in words[:3]:
            return entry.removesuffix(".py")
    if "compose" in line and (" up" in line or " run" in line):
        return "docker compose up"
    if "docker" in line or first == "docker":
        return "docker"
    return "other"


if _COST_FILE:
    import subprocess as _subprocess

    class _CountedPopen(_subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            self._cost_kind = _program_kind(args)
            self._cost_begun = time.monotonic()
            self._cost_done = False
            _cost_add(f"runs: {self._cost_kind}")
            super().__init__(args, *rest, **kwargs)

        def wait(self, timeout: float | None = None) -> int:
            code = super().wait(timeout)
            if not self._cost_done:
                self._cost_done = True
                _cost_add(f"seconds: {self._cost_kind}", time.monotonic() - self._cost_begun)
            return code

    _subprocess.Popen = _CountedPopen  # type: ignore[misc]
    _real_sleep = time.sleep

    def _counted_sleep(seconds: float) -> None:
        _cost_add("seconds: sleep", seconds)
        _real_sleep(seconds)

    time.sleep = _counted_sleep  # type: ignore[assignment]


def _forked_cpu() -> float:
    """CPU seconds of the runs the fork server started and reaped (killed ones too)."""
    server = _forkserver.get("process")
    if server is None:
        return 0.0
    try:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def _machine_cpu() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, idle / tick


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    yield from _measured(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield from _measured(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield from _measured(item, "teardown")


def _measured(item: pytest.Item, phase: str) -> Iterator[None]:
    if not _COST_FILE:
        yield
        return
    _cost.clear()
    times, busy, idle, begun = os.times(), *_machine_cpu(), time.monotonic()
    forked = _forked_cpu()
    yield
    after = os.times()
    _cost_add("cpu_forked", _forked_cpu() - forked)
    busy_after, idle_after = _machine_cpu()
    entry = {
        "test": item.nodeid, "phase": phase,
        "wall": round(time.monotonic() - begun, 2),
        "cpu_self": round(after.user + after.system - times.user - times.system, 2),
        "cpu_children": round(after.children_user + after.children_system
                              - times.children_user - times.children_system, 2),
        "machine_busy": round(busy_after - busy, 2), "machine_idle": round(idle_after - idle, 2),
        **{key: round(value, 2) for key, value in sorted(_cost.items())},
    }  # fmt: skip
    with open(_COST_FILE, "a") as out:
        out.write(json.dumps(entry) + "\n")


# About how long each real-engine file takes in CI, in seconds (docs/testing.md, "How long
# each file takes"; only their order matters). pytest-xdist hands whole files to its two
# workers in collection order (scripts/test.sh: --dist loadfile --no-loadscope-reorder), so
# the longest go first and the last handed out are short: a long file handed out late keeps
# one worker busy alone at the end. A file not listed counts as a minute.
FILE_SECONDS = {
    "test_tamper_matrix.py": 400,
    "test_offsite_restore.py": 400,
    "test_data_homes.py": 320,
    "test_fleet.py": 500,  # with test_rollout.py (SAME_WORKER)
    "test_tamper_files.py": 240,
    "test_interruption.py": 210,
    "test_proxy_faults.py": 240,
    "test_upgrade.py": 240,
    "test_drift.py": 220,
    "test_tokens.py": 170,
    "test_data_safety.py": 160,
    "test_backup_schedule.py": 150,
    "test_offsite_repository.py": 150,
    "test_converge.py": 150,
    "test_bad_input.py": 150,
    "test_data_attack4.py": 110,
    "test_migration.py": 100,
    "test_app.py": 90,
    "test_restore_refusals.py": 80,
    "test_security.py": 80,
    "test_takeover.py": 80,
    "test_overlap.py": 70,
    "test_server_settings.py": 50,
    "test_compose_verdict.py": 40,
    "test_persistence.py": 40,
    "test_faults.py": 30,
    "test_deploy_entry.py": 20,
    "test_output.py": 20,
    "test_compose_file.py": 10,
    "test_engine.py": 10,
}


# Files one pytest-xdist worker runs as one, in collection order: test_rollout.py rolls
# out over the SSH hosts test_fleet.py made (a second project on each), so it runs in
# test_fleet.py's worker, after it, and not beside it on the same hosts.
SAME_WORKER = {"tests/integration/test_rollout.py": "tests/integration/test_fleet.py"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the files of SAME_WORKER handed out together."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Together(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SAME_WORKER.get(scope, scope)

    return Together(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist only, the files longest first (each file's tests in their order).

    In one process the files keep their order: test_rollout.py uses test_fleet.py's hosts.
    """
    if hasattr(config, "workerinput"):
        # A file of SAME_WORKER goes where its partner goes (the sort keeps their order).
        def seconds(item: pytest.Item) -> int:
            name = SAME_WORKER.get(f"tests/integration/{item.path.name}", item.path.name)
            return FILE_SECONDS.get(name.rsplit("/", 1)[-1], 60)

        items.sort(key=lambda item: -seconds(item))


# Each file's own tag of a release newer than any known (the engine's tags are shared by
# the two test processes): the file names it, so two files never build under one tag.
OWN_TAGS = {
    "test_schema_attack2.py": "chromadb/chroma:1.99.7",
    "test_schema_attack3.py": "chromadb/chroma:1.99.21",
    "test_data_attack4.py": "chromadb/chroma:1.99.41",
}


@pytest.fixture
def own_tag(request: pytest.FixtureRequest) -> Iterator[str]:
    """A release newer than any known: the test file's own tag on the 1.5.9 build (OWN_TAGS);
    asked for before the project, so it is untagged after the project's containers are gone
    (a build made under it goes with it)."""
    tag = OWN_TAGS[request.path.name]
    subprocess.run(["docker", "tag", "chromadb/chroma:1.5.9", tag], check=True)
    yield tag
    subprocess.run(["docker", "image", "rm", tag], capture_output=True)


@pytest.fixture(scope="session")
def sftp_server():
    """A real sshd holding restic repositories over sftp (tests/harness/sftp_repository.py).

    One small container per test process, removed when the session ends.
    """
    from harness.sftp_repository import remove_server, start_server

    server = start_server()
    yield server
    remove_server(server)


@pytest.fixture
def sftp_repository(sftp_server):
    """A fresh, uninitialised repository path on ``sftp_server``; removed after the test.

    ``.url`` is the sftp: repository, ``.settings(password_file)`` the deploy's keys
    (ssh key and pinned known_hosts included), ``.restic(password_file, *args)`` runs
    restic from this machine against it.
    """
    from harness.sftp_repository import new_repository

    repository = new_repository(sftp_server)
    yield repository
    repository.remove()
