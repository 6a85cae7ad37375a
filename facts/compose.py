"""The compose stack of a project: its containers, their state, mounts and config hash."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import parse_error, q, sections


def _containers_command(project_name: str) -> str:
    """Inspect the project's containers; `@@docker` first when the engine answers."""
    label = q(f"label=com.docker.compose.project={project_name}")
    return (
        f"ids=$(docker ps -aq --filter {label} 2>/dev/null) && echo @@docker && echo yes; "
        "echo @@containers; "
        "[ -n \"$ids\" ] && docker inspect $ids 2>/dev/null | tr -d '\\n'; echo"
    )


def _parse_containers(lines: list[str], fact: str) -> list[dict[str, Any]]:
    text = "".join(lines).strip()
    if not text:
        return []
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise parse_error(fact, str(error)) from None
    containers = [_container(item) for item in raw]
    return sorted(containers, key=lambda c: (c["service"], c["name"]))


def _container(item: dict[str, Any]) -> dict[str, Any]:
    config = item.get("Config") or {}
    labels = config.get("Labels") or {}
    state = item.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    ports = []
    for container_port, bindings in sorted(
        ((item.get("NetworkSettings") or {}).get("Ports") or {}).items()
    ):
        for binding in bindings or []:
            ports.append(
                {
                    "container_port": container_port,
                    "host_ip": binding.get("HostIp", ""),
                    "host_port": binding.get("HostPort", ""),
                }
            )
    env = dict(entry.split("=", 1) for entry in config.get("Env") or [] if "=" in entry)
    return {
        "name": item.get("Name", "").lstrip("/"),
        "service": labels.get("com.docker.compose.service", ""),
        "state": state.get("Status", "unknown"),
        "health": health,
        "image": config.get("Image", ""),
        "image_id": item.get("Image", ""),
        "config_hash": labels.get("com.docker.compose.config-hash"),
        "mounts": [
            {
                "type": m.get("Type", ""),
                "source": m.get("Source", ""),
                "target": m.get("Destination", ""),
                "name": m.get("Name") or None,
            }
            for m in item.get("Mounts") or []
        ],
        "ports": ports,
        "env": env,
        "user": config.get("User", ""),
        "restart_count": int(item.get("RestartCount") or 0),
    }


class ComposeStack(FactBase[dict[str, Any]]):
    """The project's containers and the config hashes its compose file declares.

    ``{"docker": bool, "file_exists": bool, "config_error": str|None,
    "declared_hashes": {service: hash}, "containers": [...]}``. Each container:
    ``name, service, state, health (None: no healthcheck), image, image_id,
    config_hash, mounts [{type, source, target, name}], ports [{container_port,
    host_ip, host_port}], env, user, restart_count``. ``docker`` False means the
    engine does not answer; ``declared_hashes`` is empty when the file is
    missing or invalid (then ``config_error`` says why). ``image_id`` is the id
    the ``image`` argument names now (None: not asked, or no such image), so a
    moved tag shows against each container's ``image_id``. ``port_in_use``:
    something listens on the ``port`` argument (ours or not).
    """

    @staticmethod
    def default() -> dict[str, Any]:
        return {"docker": False, "file_exists": False, "config_error": None,
                "declared_hashes": {}, "image_id": None, "port_in_use": False,
                "containers": []}  # fmt: skip

    def command(
        self,
        project_dir: str,
        project_name: str,
        compose_file: str = "docker-compose.yml",
        image: str | None = None,
        port: int | None = None,
    ) -> str:
        path = q(f"{project_dir}/{compose_file}")
        image_id = (
            f"echo @@image_id; docker image inspect --format '{{{{.Id}}}}' {q(image)} 2>/dev/null; "
            if image
            else ""
        )
        compose = f"docker compose --project-directory {q(project_dir)} -f {path}"
        listening = (
            f"echo @@listening; ss -Hltn {q(f'( sport = :{port} )')} 2>/dev/null; " if port else ""
        )
        return (
            "command -v docker >/dev/null 2>&1 || exit 0; "
            f"{listening}"
            f"if test -f {path}; then echo @@file; "
            f"if out=$({compose} config --hash '*' 2>&1); then echo @@hashes; echo \"$out\"; "
            'else echo @@config_error; echo "$out" | head -n 3; fi; fi; '
            f"{image_id}{_containers_command(project_name)}"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found = sections(output)
        if not found:
            return self.default()
        hashes = {}
        for line in found.get("hashes", []):
            parts = line.split()
            if len(parts) == 2:
                hashes[parts[0]] = parts[1]
        error = " ".join(line.strip() for line in found.get("config_error", [])) or None
        return {
            "docker": any(line.strip() for line in found.get("docker", [])),
            "file_exists": "file" in found,
            "config_error": error,
            "declared_hashes": hashes,
            "port_in_use": any(line.strip() for line in found.get("listening", [])),
            "image_id": next((line.strip() for line in found.get("image_id", []) if line), None),
            "containers": _parse_containers(found.get("containers", []), "ComposeStack"),
        }


class ContainerMounts(FactBase[dict[str, Any] | None]):
    """What is mounted into a service's container, and what is wrong with it.

    None when no container of the service exists (or Docker is absent or
    down). Else ``{"container": name, "mounts": [{type, source, target, name,
    named_volume, is_persist_path}], "problems": [sentence, ...]}``; problems
    is empty when the persist path is a bind mount.
    """

    # pyinfra calls command() and process() on one instance: command() keeps
    # the arguments that process() needs.
    service = ""
    persist_path = ""

    def command(self, project_name: str, service: str, persist_path: str) -> str:
        self.service, self.persist_path = service, persist_path
        return f"command -v docker >/dev/null 2>&1 || exit 0; {_containers_command(project_name)}"

    def process(self, output: list[str]) -> dict[str, Any] | None:
        containers = _parse_containers(sections(output).get("containers", []), "ContainerMounts")
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
    return {"container": container["name"], "mounts": mounts, "problems": problems}
