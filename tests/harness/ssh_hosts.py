"""SSH test hosts for the fleet tests: containers with their own sshd and Docker engine.

Each host is a container made from the local Debian base (no registry answers
here) with openssh-server and sudo. Each gets its own dockerd (Docker-in-Docker)
whose /var/lib/docker is a dir of this machine, so the deploy's bind mounts
resolve on the host it talks to, the way they do on a real server. sshd is
published on 127.0.0.1:<port> with key auth. Each host starts as one kind of
machine the deploy must converge (the ``kind`` of ``SshHost``, one per state of
the DockerEngine fact that needs work):

- cdfleet1: root over SSH; Debian's docker.io installed but stopped, with a
  stale /var/run/docker.pid naming a live process (``stopped``).
- cdfleet2: a non-root user ``deploy`` with passwordless sudo (the deploy runs
  with ``_sudo``); the engine runs, but only Debian's docker-compose v1 is there
  (``compose_v1``).
- cdfleet3: root, no Docker at all (``bare``).
- cdfleet4: root, only a docker CLI (this machine's, 28.x), no engine
  (``cli_only``): the kind of image on which "docker exists" is not "engine
  installed". The deploy installs Debian's 20.10 engine beside it.

apt on the hosts reaches the mirror through an /etc/hosts entry (containers
cannot resolve it by DNS). Once the deploy installed its dockerd supervisor, a
host's entrypoint starts it on every start of the container, as a boot script
would, so a host stopped and started by a test comes back with its engine.

Host keys are checked: the harness writes a known_hosts file from ssh-keyscan,
cross-checked against the key file inside each container, and the inventory
it writes sets ``ssh_strict_host_key_checking="yes"``.

Everything is named ``cdfleet*``: containers, images, ``STATE_DIR``. ``ensure_fleet``
is idempotent and takes about a second when the hosts run; ``fresh=True``
recreates them (new engines, no image, each host's kind again) for a first converge.

Run it by hand: ``.venv/bin/python tests/harness/ssh_hosts.py [--fresh] [--remove]``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HARNESS_DIR = Path(__file__).resolve().parent
STATE_DIR = Path(os.environ.get("CDFLEET_STATE_DIR", "/var/tmp/cdfleet"))
BASE_IMAGE = "chroma-deploy/debian-base:bookworm"
IMAGE_REPO = "cdfleet/sshhost"
LABEL = "cdfleet.image"

# What Docker-in-Docker needs on this VM: --privileged fails ("unable to apply
# caps", no CAP_SYS_RESOURCE), these work (see the shared offline-docker notes).
DIND_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
)  # fmt: skip


@dataclass(frozen=True)
class SshHost:
    """One SSH test host: inventory name = container name."""

    name: str
    port: int
    user: str
    kind: str  # a key of KINDS

    @property
    def sudo(self) -> bool:
        return self.user != "root"

    @property
    def docker_dir(self) -> Path:
        """The inner engine's /var/lib/docker (overlay2 cannot live on the container's)."""
        return STATE_DIR / self.name / "docker"


@dataclass(frozen=True)
class Kind:
    """How a host starts: its image's Dockerfile stage, and the engine at start."""

    stage: str
    engine: str  # CDFLEET_ENGINE for the entrypoint: "running", "stopped" or "" (none)
    copy_cli: bool = False  # copy this machine's docker CLI in (no engine)


KINDS = {
    "bare": Kind("bare", ""),
    "cli_only": Kind("bare", "", copy_cli=True),
    "stopped": Kind("docker", "stopped"),
    "compose_v1": Kind("compose-v1", "running"),
}
STAGES = sorted({kind.stage for kind in KINDS.values()})

HOSTS = (
    SshHost("cdfleet1", 22201, "root", kind="stopped"),
    SshHost("cdfleet2", 22202, "deploy", kind="compose_v1"),
    SshHost("cdfleet3", 22203, "root", kind="bare"),
    SshHost("cdfleet4", 22204, "root", kind="cli_only"),
)
BY_NAME = {test_host.name: test_host for test_host in HOSTS}


@dataclass(frozen=True)
class Fleet:
    """The running hosts and the files a test needs to reach them."""

    hosts: tuple[SshHost, ...]
    key: Path
    wrong_key: Path
    known_hosts: Path
    inventory: Path

    def host_data(self, test_host: SshHost, **extra: Any) -> dict[str, Any]:
        """pyinfra host data for one host: SSH with key auth and host keys checked."""
        data: dict[str, Any] = {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": test_host.port,
            "ssh_user": test_host.user,
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        if test_host.sudo:
            data["_sudo"] = True
        data.update(extra)
        return data

    def write_inventory(
        self,
        path: Path,
        hosts: Iterable[SshHost] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        shared: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a pyinfra inventory of ``hosts`` (default all), one group ``cdfleet``.

        ``overrides`` maps a host name to data that replaces its defaults (a wrong
        key, another known_hosts file); ``shared`` is data for every host.
        """
        overrides = overrides or {}
        rows = []
        for test_host in self.hosts if hosts is None else hosts:
            data = self.host_data(test_host, **(shared or {}))
            data.update(overrides.get(test_host.name, {}))
            rows.append(f"    ({test_host.name!r}, {data!r}),")
        path.write_text(
            '"""SSH test hosts written by tests/harness/ssh_hosts.py."""\n\n'
            "cdfleet = [\n" + "\n".join(rows) + "\n]\n"
        )
        return path

    def ssh_args(self, test_host: SshHost) -> list[str]:
        """An OpenSSH command line for the host, host key checked, no agent, no prompt."""
        return [
            "ssh", "-p", str(test_host.port), "-i", str(self.key),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
            f"{test_host.user}@127.0.0.1",
        ]  # fmt: skip

    def ssh(
        self, test_host: SshHost, command: str, check: bool = True, timeout: int = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the host over SSH (as root: through sudo for ``deploy``)."""
        remote = f"sudo -n sh -c {shlex.quote(command)}" if test_host.sudo else command
        done = subprocess.run(
            [*self.ssh_args(test_host), remote],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{test_host.name}: {command!r} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done

    @contextmanager
    def forward(self, test_host: SshHost, local_port: int, remote_port: int) -> Iterator[int]:
        """An SSH tunnel from 127.0.0.1:``local_port`` here to the host's ``remote_port``.

        How a test's ``chromadb`` client reaches a Chroma that listens on the
        host's loopback only, as it would on a server: through the SSH connection.
        """
        *options, destination = self.ssh_args(test_host)
        tunnel = subprocess.Popen(
            [*options, "-N", "-o", "ExitOnForwardFailure=yes",
             "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", destination],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", local_port)) == 0:
                        break
                if tunnel.poll() is not None or time.monotonic() > deadline:
                    error = (
                        tunnel.stderr.read() if tunnel.stderr and tunnel.poll() is not None else ""
                    )
                    raise AssertionError(f"{test_host.name}: no tunnel to {remote_port}: {error}")
                time.sleep(0.1)
            yield local_port
        finally:
            tunnel.terminate()
            try:
                tunnel.wait(timeout=10)
            except subprocess.TimeoutExpired:  # seen once on a loaded machine
                tunnel.kill()
                tunnel.wait(timeout=10)


def _run(args: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {done.returncode}: {done.stderr}")
    return done


def _image_tag(target: str) -> str:
    """The image tag for a Dockerfile stage, keyed by the build inputs: edits rebuild."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "entrypoint.sh"):
        digest.update((HARNESS_DIR / name).read_bytes())
    return f"{IMAGE_REPO}:{target}-{digest.hexdigest()[:12]}"


@functools.cache
def _mirror_hosts() -> tuple[str, ...]:
    """``--add-host`` entries for the apt mirrors this machine uses.

    Containers here cannot resolve the mirror by DNS; this machine can.
    """
    sources = [*Path("/etc/apt").glob("sources.list"), *Path("/etc/apt").glob("sources.list.d/*")]
    names = {"deb.debian.org"}
    for source in sources:
        if source.is_file():
            names.update(re.findall(r"https?://([A-Za-z0-9.-]+)", source.read_text()))
    entries = []
    for name in sorted(names):
        found = _run(["getent", "ahostsv4", name], check=False).stdout.split()
        if found:
            entries.append(f"{name}:{found[0]}")
    return tuple(entries)


def _image_exists(tag: str) -> bool:
    return _run(["docker", "image", "inspect", tag], check=False).returncode == 0


def build_images() -> dict[str, str]:
    """Build the host images once per machine (checked by tag first); tag by stage."""
    tags = {stage: _image_tag(stage) for stage in STAGES}
    if all(_image_exists(tag) for tag in tags.values()):
        return tags
    if not _image_exists(BASE_IMAGE):
        raise RuntimeError(
            f"{BASE_IMAGE} is missing: run scripts/test-env.sh "
            "(files/build-chroma-image.sh makes it)"
        )
    add_hosts = [arg for entry in _mirror_hosts() for arg in ("--add-host", entry)]
    for target, tag in tags.items():
        _run(
            ["docker", "build", "--quiet", *add_hosts, "--target", target, "-t", tag,
             str(HARNESS_DIR)],
            env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=900,
        )  # fmt: skip
    return tags


def _ensure_keys() -> tuple[Path, Path]:
    """The fleet's client key and a key no host accepts (for the refused-key case)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = STATE_DIR / "id_ed25519", STATE_DIR / "wrong_ed25519"
    for key in keys:
        if not key.is_file():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)])
    return keys


def _container(name: str) -> dict[str, str] | None:
    """State and image label of a container, or None when it does not exist."""
    done = _run(
        ["docker", "inspect", "--format",
         f'{{{{.State.Status}}}} {{{{index .Config.Labels "{LABEL}"}}}}', name],
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    status, _, image = done.stdout.strip().partition(" ")
    return {"status": status, "image": image}


def remove_host(test_host: SshHost) -> None:
    """Remove one of our own containers and its engine's store (our throwaway data)."""
    _run(["docker", "rm", "--force", "--volumes", test_host.name], check=False)
    shutil.rmtree(test_host.docker_dir, ignore_errors=True)


def _create(test_host: SshHost, image: str, label: str, public_key: str) -> None:
    kind = KINDS[test_host.kind]
    test_host.docker_dir.mkdir(parents=True, exist_ok=True)
    add_hosts = [arg for entry in _mirror_hosts() for arg in ("--add-host", entry)]
    _run(
        ["docker", "run", "--detach", "--name", test_host.name, "--hostname", test_host.name,
         "--label", f"{LABEL}={label}", *DIND_FLAGS, *add_hosts,
         "--volume", f"{test_host.docker_dir}:/var/lib/docker",
         "--publish", f"127.0.0.1:{test_host.port}:22",
         "--env", f"CDFLEET_AUTHORIZED_KEY={public_key}",
         "--env", f"CDFLEET_ENGINE={kind.engine}", image],
    )  # fmt: skip
    if kind.copy_cli:
        _run(["docker", "cp", _control_cli(), f"{test_host.name}:/usr/local/bin/docker"])


def _control_cli() -> str:
    """This machine's docker CLI, the one a cli_only host gets (newer than Debian's engine)."""
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("no docker CLI on this machine to copy into a cli_only host")
    return str(Path(found).resolve())


def start_host(test_host: SshHost) -> None:
    """Start a stopped host again (its disk, keys and engine store are kept)."""
    _run(["docker", "start", test_host.name])


def _host_key(test_host: SshHost, deadline: float) -> str:
    """The host's ed25519 key as ssh-keyscan sees it, once sshd answers.

    Compared with the key file inside the container (read with docker exec), so
    the known_hosts file is not trust-on-first-use even here.
    """
    while True:
        scan = _run(
            ["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", str(test_host.port), "127.0.0.1"],
            check=False,
        )
        lines = [line for line in scan.stdout.splitlines() if not line.startswith("#")]
        if lines:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{test_host.name}: sshd did not answer on port {test_host.port}")
        time.sleep(0.3)
    entry, scanned = lines[0].split(" ", 1)
    inside = _run(["docker", "exec", test_host.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
    if inside.stdout.split()[:2] != scanned.split()[:2]:
        raise RuntimeError(f"{test_host.name}: the scanned host key is not the container's")
    return f"{entry} {scanned.strip()}"


def _engine_started(test_host: SshHost) -> bool:
    """Whether the entrypoint starts an engine: the kind says so, or a deploy installed one."""
    started = _run(
        ["docker", "exec", test_host.name, "sh", "-c",
         "command -v dockerd >/dev/null && { test -x /usr/local/sbin/chroma-deploy-dockerd "
         '|| test "$CDFLEET_ENGINE" = running; }'],
        check=False,
    )  # fmt: skip
    return started.returncode == 0


def _wait_for_engine(test_host: SshHost, deadline: float) -> None:
    while _run(["docker", "exec", test_host.name, "docker", "info"], check=False).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{test_host.name}: dockerd did not start (/var/log/dockerd.log)")
        time.sleep(0.3)


def ensure_fleet(fresh: bool = False, hosts: tuple[SshHost, ...] = HOSTS) -> Fleet:
    """Make every host exist and answer, then write known_hosts and the inventory.

    Idempotent: running hosts are kept, stopped ones started, missing ones (or
    ones made from an older image) created. ``fresh`` removes them first, so the
    next converge starts from each host's kind: no project dir, no Chroma image,
    and the engine missing, stopped or without Compose v2.
    """
    for tool in ("ssh", "ssh-keyscan", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: run scripts/test-env.sh (openssh-client)")
    tags = build_images()
    key, wrong_key = _ensure_keys()
    public_key = key.with_suffix(".pub").read_text().strip()
    for test_host in hosts:
        found = _container(test_host.name)
        image = tags[KINDS[test_host.kind].stage]
        label = f"{image}+{test_host.kind}"  # another kind or image: a new container
        if fresh or (found and found["image"] != label):
            remove_host(test_host)
            found = None
        if found is None:
            _create(test_host, image, label, public_key)
        elif found["status"] != "running":
            start_host(test_host)
    fleet = Fleet(
        hosts=hosts,
        key=key,
        wrong_key=wrong_key,
        known_hosts=STATE_DIR / "known_hosts",
        inventory=STATE_DIR / "inventory.py",
    )
    write_known_hosts(fleet)
    fleet.write_inventory(fleet.inventory, shared={"chroma_image_source": "ship"})
    return fleet


def private_host(test_host: SshHost, directory: Path) -> Fleet:
    """``test_host`` (not one of HOSTS) made afresh as its kind, for one test alone.

    Its known_hosts and inventory are written in ``directory``, never the fleet's:
    a test that runs beside test_fleet.py rewrites none of that file's files.
    Remove it with :func:`remove_host`.
    """
    tags = build_images()
    key, wrong_key = _ensure_keys()
    image = tags[KINDS[test_host.kind].stage]
    remove_host(test_host)
    _create(test_host, image, f"{image}+{test_host.kind}",
            key.with_suffix(".pub").read_text().strip())  # fmt: skip
    fleet = Fleet((test_host,), key, wrong_key, directory / "known_hosts",
                  directory / "inventory.py")  # fmt: skip
    fleet.known_hosts.write_text(_host_key(test_host, time.monotonic() + 90) + "\n")
    return fleet


def write_known_hosts(fleet: Fleet) -> None:
    """known_hosts for every host, once each sshd and (where started) dockerd answer."""
    deadline = time.monotonic() + 90
    lines = [_host_key(test_host, deadline) for test_host in fleet.hosts]
    for test_host in fleet.hosts:
        if _engine_started(test_host):
            _wait_for_engine(test_host, deadline)
    fleet.known_hosts.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    if "--remove" in argv:
        for test_host in HOSTS:
            remove_host(test_host)
        return
    start = time.perf_counter()
    fleet = ensure_fleet(fresh="--fresh" in argv)
    print(f"{len(fleet.hosts)} hosts ready in {time.perf_counter() - start:.1f} s")
    print(f"inventory: {fleet.inventory}")
    for test_host in fleet.hosts:
        print(" ".join(shlex.quote(arg) for arg in fleet.ssh_args(test_host)))


if __name__ == "__main__":
    main(sys.argv[1:])
