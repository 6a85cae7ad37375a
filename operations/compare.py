"""Compare what a host has (facts) with what deploy.py declares, item by item.

Pure functions over fact values, so every kind of drift has a unit test on
recorded facts, and drift.py only gathers facts and prints. Expectations come
from :class:`declaration.resources.Declared`, the object deploy.py converges to.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from declaration.gitignore import problems as gitignore_problems
from declaration.resources import Declared
from facts.compose import mounts_report
from operations.stack import COMPOSE_FILE, config_differs, hardening_problems, image_moved


@dataclass(frozen=True)
class DriftItem:
    """One difference: what kind, on which resource, expected against actual."""

    kind: str
    resource: str
    expected: str
    actual: str
    diff: str | None = None

    def as_dict(self) -> dict[str, Any]:
        item = asdict(self)
        if item["diff"] is None:
            del item["diff"]
        return item


@dataclass(frozen=True)
class HostFacts:
    """The facts drift.py reads from one host."""

    data_dirs: dict[str, Any]
    project_files: dict[str, Any]
    stack: dict[str, Any]
    health: dict[str, Any]
    legacy_volumes: list[dict[str, Any]]
    token_file: dict[str, Any] | None = None
    token_digest: str | None = None
    layer_data: dict[str, list[str]] | None = None


def _account(uid: int, name: str | None) -> str:
    return f"{uid} ({name})" if name else str(uid)


def compare_paths(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The project dir and data dirs: existence, owner, group, mode, .gitkeep."""
    settings = declared.settings
    wanted = [(settings.project_dir, settings.dir_mode)]
    wanted += [(path, settings.data_dir_mode) for path in declared.data_dir_paths]
    items = []
    for path, mode in wanted:
        found = facts.data_dirs.get(path)
        if found is None:
            items.append(DriftItem("missing", path, "directory", "missing"))
            continue
        if found["type"] != "directory":
            items.append(DriftItem("missing", path, "directory", found["type"]))
            continue
        if found["uid"] != declared.uid:
            items.append(
                DriftItem("owner", path, str(declared.uid), _account(found["uid"], found["user"]))
            )
        if found["gid"] != declared.gid:
            items.append(
                DriftItem("group", path, str(declared.gid), _account(found["gid"], found["group"]))
            )
        if found["mode"] != mode:
            items.append(DriftItem("mode", path, mode, found["mode"]))
        if path != settings.project_dir and found["gitkeep"] is None:
            items.append(DriftItem("missing", f"{path}/.gitkeep", "file", "missing"))
    return items


def compare_files(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The .gitignore lines (present, in order) and the compose file, with a diff for edits."""
    items = []
    project_dir = declared.settings.project_dir
    for expected, actual in gitignore_problems(
        facts.project_files["gitignore"], declared.gitignore_lines
    ):
        items.append(DriftItem("gitignore", f"{project_dir}/.gitignore", expected, actual))

    path = f"{project_dir}/{COMPOSE_FILE}"
    compose = facts.project_files["compose"]
    if compose is None:
        items.append(DriftItem("compose_file", path, "rendered file", "missing"))
    elif compose["content"] != declared.compose_content:
        diff = "".join(
            difflib.unified_diff(
                declared.compose_content.splitlines(keepends=True),
                compose["content"].splitlines(keepends=True),
                fromfile=f"{path} (declared)",
                tofile=f"{path} (on host)",
            )
        )
        items.append(DriftItem("compose_file", path, "rendered file", "edited", diff))
    if facts.stack["config_error"]:
        items.append(DriftItem("compose_invalid", path, "valid", facts.stack["config_error"]))
    return items


def _container_items(
    container: dict[str, Any], declared_hash: str | None, would_recreate: list[str]
) -> list[DriftItem]:
    """State, health and config hash of one container of a declared service."""
    name = container["name"]
    items = []
    if container["state"] != "running":
        items.append(DriftItem("container_state", name, "running", container["state"]))
    elif container["health"] != "healthy":
        health = container["health"] or "no healthcheck"
        items.append(DriftItem("container_health", name, "healthy", health))
    if not declared_hash:
        return items
    if config_differs(container, declared_hash, would_recreate):
        items.append(
            DriftItem(
                "container_config", name, f"config-hash {declared_hash[:12]}",
                f"config-hash {(container['config_hash'] or 'none')[:12]}",
            )
        )  # fmt: skip
    return items


def _published(container: dict[str, Any]) -> list[str]:
    return sorted(f"{port['host_ip']}:{port['host_port']}" for port in container["ports"])


def compare_stack(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Every declared service's container; the chroma image and mounts; published ports."""
    stack = facts.stack
    settings = declared.settings
    if not stack["docker"]:
        return [DriftItem("container_missing", "docker", "engine answering", "no answer")]
    # The file's hashes are the declared ones only while the file is as rendered;
    # an edited file is its own drift item (compose_file).
    as_rendered = (facts.project_files["compose"] or {}).get("content") == declared.compose_content
    hashes = stack["declared_hashes"] if as_rendered else {}
    wanted_port = declared.published_port.rsplit(":", 1)[0].replace("[", "").replace("]", "")
    items = []
    for service in declared.services:
        containers = [c for c in stack["containers"] if c["service"] == service]
        if not containers:
            name = f"{settings.compose_project}-{service}-1"
            items.append(DriftItem("container_missing", name, "running", "missing"))
            continue
        for container in containers:
            name = container["name"]
            items += _container_items(
                container, hashes.get(service), stack.get("would_recreate", [])
            )
            items += [
                DriftItem("hardening", name, "as declared", problem)
                for problem in hardening_problems(container)
            ]
            published = _published(container)
            expected = [wanted_port] if service == declared.published_service else []
            if published != expected:
                items.append(
                    DriftItem("port", name, ", ".join(expected) or "not published",
                              ", ".join(published) or "not published")
                )  # fmt: skip
            if service != "chroma":
                continue
            if container["image"] != settings.image_ref:
                items.append(DriftItem("image", name, settings.image_ref, container["image"]))
            elif image_moved(stack, container):
                items.append(
                    DriftItem(
                        "image_tag_moved", name, f"{settings.image_ref} = {stack['image_id'][:19]}",
                        f"running {container['image_id'][:19]}",
                    )
                )  # fmt: skip
            for problem in mounts_report(container, declared.line.persist_path)["problems"]:
                items.append(DriftItem("mount", name, declared.line.persist_path, problem))
    return items


def compare_secret(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The token file: present, 0600, the stack owner's, holding the declared token.

    Only digests are compared and nothing of the token is reported.
    """
    path = declared.token_file
    if path is None:
        return []
    found = facts.token_file
    if found is None:
        return [DriftItem("missing", path, "file", "missing")]
    items = []
    if found["mode"] != "600":
        items.append(DriftItem("mode", path, "600", found["mode"]))
    if found["uid"] != declared.uid:
        items.append(DriftItem("owner", path, str(declared.uid), str(found["uid"])))
    if found["gid"] != declared.gid:
        items.append(DriftItem("group", path, str(declared.gid), str(found["gid"])))
    if facts.token_digest and found["sha256"] != facts.token_digest:
        items.append(DriftItem("secret", path, "the declared token", "another token"))
    return items


def compare_health(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    health = facts.health
    if health["status"] == 200 and health["heartbeat"]:
        return []
    actual = health["error"] or f"HTTP {health['status']}"
    url = declared.url + declared.line.heartbeat_path
    return [DriftItem("heartbeat", url, "HTTP 200 with a heartbeat", actual)]


def compare_layer_data(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Chroma data a container keeps in its own layer: lost when it is recreated."""
    return [
        DriftItem(
            "data_outside_mount", f"container {name}", f"data in {declared.data_dir_paths[0]}",
            f"{', '.join(paths)} in the container's own layer (lost when it is recreated)",
        )
        for name, paths in sorted((facts.layer_data or {}).items())
    ]  # fmt: skip


def compare_legacy(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """An empty bind-mounted data dir while this project's legacy volume holds Chroma data.

    Only volumes the deploy would migrate count: this compose project's, or the
    one chroma_adopt_volume names. Other projects' volumes are theirs.
    """
    data_dir = facts.data_dirs.get(declared.data_dir_paths[0])
    if data_dir is not None and data_dir["has_sqlite"]:
        return []
    settings = declared.settings
    return [
        DriftItem(
            "legacy_volume", f"volume {volume['name']}", f"data in {declared.data_dir_paths[0]}",
            f"chroma.sqlite3 in the named volume ({volume['size_bytes']} bytes), data dir empty",
        )
        for volume in facts.legacy_volumes
        if volume["has_chroma_data"]
        and (
            volume["compose_project"] == settings.compose_project
            or volume["name"] == settings.adopt_volume
        )
    ]  # fmt: skip


def compare(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Every difference between the host and its declared state; empty when none."""
    return [
        *compare_paths(declared, facts),
        *compare_files(declared, facts),
        *compare_secret(declared, facts),
        *compare_stack(declared, facts),
        *compare_health(declared, facts),
        *compare_legacy(declared, facts),
        *compare_layer_data(declared, facts),
    ]
