"""The compose stack of a project: its containers, their state, mounts and config hash."""

from __future__ import annotations

import json
import re
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, sections, shell_word


def _containers_command(project_name: str, image: str | None = None) -> str:
    """Inspect the project's containers, stopped ones too; ``@@docker`` when the engine answers.

    With ``image``, the same ``docker inspect`` also inspects that image
    reference (one command for both: each costs the host a docker CLI start).
    A reference always has a tag, so it names no container (names hold no
    ``:``); an absent image is left out of the output, as a gone container is.
    Leaves the containers' full ids, sorted and space-separated, in ``$ids`` for
    the verdict record (verdict_key).
    """
    targets = f"$raw {shell_word(image)}" if image else "$raw"
    wanted = '[ -n "$raw$answered" ]' if image else '[ -n "$raw" ]'
    return (
        f"answered=; if {_list_ids(project_name)}; then answered=yes; echo @@docker; echo yes; fi; "
        f"{_SORTED_IDS}; "
        "echo @@containers; "
        f"{wanted} && docker inspect {targets} 2>/dev/null | tr -d '\\n'; echo"
    )


def _list_ids(project_name: str) -> str:
    """``$raw``: the full ids of the project's containers; fails when Docker does not answer.

    The one listing both the reader (_containers_command) and the verdict's writer
    (verdict_key_command) use, so a record's ids and a read's compare like for like.
    """
    label = shell_word(f"label=com.docker.compose.project={project_name}")
    return f"raw=$(docker ps -aq --no-trunc --filter {label} 2>/dev/null)"


# The ids `docker ps -aq` printed into $raw, as one line: sorted, each followed by a space.
_SORTED_IDS = "ids=$(printf '%s\\n' $raw | sort | tr '\\n' ' ')"

# Compose's verdict, recorded by the run that last brought the stack up
# (operations/stack.record_verdict), is valid while neither the compose file (and
# the .env compose reads beside it) nor the set of containers has changed since.
VERDICT_RECORD = ".chroma-deploy/compose-verdict"


def verdict_key(project_dir: str, compose_file: str = "docker-compose.yml") -> str:
    """Shell that sets ``$key``: the two lines a recorded verdict holds for.

    The sha256 of the compose file and the project's ``.env``, then the
    container ids in ``$ids`` (set by _containers_command before it).
    """
    files = " ".join(shell_word(f"{project_dir}/{name}") for name in (compose_file, ".env"))
    return f'key=$(printf \'%s\\n%s\' "$(cat {files} 2>/dev/null | sha256sum | cut -c1-64)" "$ids")'


def verdict_key_command(project_dir: str, project_name: str) -> str:
    """Shell that sets ``$key`` as ComposeStack reads it; fails when Docker does not answer."""
    return f"{_list_ids(project_name)} && {_SORTED_IDS} && {verdict_key(project_dir)}"


def _parse_inspected(
    lines: list[str], fact: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The containers, sorted by service then name, and the image, from one ``docker inspect``.

    A container is told by its ``State``, an image by its ``RepoTags``. The image:
    ``{"id", "version" (its org.opencontainers.image.version label, or None),
    "entrypoint" (None: its config was not read)}``, None when not asked for or absent.
    """
    text = "".join(lines).strip()
    if not text:
        return [], None
    try:
        items = json.loads(text)
        containers = [_container(item) for item in items if "State" in item]
        image = next((_image(item) for item in items if "RepoTags" in item), None)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise parse_error(fact, f"docker inspect: {type(error).__name__}: {error}") from None
    return sorted(containers, key=lambda c: (c["service"], c["name"])), image


def _image(item: dict[str, Any]) -> dict[str, Any]:
    config = item.get("Config") or {}
    labels = config.get("Labels") or {}
    return {
        "id": str(item["Id"]),
        "version": labels.get("org.opencontainers.image.version"),
        "entrypoint": (config.get("Entrypoint") or []) if "Config" in item else None,
    }


def _container(item: dict[str, Any]) -> dict[str, Any]:
    config = item.get("Config") or {}
    labels = config.get("Labels") or {}
    state = item.get("State") or {}
    ports = []
    published = (item.get("NetworkSettings") or {}).get("Ports") or {}
    for container_port, bindings in sorted(published.items()):
        for binding in bindings or []:
            ports.append(
                {
                    "container_port": container_port,
                    "host_ip": binding.get("HostIp", ""),
                    "host_port": binding.get("HostPort", ""),
                }
            )
    mounts = [
        {
            "type": m.get("Type", ""),
            "source": m.get("Source", ""),
            "target": m.get("Destination", ""),
            "name": m.get("Name") or None,
        }
        for m in item.get("Mounts") or []
    ]
    # `tmpfs:` in a compose file lands in HostConfig.Tmpfs, not in Mounts.
    for target in sorted((item.get("HostConfig") or {}).get("Tmpfs") or {}):
        mounts.append({"type": "tmpfs", "source": "", "target": target, "name": None})
    env = dict(entry.split("=", 1) for entry in config.get("Env") or [] if "=" in entry)
    host_config = item.get("HostConfig") or {}
    return {
        "name": item.get("Name", "").lstrip("/"),
        "service": labels.get("com.docker.compose.service", ""),
        "state": state.get("Status", "unknown"),
        "health": (state.get("Health") or {}).get("Status"),
        "image": config.get("Image", ""),
        "image_id": item.get("Image", ""),
        "config_hash": labels.get("com.docker.compose.config-hash"),
        "mounts": mounts,
        "ports": ports,
        "env": env,
        "user": config.get("User", ""),
        "restart_count": int(item.get("RestartCount") or 0),
        "cap_drop": list((item.get("HostConfig") or {}).get("CapDrop") or []),
        "security_opt": list((item.get("HostConfig") or {}).get("SecurityOpt") or []),
        "read_only": bool((item.get("HostConfig") or {}).get("ReadonlyRootfs")),
        "network_mode": str((item.get("HostConfig") or {}).get("NetworkMode") or ""),
        # As it runs, not as its labels say (a `docker update`, a container made by hand).
        "healthcheck": (config.get("Healthcheck") or {}).get("Test"),
        "restart_policy": (host_config.get("RestartPolicy") or {}).get("Name") or "no",
        "memory": int(host_config.get("Memory") or 0),
        "nano_cpus": int(host_config.get("NanoCpus") or 0),
        "limits": _other_limits(host_config),
        "cap_add": list(host_config.get("CapAdd") or []),
        "networks": sorted((item.get("NetworkSettings") or {}).get("Networks") or {}),
        "oneoff": labels.get("com.docker.compose.oneoff") == "True",
        "config_files": labels.get("com.docker.compose.project.config_files"),
        "entrypoint": config.get("Entrypoint") or [],
    }


# What `docker update` sets besides memory, CPUs and the restart policy (engine key: ours).
# The file declares none of them; one left by hand is harmless until the next start, then
# a crash loop (a pids limit under what the server starts) that no label shows.
_OTHER_LIMITS = {
    "PidsLimit": "pids_limit", "MemoryReservation": "memory_reservation",
    "CpuShares": "cpu_shares", "CpuQuota": "cpu_quota", "CpuPeriod": "cpu_period",
    "CpuRealtimePeriod": "cpu_rt_period", "CpuRealtimeRuntime": "cpu_rt_runtime",
    "CpusetCpus": "cpuset_cpus", "CpusetMems": "cpuset_mems", "BlkioWeight": "blkio_weight",
}  # fmt: skip


def _other_limits(host_config: dict[str, Any]) -> dict[str, Any]:
    """The limits of _OTHER_LIMITS that are set (0, -1, none or "": unlimited, left out)."""
    found = {ours: host_config.get(key) for key, ours in _OTHER_LIMITS.items()}
    return {key: value for key, value in found.items() if value not in (None, 0, -1, "")}


class ComposeStack(FactBase[dict[str, Any]]):
    """The project's containers and the config hashes its compose file declares.

    ``{"docker": bool, "file_exists": bool, "config_error": str|None,
    "declared_hashes": {service: hash}, "image_id": str|None,
    "would_recreate": [container names ``up --dry-run`` would recreate],
    "containers": [...]}``, containers sorted by service then name, each
    ``{"name", "service", "state", "health" (None: no healthcheck), "image",
    "image_id", "config_hash" (None: not made by compose), "mounts": [{"type",
    "source", "target", "name" (None: not a volume)}], "ports":
    [{"container_port", "host_ip", "host_port"}] (empty while stopped), "env",
    "user", "restart_count", "cap_drop", "security_opt", "read_only", and as it
    runs: "healthcheck" (its test; None: the image's, ``["NONE"]``: disabled),
    "restart_policy", "memory" (bytes; 0: no limit), "nano_cpus" (0: no limit),
    "limits" (the other limits ``docker update`` sets, only those set), "cap_add",
    "networks", "entrypoint", "oneoff" (made by ``compose run``),
    "config_files" (compose's label: the file that made it)}``.
    ``image_version`` and ``image_entrypoint``: the ``image`` reference's
    version label and entrypoint (None: not asked, absent, or no label).

    ``docker`` False: no docker command or the daemon does not answer (no
    containers then). ``declared_hashes`` is empty when the file is missing,
    invalid (``config_error`` holds the first lines compose printed) or the
    daemon is down. ``image_id``: the id the optional ``image`` reference names
    now (None: not asked, or no such image), so a moved tag shows against each
    container's ``image_id``. Who listens on the port is PortHolder's to say.
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"docker": False, "file_exists": False, "config_error": None,
                "declared_hashes": {}, "image_id": None, "image_version": None,
                "image_entrypoint": None, "would_recreate": [],
                "verdict": "compose", "containers": []}  # fmt: skip

    def command(
        self,
        project_dir: str,
        project_name: str,
        compose_file: str = "docker-compose.yml",
        image: str | None = None,
    ) -> str:
        path = shell_word(f"{project_dir}/{compose_file}")
        compose = f"docker compose -f {path} --project-directory {shell_word(project_dir)}"
        record = shell_word(f"{project_dir}/{VERDICT_RECORD}")
        # Hashes come from stdout only; on failure compose runs again for its
        # error, without the warnings it prints before it. The containers are
        # listed first: their ids are part of the verdict record's key.
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            f"{_containers_command(project_name, image)}; "
            f"if test -f {path}; then echo @@file; {verdict_key(project_dir, compose_file)}; "
            f'if test -f {record} && [ "$(head -n 2 {record})" = "$key" ]; then '
            f"echo @@hashes; tail -n +3 {record}; echo @@verdict; echo recorded; "
            f"elif out=$({compose} config --hash '*' 2>/dev/null); then "
            'echo @@hashes; echo "$out"; '
            # Compose's own verdict, for what its --hash cannot say: a service in another
            # one's network namespace is hashed with that container's id at creation.
            f"echo @@recreate; {compose} up --detach --dry-run 2>&1"
            " | sed -n 's/^ *Container \\(.*\\) Recreate *$/\\1/p'; "
            f"else echo @@config_error; {compose} config --quiet 2>&1 >/dev/null"
            " | grep -v 'level=warning' | head -n 3; fi; fi"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        if not found:
            return self.default()
        docker = any(line.strip() for line in found.get("docker", []))
        hashes = {}
        for line in found.get("hashes", []):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise parse_error("ComposeStack", f"unexpected config --hash line {line!r}")
            hashes[parts[0]] = parts[1]
        error = " ".join(line.strip() for line in found.get("config_error", []) if line.strip())
        if "config_error" in found and not error:
            error = "docker compose config failed without a message"
        containers, image = _parse_inspected(found.get("containers", []), "ComposeStack")
        return {
            "docker": docker,
            "file_exists": "file" in found,
            "config_error": error or None,
            "declared_hashes": hashes if docker else {},
            "would_recreate": sorted(
                {line.strip() for line in found.get("recreate", []) if line.strip()}
            ),
            "verdict": "recorded" if "verdict" in found else "compose",
            "image_id": image["id"] if image else None,
            # What the image the tag names now is: a moved tag may name another version.
            "image_version": image["version"] if image else None,
            "image_entrypoint": image["entrypoint"] if image else None,
            "containers": containers,
        }


class ContainerMounts(FactBase[dict[str, Any] | None]):
    """What is mounted into a service's container, and what is wrong with it.

    None when no container of the service exists (or Docker is absent or
    down). Else ``{"container": name, "mounts": [{"type", "source", "target",
    "name", "named_volume": bool, "is_persist_path": bool}], "problems":
    [sentence, ...]}``; problems is empty when the persist path is a bind
    mount and no named volume is mounted. With several containers of the
    service (scaled), the first by name is reported.
    """

    @staticmethod
    def default() -> dict[str, Any] | None:
        return None

    # pyinfra calls command() and process() on one instance: command() keeps
    # the arguments that process() needs.
    service = ""
    persist_path = ""

    def command(self, project_name: str, service: str, persist_path: str) -> str:
        self.service, self.persist_path = service, persist_path
        return f"command -v docker >/dev/null 2>&1 || exit 0; {_containers_command(project_name)}"

    def process(self, output: list[str]) -> dict[str, Any] | None:
        containers, _ = _parse_inspected(sections(output).get("containers", []), "ContainerMounts")
        ours = [c for c in containers if c["service"] == self.service]
        if not ours:
            return None
        return mounts_report(ours[0], self.persist_path)


def mounts_report(container: dict[str, Any], persist_path: str) -> dict[str, Any]:
    """Flag named volumes and a persist path that is not bind-mounted."""
    mounts = []
    problems = []
    for mount in container["mounts"]:
        named = mount["type"] == "volume"
        mounts.append(
            {**mount, "named_volume": named, "is_persist_path": mount["target"] == persist_path}
        )
        if named:
            problems.append(
                f"named volume {mount['name']!r} is mounted at {mount['target']}: it is removed "
                "with the stack's volumes and hides data from the project dir"
            )
    at_persist = [m for m in mounts if m["is_persist_path"]]
    if not at_persist:
        problems.append(
            f"nothing is mounted at the persist path {persist_path}: data lives in the "
            "container's writable layer and is lost when the container is recreated"
        )
        for mount in mounts:
            if mount["type"] == "bind" and mount["target"] not in ("/config.yaml",):
                problems.append(
                    f"bind mount {mount['source']} -> {mount['target']} is not where this "
                    f"server writes ({persist_path})"
                )
    elif at_persist[0]["type"] == "tmpfs":
        problems.append(
            f"a tmpfs is mounted at the persist path {persist_path}: data lives in memory "
            "and is lost when the container stops"
        )
    return {"container": container["name"], "mounts": mounts, "problems": problems}


class ContainerLayerData(FactBase[dict[str, list[str]]]):
    """Chroma databases that containers keep in their own writable layer.

    ``{container: [paths of chroma.sqlite3 files added or changed in its
    layer, outside every mount]}`` from ``docker diff`` (stopped containers
    too). A path here is lost when the container is removed or recreated.
    Empty when Docker is absent or none of ``containers`` exists.
    """

    @staticmethod
    def default() -> dict[str, list[str]]:
        return {}

    def command(self, containers: list[str]) -> str:
        parts = [
            f"echo @@{index}; docker diff {shell_word(name)} 2>/dev/null"
            " | awk '$2 ~ /\\/chroma\\.sqlite3$/ {print $2}'"
            for index, name in enumerate(containers)
        ]
        self.names = list(containers)
        return "command -v docker >/dev/null 2>&1 || exit 0; " + "; ".join([*parts, "true"])

    names: list[str] = []  # noqa: RUF012 - set by command() for process(), as pyinfra calls them

    def process(self, output: list[str]) -> dict[str, list[str]]:
        found = sections(output)
        return {
            name: sorted(line.strip() for line in found.get(str(index), []) if line.strip())
            for index, name in enumerate(self.names)
            if any(line.strip() for line in found.get(str(index), []))
        }


class PortHolder(FactBase[dict[str, Any]]):
    """Who holds TCP ``port`` on the host, read before anything changes.

    ``{"listener": str|None, "program": str|None}``. ``listener``: the local
    address ``ss -Hltnp`` shows for the port, None when nothing listens.
    ``program``: ``name, pid N`` of the listener, None when ss may not show it
    (not root) or nothing listens. Whether the listener is the project's own
    stack is ComposeStack's to say (its containers' published ports).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"listener": None, "program": None}

    def command(self, port: int) -> str:
        return f"ss -Hltnp {shell_word(f'( sport = :{int(port)} )')} 2>/dev/null; true"

    def process(self, output: list[str]) -> dict[str, Any]:
        listening = [line.split() for line in output if line.strip()]
        first = listening[0] if listening else []
        # State, Recv-Q, Send-Q, local address, peer address, then users:(("name",pid=N,fd=M))
        program = _SS_USER.search(" ".join(first[5:])) if len(first) > 5 else None
        return {
            "listener": first[3] if len(first) > 3 else None,
            "program": f"{program[1]}, pid {program[2]}" if program else None,
        }


_SS_USER = re.compile(r'users:\(\("([^"]+)",pid=(\d+)')


class NamedContainers(FactBase[dict[str, str | None]]):
    """Containers that exist under these names, whoever made them.

    ``{name: the compose project its label names, or None (made without compose)}``;
    a name no container has is left out. Compose names the container it creates
    for a service ``<project>-<service>-1``: a container of that name made another
    way (by hand, by another project) makes ``up`` fail. Empty when Docker is absent.
    """

    @staticmethod
    def default() -> dict[str, str | None]:
        return {}

    def command(self, names: list[str]) -> str:
        template = '{{.Name}}|{{index .Config.Labels "com.docker.compose.project"}}'
        targets = " ".join(shell_word(name) for name in names)
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            f"docker inspect --format {shell_word(template)} {targets} 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for line in output:
            name, sep, project = line.strip().partition("|")
            if not sep:
                continue
            found[name.lstrip("/")] = None if project in ("", "<no value>") else project
        return found
