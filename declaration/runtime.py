"""Each service's container as it must run, read from the rendered compose file.

Compose recreates a container only when its config-hash label differs, and
drift trusted that label: a ``docker update`` (restart policy, memory, CPUs),
or a container re-made by hand with the labels copied (no healthcheck, another
``CHROMA_PERSIST_PATH``), kept the label and so passed as converged. What
``docker inspect`` says of the running container is compared with this instead
(checks/runtime.py). Read from the very file the deploy writes, so the two
cannot disagree: one source for the declaration.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from declaration.versions import _SAFE_LOADER

_SIZE = re.compile(r"([0-9]+)([bkmg]?)")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _plain(value: Any) -> str:
    """A value as compose hands it to the engine: ``$$`` in the file is a literal ``$``."""
    return str(value).replace("$$", "$")


def memory_bytes(size: str | None) -> int:
    """Compose's ``mem_limit`` (``2g``, ``512m``, bytes) in bytes; 0 when unset."""
    if not size:
        return 0
    match = _SIZE.fullmatch(str(size).strip().lower())
    if not match:
        raise ValueError(f"not a size: {size!r}")
    return int(match[1]) * _UNITS[match[2]]


def nano_cpus(cpus: str | None) -> int:
    """Compose's ``cpus`` as the engine keeps it (NanoCpus); 0 when unset."""
    return round(float(cpus) * 1e9) if cpus else 0


@functools.lru_cache(maxsize=8)
def expected_runtime(compose_content: str, project_dir: str) -> dict[str, dict[str, Any]]:
    """``{service: {...}}``: what ``docker inspect`` must show of its container.

    Keys: ``environment`` (the declared variables; the image adds its own),
    ``healthcheck`` (the test), ``restart_policy``, ``memory``, ``nano_cpus``,
    ``limits`` (the other limits ``docker update`` sets: the file declares none),
    ``user``, ``cap_add``, ``network`` (the project's default network, or
    ``"service:X"`` for one in another's namespace), ``networks`` (the networks
    compose attaches it to, sorted), ``binds`` (sorted ``[source,
    target]``) and ``tmpfs`` (sorted targets).
    """
    document = yaml.load(compose_content, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    default_network = f"{_plain(document['name'])}_default"
    services: dict[str, dict[str, Any]] = {}
    for name, service in (document.get("services") or {}).items():
        healthcheck = (service.get("healthcheck") or {}).get("test")
        binds = sorted(
            [_host_path(project_dir, volume["source"]), _plain(volume["target"])]
            for volume in service.get("volumes") or []
            if isinstance(volume, dict) and volume.get("type") == "bind"
        )
        services[name] = {
            "environment": {
                str(key): _plain(value) for key, value in (service.get("environment") or {}).items()
            },
            "healthcheck": [_plain(part) for part in healthcheck] if healthcheck else None,
            "restart_policy": _plain(service.get("restart") or "no"),
            "memory": memory_bytes(service.get("mem_limit")),
            "nano_cpus": nano_cpus(service.get("cpus")),
            # None declared: a pids limit or a cpuset set by hand is drift (facts.compose).
            "limits": {},
            "user": _plain(service.get("user") or ""),
            "cap_add": [],
            "network": _plain(service.get("network_mode") or default_network),
            # The networks compose attaches it to (`networks:`, else the default one).
            "networks": sorted(
                f"{_plain(document['name'])}_{_plain(network)}"
                for network in (service.get("networks") or ["default"])
            ),
            "binds": binds,
            "tmpfs": sorted(_plain(entry).split(":", 1)[0] for entry in service.get("tmpfs") or []),
        }
    return services


def _host_path(project_dir: str, source: str) -> str:
    source = _plain(source)
    if source.startswith("./"):
        return f"{project_dir.rstrip('/')}/{source[2:]}"
    return source
