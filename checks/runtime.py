"""A container as it runs against its service as the compose file declares it.

Compose judges a container by its config-hash label, which ``docker update``
and a container re-made by hand with the labels copied both keep. So drift
(checks/compare.py) and the deploy (operations/stack.py, which then
recreates the container) compare what ``docker inspect`` says it runs with:
declaration/runtime.py reads the expectation from the rendered file.
"""

from __future__ import annotations

from typing import Any


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(part) for part in value) or "none"
    return str(value) if value not in (None, "") else "none"


def runtime_differences(
    container: dict[str, Any], expected: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """``(what, declared, running)`` for each way ``container`` runs unlike ``expected``.

    ``expected``: its service's entry of declaration.runtime.expected_runtime.
    Only what the file declares is compared: the image adds variables of its own.
    """
    found: list[tuple[str, str, str]] = []
    env = container.get("env") or {}
    for key, value in sorted(expected["environment"].items()):
        if env.get(key) != value:
            # Names only: a value may be a secret.
            running = "unset" if key not in env else "another value"
            found.append((f"environment {key}", "as declared", running))
    test = container.get("healthcheck")
    if expected["healthcheck"] and "healthcheck" in container and test != expected["healthcheck"]:
        found.append(
            ("healthcheck", "as declared", "disabled" if test == ["NONE"] else _show(test))
        )
    for key in ("restart_policy", "memory", "nano_cpus", "user"):
        if key in container and container[key] != expected[key]:
            found.append((key.replace("_", " "), _show(expected[key]), _show(container[key])))
    if "limits" in container:
        declared = expected.get("limits") or {}
        for key in sorted(set(declared) | set(container["limits"])):
            if container["limits"].get(key) != declared.get(key):
                running = container["limits"].get(key)
                found.append((key.replace("_", " "), _show(declared.get(key)), _show(running)))
    if container.get("cap_add"):
        found.append(("cap_add", "none", _show(container["cap_add"])))
    if "networks" in container:
        mode = container.get("network_mode", "")
        if expected["network"].startswith("service:"):
            if not mode.startswith("container:"):
                found.append(("network", expected["network"], mode or "none"))
        elif mode.startswith("container:") or sorted(container["networks"]) != expected["networks"]:
            found.append(("networks", _show(expected["networks"]), _show(container["networks"])))
    binds = sorted(
        [mount["source"], mount["target"]]
        for mount in container.get("mounts") or []
        if mount["type"] == "bind"
    )
    if binds != expected["binds"]:
        found.append(
            (
                "bind mounts",
                _show([f"{s}:{t}" for s, t in expected["binds"]]),
                _show([f"{s}:{t}" for s, t in binds]),
            )
        )
    return found
