"""Compare what a host has (facts) with what deploy.py declares, item by item.

Pure functions over fact values, so every kind of drift has a unit test on
recorded facts, and drift.py only gathers facts and prints. Expectations come
from :class:`declaration.resources.Declared`, the object deploy.py converges to.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from checks.empty_data import segments_unnamed
from checks.runtime import runtime_differences
from declaration.gitignore import problems as gitignore_problems
from declaration.resources import (
    ComposeFile,
    Declared,
    Directory,
    File,
    GitignoreBlock,
    Stack,
    has_declared_type,
)
from declaration.runtime import expected_runtime
from declaration.schedule import LOG_DIR, BackupSchedule, entry_state, project_lines
from declaration.versions import image_version, version_line
from facts.chroma import answers
from facts.compose import mounts_report
from facts.datahomes import (
    PERSIST_TARGETS,
    DataSchema,
    data_elsewhere,
    is_live,
    leftover_checks,
    opened_elsewhere,
    other_servers,
    spelled,
)
from facts.project import COMPOSE_READS


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
    # Volumes whose data was migrated already (their migrated-<volume>.json record).
    migrated_volumes: frozenset[str] = frozenset()
    layer_data: dict[str, list[str]] | None = None
    # Every container mount on the host (facts.datahomes.DataHomes).
    data_homes: dict[str, Any] | None = None
    # Sources of data_elsewhere whose database holds no collection (nothing to take over).
    empty_sources: frozenset[str] = frozenset()
    # Containers under the names compose would give a service that has none of ours
    # (facts.compose.NamedContainers; None: not read, as no service lacks its container).
    named_containers: dict[str, str | None] | None = None
    # The project's data-safety records (facts.project.SafetyState; None: not read).
    safety: dict[str, Any] | None = None
    # Cron and root's crontab (facts.cron.Cron; None: not read), and the entry declared
    # for this host, whose 'auto' minute is its inventory name's (declaration/schedule.py).
    cron: dict[str, Any] | None = None
    schedule: BackupSchedule | None = None
    # With TLS on: the proxy's certificate (facts.tls.ProxyCertificate; None: not read), the
    # names it must hold (internal-ca; None: not compared) and the time it is compared at.
    certificate: dict[str, Any] | None = None
    certificate_names: tuple[str, ...] | None = None
    now: float = 0.0
    # With the proxy: its clients file's names, roles and digests, and the digest of the
    # set the proxy loaded (facts.tokens.ProxyClients; None: not read). Never a token.
    proxy_clients: dict[str, Any] | None = None
    # The chroma container that is not running healthy: whether its schema guard refused
    # its last start (facts.schema_guard.SchemaRefusal; None: not read).
    schema_refusal: dict[str, Any] | None = None
    # The data dir's database (facts.datahomes.DataSchema; None: not read): whether it names
    # a collection, beside the segment dirs SafetyState lists.
    data_schema: dict[str, Any] | None = None
    # The dir the running chroma container has open at its persist path
    # (facts.datahomes.OpenedDataDir; None: not read).
    opened: dict[str, Any] | None = None


def _account(uid: int, name: str | None) -> str:
    return f"{uid} ({name})" if name else str(uid)


def _ownership_items(
    path: str, found: dict[str, Any], uid: int, gid: int, mode: str
) -> list[DriftItem]:
    """Owner, group and mode of a path as stat read it, against what is declared."""
    items = []
    if found["uid"] != uid:
        items.append(DriftItem("owner", path, str(uid), _account(found["uid"], found["user"])))
    if found["gid"] != gid:
        items.append(DriftItem("group", path, str(gid), _account(found["gid"], found["group"])))
    if found["mode"] != mode:
        items.append(DriftItem("mode", path, mode, found["mode"]))
    return items


def compare_paths(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Every declared dir and file: type, owner, group, mode, ``.gitkeep`` and content."""
    items = []
    for resource in declared.paths:
        path = resource.path
        wanted = "directory" if isinstance(resource, Directory) else "file"
        found = facts.data_dirs.get(path)
        if found is None:
            items.append(DriftItem("missing", path, wanted, "missing"))
            continue
        if not has_declared_type(resource, found["type"]):
            items.append(DriftItem("missing", path, wanted, found["type"]))
            continue
        items += _ownership_items(path, found, resource.uid, resource.gid, resource.mode)
        if isinstance(resource, Directory) and resource.gitkeep and found["gitkeep"] is None:
            actual = found["gitkeep_kind"] or "missing"
            items.append(DriftItem("missing", f"{path}/.gitkeep", "file", actual))
        items += _inside_items(resource, found)
        if isinstance(resource, File) and resource.sha256 and found["sha256"] != resource.sha256:
            # Only digests are compared, and nothing of a secret is reported.
            what = "token" if path == declared.token_file else path.rsplit("/", 1)[-1]
            items.append(DriftItem("secret", path, f"the declared {what}", f"another {what}"))
    return items


def _inside_items(resource: Directory | File, found: dict[str, Any]) -> list[DriftItem]:
    """An ACL on the path; in a data dir, what the container's user could not own."""
    items = []
    if found["acl"]:
        items.append(DriftItem("acl", resource.path, "none", "an ACL (ls -l shows +)"))
    foreign = found["foreign"]
    if isinstance(resource, Directory) and resource.recursive_owner and found.get("link"):
        # Refused by the deploy (preflight.require_files): nothing to chown, nothing to delete.
        items.append(
            DriftItem("missing", f"{resource.path}/{found['link']}", "a file", "symbolic link")
        )
    if isinstance(resource, Directory) and resource.recursive_owner and foreign:
        items.append(
            DriftItem(
                "owner", f"{resource.path}/{foreign['path']}", f"{resource.uid}:{resource.gid}, "
                "owner can read and write", f"{foreign['uid']}:{foreign['gid']} {foreign['mode']}",
            )
        )  # fmt: skip
    return items


def compare_gitignore(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Our ``.gitignore`` lines: each present, each ignore before its ``!…/.gitkeep``."""
    block = declared.gitignore
    if block is None:
        return []
    kind = _kind(facts, block.path)
    if kind is not None:
        return [DriftItem("missing", block.path, "file", kind)]
    return [
        DriftItem("gitignore", block.path, expected, actual)
        for expected, actual in gitignore_problems(
            facts.project_files["gitignore"], list(block.lines)
        )
    ]


def compare_compose_file(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The compose file as rendered (a diff for an edit), and valid for compose."""
    items = []
    wanted = declared.compose_file
    path = wanted.path
    compose = facts.project_files["compose"]
    found = facts.project_files["files"].get(path.rsplit("/", 1)[-1])
    kind = _kind(facts, path)
    if kind is not None:
        items.append(DriftItem("missing", path, "file", kind))
    elif compose is None:
        items.append(DriftItem("compose_file", path, "rendered file", "missing"))
    elif compose["content"] != wanted.content:
        diff = "".join(
            difflib.unified_diff(
                wanted.content.splitlines(keepends=True),
                compose["content"].splitlines(keepends=True),
                fromfile=f"{path} (declared)",
                tofile=f"{path} (on host)",
            )
        )
        items.append(DriftItem("compose_file", path, "rendered file", "edited", diff))
    if found and compose is not None and kind is None:
        items += _ownership_items(path, found, wanted.uid, wanted.gid, wanted.mode)
    if facts.stack["config_error"]:
        items.append(DriftItem("compose_invalid", path, "valid", facts.stack["config_error"]))
    return [*items, *compose_inputs(declared, facts.project_files)]


def _kind(facts: HostFacts, path: str) -> str | None:
    """What is at a project file's path when it is there but not a regular file."""
    found = facts.project_files["files"].get(path.rsplit("/", 1)[-1])
    if found is None or found["type"].replace(" empty", "") == "regular file":
        return None
    return str(found["type"])


def compose_inputs(declared: Declared, files: dict[str, Any]) -> list[DriftItem]:
    """Files compose reads beside ours (facts.project.COMPOSE_READS), and .env's COMPOSE_ keys.

    Ours pass ``-f``, but ``.env``'s COMPOSE_PROJECT_NAME wins over the file's
    ``name:`` even then (a second stack on the same data dir), and a user's plain
    ``docker compose`` there reads another file or merges an override into ours.
    """
    project = declared.settings.project_dir
    items = [
        DriftItem("compose_input", f"{project}/.env", "no COMPOSE_ variable", f"sets {name}")
        for name in files["env_compose"]
    ]
    items += [
        DriftItem("compose_input", f"{project}/{name}", "absent", found["type"])
        for name, found in sorted(files["files"].items())
        if name in COMPOSE_READS and name != ".env"
    ]
    return items


def _container_items(
    container: dict[str, Any], declared_hash: str | None, would_recreate: list[str]
) -> list[DriftItem]:
    """State, health and config hash of one container of a declared service."""
    name = container["name"]
    items = []
    if container["state"] != "running":
        items.append(DriftItem("container_state", name, "running", container["state"]))
    elif container["health"] not in ("healthy", None):
        # No healthcheck (an application image without one): running is all there is to
        # ask, as the deploy does (stack_problems). Chroma and the proxy always have one.
        items.append(DriftItem("container_health", name, "healthy", container["health"]))
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


def schema_refused(container: dict[str, Any], version: str) -> DriftItem:
    """The chroma container's last start, refused by its schema guard, and what to do."""
    image = container["image"]
    tag = image_version(image) or version
    return DriftItem(
        "schema_refused", container["name"], "starts on its data",
        f"{image} refused to start: the data's schema lacks migrations it would apply (it "
        f"validates its schema), so the data is as it was; run the deploy with "
        f"chroma_version={tag} so chroma-deploy backs up, rehearses and applies them",
    )  # fmt: skip


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
    runtime = expected_runtime(declared.compose_content, settings.project_dir)
    items = [
        DriftItem("foreign_container", name, "only containers the deploy made", what)
        for name, what in foreign_containers(stack, declared.services, settings.compose_path)
    ]
    if not stack["image_id"]:
        # The deploy pulls (or builds, or ships) it: drift must not say ok meanwhile.
        items.append(DriftItem("image_missing", settings.image_ref, "present", "no such image"))
    for service in declared.services:
        containers = [
            c for c in stack["containers"] if c["service"] == service and not c.get("oneoff")
        ]
        if not containers:
            name = f"{settings.compose_project}-{service}-1"
            made = (facts.named_containers or {}).get(name, "")
            if made != "":  # a container of that name, not of this project: up fails on it
                actual = f"of compose project {made}" if made else "made without compose"
                items.append(DriftItem("container_name_taken", name, "this stack's", actual))
            items.append(DriftItem("container_missing", name, "running", "missing"))
            continue
        items += [
            DriftItem("container_extra", name, f"one container of {service}", "another one")
            for name in extra_containers({"containers": containers}, [service])
        ]
        for container in containers:
            name = container["name"]
            found = _container_items(
                container, hashes.get(service), stack.get("would_recreate", [])
            )
            if service == "chroma" and (facts.schema_refusal or {}).get("refused"):
                # Why it is not running, instead of that it is not: one line that says what to do.
                kept = [i for i in found if i.kind not in ("container_state", "container_health")]
                found = [schema_refused(container, settings.version), *kept]
            items += found
            items += [
                DriftItem("container_runtime", f"{name} {what}", wanted, actual)
                for what, wanted, actual in runtime_differences(container, runtime[service])
            ]
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
            elif other := other_version(stack, container, settings.version):
                items.append(DriftItem("image_other_version", name, settings.image_ref, other))
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


def compare_health(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    health = facts.health
    if answers(health):
        return []
    actual = health["error"] or f"HTTP {health['status']}"
    url = declared.url + declared.line.heartbeat_path
    return [DriftItem("heartbeat", url, "HTTP 200 with a heartbeat", actual)]


def compare_backup_schedule(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The scheduled backup (operations/backup_schedule.py): this project's entry in root's
    crontab as declared, or none; and where one is declared, what it needs to run: a running
    cron, the host tools it calls, its log dir."""
    if facts.cron is None:
        return []
    project_dir, wanted, cron = declared.settings.project_dir, facts.schedule, facts.cron
    resource = f"root's crontab: backup of {project_dir}"
    state = entry_state(cron["lines"], project_dir, wanted)
    found = [line.strip() for line in project_lines(cron["lines"], project_dir)]
    actual = " | ".join(found) or "no entry"
    if wanted is None:
        if state == "absent":
            return []
        return [DriftItem("backup_schedule", resource, "no entry (none declared)", actual)]
    items = []
    if state != "ok":
        items.append(DriftItem("backup_schedule", resource, wanted.line, actual))
    if not cron["pids"]:
        running = "not running" if cron["cron"] else "not installed"
        items.append(DriftItem("backup_schedule", "cron", "running", running))
    if cron["missing_tools"]:
        missing = ", ".join(tool.rsplit("/", 1)[1] for tool in cron["missing_tools"])
        tools = cron["missing_tools"][0].rsplit("/", 1)[0]
        items.append(DriftItem("backup_schedule", tools, "host tools", f"missing {missing}"))
    if not cron["log_dir"]:
        items.append(DriftItem("backup_schedule", LOG_DIR, "dir", "missing"))
    return items


def compare_safety(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """What makes the deploy refuse (migrate.data_safety_guard) or rename records."""
    if facts.safety is None:
        return []
    settings = declared.settings
    state_dir = settings.path(".chroma-deploy")
    failed = [name for name in facts.safety["records"] if name.startswith("failed-")]
    items = [
        DriftItem("failed_verification", f"{state_dir}/{name}", "no failed verification",
                  "a verification that did not match: restore, or accept it")
        for name in failed
    ]  # fmt: skip
    unfinished = "restore-pending.json" in facts.safety["records"]
    empty = not facts.safety["data_has_sqlite"]
    if (unfinished or facts.safety["aside"]) and empty and not settings.allow_empty_data_dir:
        items.append(
            DriftItem("empty_data_dir", declared.data_dir_paths[0], "Chroma data",
                      f"none, while {', '.join(facts.safety['aside']) or 'a restore'} is pending")
        )  # fmt: skip
    segments = facts.safety["data_segment_dirs"]
    schema = facts.data_schema or DataSchema.default()
    found = None if settings.allow_empty_data_dir else segments_unnamed(facts.safety, schema)
    if found:
        items.append(
            DriftItem("database_lost", declared.data_dir_paths[0],
                      f"the database that names its {len(segments)} segment dir(s)"
                      if segments else "a readable chroma.sqlite3",
                      f"{found}{f', beside {segments[0]}, ...' if segments else ''}: "
                      "replaced, emptied, damaged or lost?")
        )  # fmt: skip
    return items


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
    data_dir_has_data = data_dir is not None and data_dir["has_sqlite"]
    settings = declared.settings
    # Both holding data: the deploy refuses to choose, and so must drift not say ok.
    state = (
        "and the data dir too: the deploy refuses to choose"
        if data_dir_has_data
        else ("data dir empty")
    )
    return [
        DriftItem(
            "legacy_volume", f"volume {volume['name']}", f"data in {declared.data_dir_paths[0]}",
            f"chroma.sqlite3 in the named volume ({volume['size_bytes']} bytes), {state}",
        )
        for volume in facts.legacy_volumes
        if volume["has_chroma_data"]
        and volume["name"] not in facts.migrated_volumes
        and (
            volume["compose_project"] == settings.compose_project
            or volume["name"] == settings.adopt_volume
        )
    ]  # fmt: skip


def compare_data_homes(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Another server on the data dir, or this project's data served from elsewhere.

    The same rules the deploy's pre-flight check and takeover apply
    (facts.datahomes), so drift says what the next deploy would do with that data.
    """
    if not facts.data_homes:
        return []
    settings = declared.settings
    path = declared.data_dir_paths[0]
    items = [
        DriftItem(
            "data_dir_shared", f"data dir {path}", "served by this project's Chroma only",
            f"also by container {m['name']} (compose project {m['project'] or 'none'}, "
            f"{m['state']}): the next deploy refuses until it is stopped",
        )
        for m in other_servers(facts.data_homes, settings.compose_project)
    ]  # fmt: skip
    items += [
        DriftItem(
            "data_dir_shared", f"data dir {path}", "served by this project's Chroma only",
            f"also by {m['name']}, a check a killed run left: the next deploy stops it",
        )
        for m in leftover_checks(facts.data_homes)
        if is_live(m)
    ]  # fmt: skip
    elsewhere = [
        m
        for m in data_elsewhere(
            facts.data_homes, settings.compose_project, declared.line.persist_path
        )
        if m["source"] not in facts.empty_sources
    ]
    here = (facts.data_homes.get("data_dir") or {}).get("has_sqlite")
    action = (
        "the next deploy copies it into the data dir and verifies it"
        if len(elsewhere) == 1 and not here
        else "the next deploy refuses to choose"
    )
    items += [
        DriftItem(
            "data_elsewhere", f"container {', '.join(m['containers'])}", f"data in {path}",
            f"this project's Chroma serves the data in {spelled(m)}: {action}",
        )
        for m in elsewhere
    ]  # fmt: skip
    return items


def served_without_data(stack: dict[str, Any], data_path: str) -> list[str]:
    """Running chroma containers that bind-mount ``data_path``: call it when it holds no data.

    A container keeps the dir it opened when it started: a data dir moved aside
    (or removed) while Chroma runs leaves it serving the moved one, and its next
    start serves what is at the path then, an empty database.
    """
    return [
        container["name"]
        for container in stack["containers"]
        if container["service"] == "chroma"
        and container["state"] == "running"
        # Still starting (a run killed during `up`): it may not have opened the data dir yet.
        and container.get("health") != "starting"
        and any(
            m["type"] == "bind"
            and m["source"] == data_path
            and m["target"] in persists_at(container)
            for m in container["mounts"]
        )
    ]


def persists_at(container: dict[str, Any]) -> set[str]:
    """Where a container's server writes: its environment's persist path, else its image
    tag's version line's, else either line's (a mount elsewhere is not where it writes,
    as in the seed's file on a 1.x image, which keeps the data in its own layer)."""
    env = container.get("env") or {}
    named = env.get("CHROMA_PERSIST_PATH") or env.get("PERSIST_DIRECTORY")
    if named:
        return {named}
    tag = image_version(str(container.get("image", "")))
    if tag:
        return {version_line(tag).persist_path}
    return set(PERSIST_TARGETS)


def compare_served_data(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The dir the running Chroma has open moved away and another put at its path, or the
    data dir gone or without chroma.sqlite3 while Chroma runs on it (moved aside?)."""
    path = declared.data_dir_paths[0]
    swapped = (
        opened_elsewhere(facts.data_homes, facts.opened, declared.chroma_container)
        if facts.data_homes and facts.opened
        else None
    )
    if swapped:
        return [
            DriftItem(
                "data_dir_moved", swapped["source"], f"the data {swapped['name']} serves",
                f"another dir than the one {swapped['name']} has open (moved away and replaced "
                "while it ran: its next start would serve this one)",
            )
        ]  # fmt: skip
    found = facts.data_dirs.get(path)
    if found is not None and found["has_sqlite"]:
        return []
    actual = "missing" if found is None else "no chroma.sqlite3"
    return [
        DriftItem(
            "data_dir_moved", path, f"the data {name} serves", f"{actual} while {name} runs "
            "(its next start would serve an empty database)",
        )
        for name in served_without_data(facts.stack, path)
    ]  # fmt: skip


def compare_running_stack(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """The stack's containers, image, mounts and ports, then Chroma's answer."""
    return [*compare_stack(declared, facts), *compare_health(declared, facts)]


Comparison = Callable[[Declared, HostFacts], list[DriftItem]]

# How each kind of declared resource is compared with the facts. compare() looks a
# resource's kind up here, so a new kind without a comparison fails every drift check
# (and tests/unit/test_resources.py) rather than being silently skipped.
COMPARISONS: dict[type, Comparison] = {
    Directory: compare_paths,
    File: compare_paths,
    GitignoreBlock: compare_gitignore,
    ComposeFile: compare_compose_file,
    Stack: compare_running_stack,
}


def compare_certificate(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """With TLS on: the proxy's certificate is readable, served, has the declared names, and
    is not within chroma_tls_renew_days of its end (docs/drift.md, ``tls_certificate``)."""
    if not declared.tls_dir or facts.certificate is None:
        return []
    path = f"{declared.tls_dir}/cert.pem"
    file, served = facts.certificate["file"], facts.certificate["served"]
    if file is None:
        return [DriftItem("tls_certificate", path, "a certificate", "none readable")]
    items = []
    days = declared.settings.tls_renew_days
    left = (file["not_after"] - facts.now) / 86400
    if left < days:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(file["not_after"]))
        items.append(
            DriftItem("tls_certificate", path, f"valid beyond {days} days", f"ends {expires}")
        )
    names = facts.certificate_names
    if names is not None and sorted(file["names"]) != sorted(names):
        items.append(DriftItem("tls_certificate", path, ", ".join(names), ", ".join(file["names"])))
    if served is not None and served != file["fingerprint"]:
        items.append(
            DriftItem("tls_certificate", "the proxy's port", f"serves {path}", "serves another")
        )
    return items


def compare_clients(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """With the proxy: the clients on the host and the set the proxy loaded are the declared
    ones (docs/drift.md, ``tokens``); names and roles only, never a token."""
    if declared.clients is None or facts.proxy_clients is None:
        return []
    found, wanted = facts.proxy_clients, declared.clients.declared
    path = declared.clients_file
    items = []
    if found["clients"] is None:
        return [DriftItem("tokens", path, ", ".join(wanted), "no clients file")]
    if found["clients"] != wanted:
        items.append(DriftItem("tokens", path, ", ".join(wanted), ", ".join(found["clients"])))
    elif found["file"] != _sha256(declared, path):
        # The same names and roles, another token: a rotation or a revocation not deployed.
        items.append(DriftItem("tokens", path, "the declared tokens", "another token"))
    # The file as declared, and the proxy loaded another (a reload that did not happen).
    if not items and found["loaded"] is not None and found["loaded"] != found["file"]:
        items.append(
            DriftItem("tokens", "the proxy", f"serves the clients in {path}", "serves another set")
        )
    return items


def _sha256(declared: Declared, path: str) -> str | None:
    for resource in declared.paths:
        if isinstance(resource, File) and resource.path == path:
            return resource.sha256
    return None


def compare(declared: Declared, facts: HostFacts) -> list[DriftItem]:
    """Every difference between the host and its declared state; empty when none.

    Each declared resource's comparison, once per kind in the order the deploy
    converges them; then the data-safety checks that are not resources (a legacy
    volume still holding data, data in a container's own layer).
    """
    checks: list[Comparison] = []
    for resource in declared.resources:
        check = COMPARISONS[type(resource)]
        if check not in checks:
            checks.append(check)
    items = [item for check in checks for item in check(declared, facts)]
    return [
        *items,
        *compare_legacy(declared, facts),
        *compare_layer_data(declared, facts),
        *compare_data_homes(declared, facts),
        *compare_safety(declared, facts),
        *compare_served_data(declared, facts),
        *compare_backup_schedule(declared, facts),
        *compare_certificate(declared, facts),
        *compare_clients(declared, facts),
    ]


# --- the running stack against the compose file, shared with operations.stack


def stack_problems(
    stack: dict, image: str | None = None, runtime: dict[str, dict] | None = None
) -> list[str]:
    """Why the running stack does not match the compose file; empty when it does.

    ``runtime``: declaration.runtime.expected_runtime of the file, to compare each
    container as it runs (None: its labels alone). One-off containers (``compose
    run``) are not the stack's: preflight refuses them before this is asked.
    """
    if not stack["docker"]:
        return ["Docker Engine does not answer"]
    if stack["config_error"]:
        return [f"the compose file is invalid: {stack['config_error']}"]
    problems = []
    by_service: dict[str, list[dict]] = {}
    for container in stack["containers"]:
        if not container.get("oneoff"):
            by_service.setdefault(container["service"], []).append(container)
    for service, declared_hash in sorted(stack["declared_hashes"].items()):
        containers = by_service.pop(service, [])
        if not containers:
            problems.append(f"{service}: no container")
            continue
        for container in containers:
            name = container["name"]
            if container["state"] != "running":
                problems.append(f"{name}: {container['state']}")
            elif container["health"] not in (None, "healthy"):
                problems.append(f"{name}: {container['health']}")
            if config_differs(container, declared_hash, stack.get("would_recreate", [])):
                problems.append(f"{name}: created from another config than the compose file")
            if image and container["image"] == image and image_moved(stack, container):
                problems.append(f"{name}: runs an image that {image} no longer names")
            problems += [f"{name}: {problem}" for problem in hardening_problems(container)]
            if runtime and service in runtime:
                problems += [
                    f"{name}: runs with {what} {actual}, the file declares {wanted}"
                    for what, wanted, actual in runtime_differences(container, runtime[service])
                ]
    for service in sorted(by_service):
        problems.append(f"{service}: container of a service the compose file no longer declares")
    problems += [
        f"{name}: more containers of its service than the file declares"
        for name in extra_containers(stack, list(stack["declared_hashes"]))
    ]
    return problems


def config_differs(container: dict, declared_hash: str, would_recreate: list[str]) -> bool:
    """The container was created from another config than the compose file declares.

    Compose hashes a service that joins another one's network namespace with that
    container's id, which ``config --hash`` cannot know: for such a container its
    own ``up --dry-run`` verdict decides.
    """
    if container.get("network_mode", "").startswith("container:"):
        return container["name"] in would_recreate
    return container["config_hash"] != declared_hash


def hardening_problems(container: dict) -> list[str]:
    """What a container of the stack lacks of the hardening the compose file declares."""
    problems = []
    if "ALL" not in container.get("cap_drop", []):
        problems.append("capabilities not dropped (cap_drop ALL)")
    if "no-new-privileges:true" not in container.get("security_opt", []):
        problems.append("no-new-privileges not set")
    if container["service"] == "auth-proxy" and not container.get("read_only"):
        problems.append("root filesystem not read-only")
    return problems


def foreign_containers(
    stack: dict, services: list[str], compose_path: str
) -> list[tuple[str, str]]:
    """Containers of the project the deploy did not make: ``(name, what it is)``.

    A one-off (``docker compose run``), and a container of a service the file
    does not declare that our compose file did not make (another compose file
    with the same project name, or ``docker run`` with compose's labels). ``up``
    would delete the second kind (``--remove-orphans``), and both made every
    deploy recreate the stack; the deploy refuses them instead (preflight).
    """
    found = []
    for container in stack["containers"]:
        service = container["service"] or "(none)"
        if container.get("oneoff"):
            found.append((container["name"], f"a one-off container of {service} (compose run)"))
        elif container["service"] not in services and container.get("config_files") != (
            compose_path
        ):
            made = container.get("config_files") or "no compose file"
            found.append(
                (container["name"], f"a container of undeclared service {service}, made by {made}")
            )
    return found


def extra_containers(stack: dict, services: list[str]) -> list[str]:
    """Containers of a declared service beyond the one the file declares, by name.

    ``docker compose up --scale chroma=2`` adds ``<project>-chroma-2``: a second
    server on the same data dir, to which the proxy sends every other request
    (behind it no port stops the second one). ``up`` removes them, as compose keeps
    the lowest numbers; their data is in the data dir, not in their layers. The
    deploy names them first (stack.stack_up).
    """
    by_service: dict[str, list[str]] = {}
    for container in stack["containers"]:
        if not container.get("oneoff") and container["service"] in services:
            by_service.setdefault(container["service"], []).append(container["name"])
    return sorted(name for names in by_service.values() for name in sorted(names, key=_number)[1:])


def _number(name: str) -> int:
    """Compose's container number, the name's last part (``-2``); 0 for a name without."""
    last = name.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else 0


def other_version(stack: dict, container: dict, version: str) -> str | None:
    """What the moved tag names now, when that is not the declared version; else None.

    Its version label, or else its entrypoint against the running container's
    (another server line). Recreating on it would skip the version change's
    backup, rehearsal and downgrade check (operations/upgrade.py).
    """
    if not image_moved(stack, container):
        return None
    label = stack.get("image_version")
    if label and label != version:
        return f"an image labelled version {label}"
    entrypoint = stack.get("image_entrypoint")
    running = container.get("entrypoint")
    if entrypoint is not None and running is not None and entrypoint != running:
        return f"an image of another server (entrypoint {' '.join(entrypoint) or 'none'})"
    return None


def image_moved(stack: dict, container: dict) -> bool:
    """The tag the container was created from now names another image."""
    return bool(stack["image_id"]) and container["image_id"] != stack["image_id"]


def exposed_containers(stack: dict, data_path: str, persist_path: str) -> list[str]:
    """Containers of the project that may keep Chroma data in their own layer.

    Every container except one that bind-mounts the data dir at the persist
    path, and the auth proxy (our nginx, which never holds data). Their layers
    are read (``docker diff``) only when this list is not empty.
    """
    return [
        container["name"]
        for container in stack["containers"]
        if container["service"] != "auth-proxy"
        and not any(
            mount["type"] == "bind"
            and mount["source"] == data_path
            and mount["target"] == persist_path
            for mount in container["mounts"]
        )
    ]
