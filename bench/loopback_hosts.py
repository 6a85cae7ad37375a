"""Lightweight SSH hosts on this machine's loopback, for bench/bench_fleet.py.

A fleet of N real servers costs N test containers with their own engine each
(tests/harness/ssh_hosts.py): too heavy for 30 on two cores. What the bench needs
is N distinct SSH hosts whose cost is the deploy's, so each host here is one
``/usr/sbin/sshd -D`` process:

- on ``127.0.0.1:22300+n``, with its own ed25519 host key; the known_hosts file is
  written from those key files (nothing trusted on first use) and the inventory
  checks host keys;
- root login with a key generated for the bench, nothing else (no password, no PAM);
- its own HOME (sshd's ``SetEnv``) holding an empty ``.bashrc``: bash reads
  ``~/.bashrc`` for every command sshd runs, and root's real one on this machine
  starts pyenv, which no server should charge to the deploy;
- its own project dir ``/srv/chroma-bench/hNN`` and Chroma port ``19100+n``, as host
  data in a generated inventory; every host shares this machine's one Docker engine.

Networks: compose gives every project a bridge network of its own. An engine's
default address pools hold 31 of them (172.17-19.0.0/16, 172.20-31.0.0/16 by
four, and 192.168.0.0/16 cut into /20s), the default ``bridge`` takes one, and on
this shared machine other people's stacks hold more, so 30 bench stacks do not
fit in what is left (and would starve everyone else's tests). The bench creates
each of its project's networks itself, a /24 from a private range no network on
the engine overlaps, labelled the way compose labels its own: compose uses it
and ``docker compose down`` removes it. Nothing of the engine's config changes.

Everything lives under BASE (state in ``BASE/.hosts``); :meth:`LoopbackFleet.remove`
stops our sshd processes by pid, takes every bench project down (never ``-v``),
removes our networks, our lock dirs and BASE. Run ``bench/bench_fleet.py --cleanup`` after
a bench that was killed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from common import wait_for_engine  # also puts the repo on sys.path, for plumbing

from plumbing.lock import lock_dir

BASE = Path("/srv/chroma-bench")
BENCH_LOCK = Path("/run/lock/chroma-bench.lock")
STATE = BASE / ".hosts"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # Debian's default subsystem
SSH_PORT_BASE = 22300
CHROMA_PORT_BASE = 19100
NETWORK_LABEL = "chroma-bench=fleet"
PROJECT_NAME = re.compile(r"fleetbench\d{2}")  # LoopbackHost.compose_project
DOWN_AT_ONCE = 6  # parallel `docker compose down`s: all 30 at once overload two cores
# Where the bench's own networks come from: the first /16 no network on the engine overlaps.
NETWORK_CANDIDATES = tuple(ipaddress.ip_network(f"10.{n}.0.0/16") for n in range(213, 250))
# The engine's default address pools (moby's defaults, no daemon.json here): 31 networks.
DEFAULT_POOLS = (
    (ipaddress.ip_network("172.17.0.0/16"), 16),
    (ipaddress.ip_network("172.18.0.0/16"), 16),
    (ipaddress.ip_network("172.19.0.0/16"), 16),
    (ipaddress.ip_network("172.20.0.0/14"), 16),
    (ipaddress.ip_network("172.24.0.0/14"), 16),
    (ipaddress.ip_network("172.28.0.0/14"), 16),
    (ipaddress.ip_network("192.168.0.0/16"), 20),
)


@dataclass(frozen=True)
class LoopbackHost:
    """Host ``n`` (1-based): its inventory name, ports, project and sshd files."""

    n: int

    @property
    def name(self) -> str:
        return f"h{self.n:02d}"

    @property
    def ssh_port(self) -> int:
        return SSH_PORT_BASE + self.n

    @property
    def chroma_port(self) -> int:
        return CHROMA_PORT_BASE + self.n

    @property
    def project_dir(self) -> Path:
        return BASE / self.name

    @property
    def compose_project(self) -> str:
        return f"fleetbench{self.n:02d}"

    @property
    def network(self) -> str:
        return f"{self.compose_project}_default"

    @property
    def state_dir(self) -> Path:
        return STATE / self.name

    @property
    def config(self) -> Path:
        return self.state_dir / "sshd_config"

    @property
    def log(self) -> Path:
        """sshd's log at LogLevel VERBOSE: one ``Starting session`` line per command."""
        return self.state_dir / "sshd.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "sshd.pid"


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args[:4])} ... exited {done.returncode}: {done.stderr}")
    return done


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def engine_subnets() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every subnet a network on this machine's engine holds."""
    ids = _run(["docker", "network", "ls", "-q"]).stdout.split()
    if not ids:
        return []
    found = _run(["docker", "network", "inspect", *ids, "--format", "{{json .IPAM.Config}}"])
    subnets = []
    for line in found.stdout.splitlines():
        for config in json.loads(line) or []:
            if config.get("Subnet"):
                subnets.append(ipaddress.ip_network(config["Subnet"]))
    return subnets


def default_pool_use(subnets: list[Any]) -> dict[str, int]:
    """How many of the default pools' 31 networks the engine's networks already hold."""
    capacity = sum(2 ** (size - pool.prefixlen) for pool, size in DEFAULT_POOLS)
    used = sum(
        1
        for subnet in subnets
        if subnet.version == 4 and any(subnet.subnet_of(pool) for pool, _ in DEFAULT_POOLS)
    )
    return {"capacity": capacity, "used": used, "free": capacity - used}


def free_range(subnets: list[Any]) -> ipaddress.IPv4Network:
    """The first candidate /16 that no network on the engine overlaps."""
    for candidate in NETWORK_CANDIDATES:
        if not any(subnet.version == 4 and subnet.overlaps(candidate) for subnet in subnets):
            return candidate
    raise SystemExit("bench: every 10.213-249.0.0/16 overlaps a network on the engine")


def _sshd_config(test_host: LoopbackHost, home: Path) -> str:
    sftp = SFTP_SERVER if Path(SFTP_SERVER).exists() else "internal-sftp"
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {test_host.ssh_port}",
            f"HostKey {test_host.state_dir / 'host_ed25519'}",
            f"PidFile {test_host.pid_file}",
            f"AuthorizedKeysFile {STATE / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PrintMotd no",
            "PrintLastLog no",
            f"Subsystem sftp {sftp}",
            # The host's own HOME: bash reads its (empty) .bashrc, not root's.
            f"SetEnv HOME={home}",
            "LogLevel VERBOSE",
            "",
        ]
    )


@dataclass
class LoopbackFleet:
    """Up to ``size`` loopback hosts; :meth:`start` makes them answer, :meth:`remove` undoes all."""

    size: int
    hosts: list[LoopbackHost] = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    network_range: str = ""
    lock: TextIO | None = None  # held from start() to remove(): one bench at a time

    def __post_init__(self) -> None:
        self.hosts = [LoopbackHost(n) for n in range(1, self.size + 1)]

    @property
    def key(self) -> Path:
        return STATE / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return STATE / "known_hosts"

    def start(self) -> None:
        """Keys, configs, one sshd per host, each project's network; refuses a busy port."""
        if not Path(SSHD).exists():
            raise SystemExit(f"bench: {SSHD} is missing: apt-get install openssh-server")
        self.lock = take_bench_lock()
        if BASE.exists():
            raise SystemExit(f"bench: {BASE} exists (a bench still running, or killed): "
                             "run bench/bench_fleet.py --cleanup first")  # fmt: skip
        busy = [
            port
            for test_host in self.hosts
            for port in (test_host.ssh_port, test_host.chroma_port)
            if not _port_is_free(port)
        ]
        if busy:
            raise SystemExit(f"bench: ports in use on 127.0.0.1: {busy}; stop what holds them")
        # sshd's StrictModes wants every dir above the key files root-owned, not group-writable.
        BASE.mkdir(mode=0o755)
        STATE.mkdir(mode=0o700)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chroma-bench", "-f",
              str(self.key)])  # fmt: skip
        shutil.copyfile(self.key.with_suffix(".pub"), STATE / "authorized_keys")
        known = []
        for test_host in self.hosts:
            test_host.state_dir.mkdir(mode=0o700)
            home = test_host.state_dir / "home"
            home.mkdir(mode=0o700)
            (home / ".bashrc").write_text("")
            host_key = test_host.state_dir / "host_ed25519"
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", test_host.name, "-f",
                  str(host_key)])  # fmt: skip
            key_type, key_data = host_key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[127.0.0.1]:{test_host.ssh_port} {key_type} {key_data}")
            test_host.config.write_text(_sshd_config(test_host, home))
            _run([SSHD, "-t", "-f", str(test_host.config)])
        self.known_hosts.write_text("\n".join(known) + "\n")
        for test_host in self.hosts:
            self.processes[test_host.name] = subprocess.Popen(
                [SSHD, "-D", "-f", str(test_host.config), "-E", str(test_host.log)],
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        for test_host in self.hosts:
            while not _answers(test_host.ssh_port):
                if self.processes[test_host.name].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: sshd of {test_host.name} did not start: "
                                     f"{test_host.log.read_text()}")  # fmt: skip
                time.sleep(0.05)
        self._create_networks()

    def _create_networks(self) -> None:
        """Each project's network from a private /16, outside the default pools."""
        network_range = free_range(engine_subnets())
        self.network_range = str(network_range)
        subnets = list(network_range.subnets(new_prefix=24))
        for test_host in self.hosts:
            _run(["docker", "network", "create", "--subnet", str(subnets[test_host.n]),
                  "--label", "com.docker.compose.network=default",
                  "--label", f"com.docker.compose.project={test_host.compose_project}",
                  "--label", NETWORK_LABEL, test_host.network])  # fmt: skip

    def host_data(self, test_host: LoopbackHost) -> dict[str, Any]:
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": test_host.ssh_port,
            "ssh_user": "root",
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "chroma_project_dir": str(test_host.project_dir),
            "chroma_compose_project": test_host.compose_project,
            "chroma_port": test_host.chroma_port,
        }

    def inventory(self, count: int) -> Path:
        """An inventory of the first ``count`` hosts, one group ``fleetbench``."""
        path = STATE / f"inventory-{count}.py"
        rows = [f"    ({h.name!r}, {self.host_data(h)!r}),"
                for h in self.hosts[:count]]  # fmt: skip
        path.write_text(
            '"""Loopback hosts written by bench/loopback_hosts.py."""\n\n'
            "fleetbench = [\n" + "\n".join(rows) + "\n]\n"
        )
        return path

    def sshd_pids(self, count: int) -> list[int]:
        return [self.processes[h.name].pid for h in self.hosts[:count]]

    def ssh_args(self, test_host: LoopbackHost) -> list[str]:
        return [
            "ssh", "-p", str(test_host.ssh_port), "-i", str(self.key),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "root@127.0.0.1",
        ]  # fmt: skip

    def remove(self) -> None:
        """Stop our sshd processes, take our projects down, remove our networks and BASE.

        Only by the bench that holds the lock: a second one, refused at start(),
        must not take the first one's hosts away.
        """
        if self.lock is None:
            return
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        remove_leftovers()
        self.lock.close()
        self.lock = None


def take_bench_lock() -> TextIO:
    """The machine's one bench lock (flock: freed when the bench's process ends, even killed)."""
    BENCH_LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = BENCH_LOCK.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "holder unknown"
        handle.close()
        raise SystemExit(f"bench: another bench is running ({holder}); wait for it") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n")
    handle.flush()
    return handle


def _stop_leftover_sshd() -> None:
    """sshd processes of a killed bench: each runs with a config file under STATE.

    Found by that path in their command line (sshd shows it in its title), so
    nothing but the bench's own sshd processes is ever signalled.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(("sshd", SSHD)) and f" -f {STATE}/" in title:
            pid = int(entry.name)
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)


def _lines(args: list[str]) -> list[str]:
    return _run(args, check=False).stdout.split()


def bench_projects() -> list[str]:
    """Compose projects of the bench on the engine: by their containers, and by our networks."""
    project = '{{.Label "com.docker.compose.project"}}'
    named = _lines(["docker", "ps", "-a", "--format", project])
    labelled = _lines(["docker", "network", "ls", "--filter", f"label={NETWORK_LABEL}",
                       "--format", project])  # fmt: skip
    return sorted({name for name in [*named, *labelled] if PROJECT_NAME.fullmatch(name)})


def remove_leftovers() -> None:
    """Everything the bench made, whether it ended well or was killed: idempotent.

    The stacks go first, and are checked gone, before their project dirs: a
    container whose bind-mounted data dir is deleted under it dies, and its
    restart policy then tries, and fails, to start it again.
    """
    _stop_leftover_sshd()
    # Only once Docker answers is a listing of our containers complete enough to decide
    # that their data dirs may go.
    wait_for_engine(then="; run bench/bench_fleet.py --cleanup once it does")
    projects = bench_projects()
    for start in range(0, len(projects), DOWN_AT_ONCE):
        downs = [
            subprocess.Popen(["docker", "compose", "-p", project, "down", "-t", "3"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for project in projects[start : start + DOWN_AT_ONCE]
        ]  # fmt: skip
        for down in downs:
            _, stderr = down.communicate()
            if down.returncode != 0:
                print(f"bench: docker compose down: {stderr.strip()}", file=sys.stderr)
    left = [
        container
        for project in projects
        for container in _run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]
        ).stdout.split()
    ]
    if left:  # ours, and no volume of theirs holds data: the data dirs are bind mounts
        print(f"bench: {len(left)} containers outlived docker compose down; removing them",
              file=sys.stderr)  # fmt: skip
        _run(["docker", "rm", "--force", *left], check=False)
    ours = _lines(["docker", "network", "ls", "-q", "--filter", f"label={NETWORK_LABEL}"])
    if ours:
        _run(["docker", "network", "rm", *ours])
    for n in range(1, 100):  # the lock dirs of every project dir a bench may have used
        shutil.rmtree(lock_dir(str(LoopbackHost(n).project_dir)), ignore_errors=True)
    shutil.rmtree(BASE, ignore_errors=True)


def stop_on_sigterm() -> None:
    """A SIGTERM ends the bench through its ``finally``: nothing is left running."""

    def stop(*_: object) -> None:
        print("bench: terminated (SIGTERM); removing what it made", file=sys.stderr)
        sys.exit(143)

    signal.signal(signal.SIGTERM, stop)
