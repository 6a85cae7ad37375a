"""Checks that need the host but change nothing, run before any operation.

pyinfra prepares every host before it executes anything, so an error raised
here stops the whole run with the host untouched.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from typing import Any

from pyinfra import host

from checks.compare import (
    DriftItem,
    compose_inputs,
    foreign_containers,
    other_version,
    stack_problems,
)
from declaration.clients import ProxyClients
from declaration.offsite import OffsiteTarget, offsite_target
from declaration.resources import Declared, TlsFiles, has_declared_type, stat_type
from declaration.settings import Settings, SettingsError, load_settings
from declaration.targets import stack_target
from declaration.versions import data_version_problem
from facts.accounts import Accounts, UsedIds, free_system_id
from facts.chroma import ChromaHealth
from facts.compose import ComposeStack, NamedContainers, PortHolder
from facts.cron import Cron
from facts.datahomes import (
    PERSIST_TARGETS,
    DataHomes,
    DataSchema,
    OpenedDataDir,
    data_elsewhere,
    is_live,
    opened_elsewhere,
    other_server_refusal,
    other_servers,
    spelled,
    users_of,
)
from facts.docker import DockerEngine, DockerImage
from facts.project import ProjectFiles, SafetyState
from facts.tokens import ProxyClients as FactProxyClients
from facts.volumes import LegacyVolumes, legacy_volume_names
from operations import backup_schedule, host_failure, project
from operations.offsite import RESTIC_READ
from plumbing import host_state, pyinfra_internals
from plumbing.host_state import Read
from plumbing.lock import lock_dir, take_project_lock
from plumbing.refusal import refusal
from plumbing.secrets import read_backup_secrets
from plumbing.tls import acme_for_host, files_for_host
from plumbing.tokens import clients_for_host as read_clients


@dataclass(frozen=True)
class Owner:
    """Numeric ids the dirs and the container use.

    ``create``: chroma_create_owner is on and the account does not exist yet,
    so this run creates it with these ids before the dirs.
    """

    uid: int
    gid: int
    create: bool = False


def settings_for_host(overrides: dict[str, Any] | None = None) -> Settings:
    """This host's validated settings, or a one-line error naming host and key.

    ``overrides``: data keys a deploy file gives its deploy (deploys/chroma.py),
    over the host's own.
    """
    if pyinfra_internals.asks_on_stdin() and not (sys.stdin and sys.stdin.isatty()):
        # Under cron pyinfra's prompt would end in an EOFError traceback and a
        # pyinfra-debug.log in the working dir, after the changes were shown.
        raise refusal(
            host.name,
            "stdin is not a terminal and -y was not given: pyinfra would stop at its prompt "
            "(Press enter to execute...); add -y for an unattended run",
        )
    data = {**host.data.dict(), **overrides} if overrides else host.data
    try:
        return load_settings(data)
    except SettingsError as error:
        raise refusal(host.name, str(error)) from None


def clients_for_host(settings: Settings) -> ProxyClients | None:
    """The proxy's clients and their tokens from the control machine (never printed)."""
    try:
        return read_clients(settings)
    except SettingsError as error:
        raise refusal(host.name, str(error)) from None


def token_for_host(settings: Settings) -> str | None:
    """The token the host's own checks and tools use, when the proxy is on (never printed):
    today's single token, or with chroma_tokens_dir the ``chroma-deploy`` client's."""
    clients = clients_for_host(settings)
    return clients.host_tools if clients else None


def offsite_for_host(settings: Settings, uid: int, gid: int) -> OffsiteTarget | None:
    """The backup repository's files for this host, its secrets read here (never printed)."""
    try:
        secrets = read_backup_secrets(settings)
    except SettingsError as error:
        raise refusal(host.name, str(error)) from None
    if secrets is None:
        return None
    return offsite_target(settings, uid, gid, host.name, lock_dir(settings.project_dir), secrets)


def tls_for_host(settings: Settings) -> TlsFiles | None:
    """The proxy's certificate and key from the control machine (never printed); None: off."""
    try:
        return files_for_host(settings, host.name)
    except SettingsError as error:
        raise refusal(host.name, str(error)) from None


def with_acme(declared: Declared) -> Declared:
    """chroma_tls=acme: the declaration with what the host needs to obtain its certificate."""
    if not declared.tls_dir:
        return declared
    settings = declared.settings
    try:
        target = acme_for_host(
            settings, host.name, declared.uid, declared.gid, declared.secrets_dir, declared.tls_dir
        )
    except SettingsError as error:
        raise refusal(host.name, str(error)) from None
    return declared if target is None else replace(declared, acme=target)


def hold_project_lock(settings: Settings, command: str, reads: list[Read] | None = None) -> bool:
    """Take this host's project lock for the whole run; else refuse the host in one line.

    One run at a time per project: taken before any operation, held while this run
    lives (plumbing/lock.py). ``command`` names the run for whoever waits for it;
    ``reads`` as take_project_lock's. False when another run holds it: the caller then
    declares nothing more that would change the host.
    """
    locked_out = take_project_lock(settings.project_dir, settings.lock_timeout, command, reads)
    if locked_out:
        host_failure.refused(name="Project lock", message=locked_out)
    return not locked_out


def resolve_owner(settings: Settings) -> Owner:
    """The uid and gid of chroma_owner / chroma_group on this host.

    A name must have an account, unless chroma_create_owner says to create
    it; a numeric id need not (its files simply show the number). Unset
    values mean the connecting user.
    """
    accounts = host_state.read(Accounts, owner=settings.owner, group=settings.group)
    owner, group = accounts["owner"], accounts["group"]
    if group is None:
        raise refusal(
            host.name,
            f"chroma_group: {settings.group!r} has no group on the host; use an existing "
            "group name or a numeric gid",
        )
    if owner is None and settings.create_owner:
        return _owner_to_create(settings, group["gid"])
    if owner is None:
        raise refusal(
            host.name,
            f"chroma_owner: {settings.owner!r} has no account on the host; use an existing "
            "account name or a numeric uid, or set chroma_create_owner=true to create it",
        )
    gid = group["gid"]
    if settings.group is None and owner["gid"] >= 0:
        gid = owner["gid"]  # unset group: the owner's primary group
    if gid < 0:
        raise refusal(
            host.name,
            f"chroma_owner: {settings.owner!r} has no account, so it has no primary group; "
            "set chroma_group too",
        )
    return Owner(uid=owner["uid"], gid=gid)


def _owner_to_create(settings: Settings, group_gid: int) -> Owner:
    """Ids for the system account this run creates: a free id for the account and,
    with chroma_group unset, for its own group (or the gid of a group of that name)."""
    uid = free_system_id(host_state.read(UsedIds))
    if uid is None:
        raise refusal(
            host.name,
            f"chroma_create_owner: no free system id from 100 to 999 (or no getent) for "
            f"{settings.owner!r}; create the account yourself, or set chroma_owner to one",
        )
    if settings.group is not None:
        return Owner(uid=uid, gid=group_gid, create=True)
    same_name = host_state.read(Accounts, group=settings.owner)["group"]
    return Owner(uid=uid, gid=same_name["gid"] if same_name else uid, create=True)


def require_docker(settings: Settings) -> None:
    """With installation turned off, Docker and Compose v2 must already be there."""
    if settings.install_docker:
        return
    engine = host_state.read(DockerEngine)
    missing = []
    if not engine["cli"]:
        missing.append("Docker Engine is not installed")
    elif not engine["server_running"]:
        missing.append("Docker Engine is not running")
    if not engine["compose_v2"]:
        missing.append("the Docker Compose v2 plugin is missing")
    if missing:
        raise refusal(
            host.name,
            f"chroma_install_docker: {' and '.join(missing)}, and chroma_install_docker=False; "
            "install and start them, or set chroma_install_docker=True",
        )


def require_free_port(settings: Settings) -> None:
    """``chroma_port`` is free, or held by this project's own running stack.

    Checked here, before the first operation, so a port another program holds
    leaves the host untouched: no project dir, data dirs or compose file.
    (stack_up checks again, for a program that takes the port during the run.)
    """
    holder = host_state.read(PortHolder, port=settings.port)
    if holder["listener"] is None or _our_stack_may_hold(settings):
        return
    program = f" ({holder['program']})" if holder["program"] else ""
    raise refusal(
        host.name,
        f"chroma_port: port {settings.port} is in use by another program{program}; stop it, "
        "or set chroma_port to a free port",
    )


def _our_stack_may_hold(settings: Settings) -> bool:
    """A container of this project publishes the port, or is restarting (then it
    shows no ports, but its proxy may hold them): the listener may be our own stack."""
    stack = host_state.read(ComposeStack, **stack_read(settings))
    return any(
        container["state"] == "restarting"
        or any(port["host_port"] == str(settings.port) for port in container["ports"])
        for container in stack["containers"]
    )


def stack_read(settings: Settings) -> dict[str, Any]:
    """The arguments every step reads ComposeStack with, so one reading serves them all."""
    return stack_target(settings).read


def health_read(where: Declared) -> dict[str, Any]:
    """ChromaHealth's arguments, as the deploy (stack_up) and drift both read it.

    Through the published port, as clients reach it; without the container (the
    running image is ComposeStack's to say).
    """
    return where.health_check.read


def names_without_container(stack: dict[str, Any], where: Declared) -> list[str]:
    """The names compose would give the declared services that have no container of ours."""
    have = {c["service"] for c in stack["containers"] if not c.get("oneoff")}
    project = where.settings.compose_project
    return [f"{project}-{service}-1" for service in where.services if service not in have]


def require_own_stack(declared: Declared) -> None:
    """Every container of the project is one the deploy made, and its tag its version.

    Refused, before anything changes, with what to do: a container the deploy did
    not make (``up --remove-orphans`` would delete it, or it made every run
    recreate the stack), a container under the name compose needs (``up`` fails
    on it), and a tag that now names another version's image (recreating on it
    would skip the version change's backup, rehearsal and downgrade check).
    """
    settings = declared.settings
    stack = host_state.read(ComposeStack, **stack_read(settings))
    key = "chroma_compose_project"
    foreign = foreign_containers(stack, declared.services, settings.compose_path)
    if foreign:
        name, what = foreign[0]
        others = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise refusal(
            host.name,
            f"{key}: {name} is {what}{others}, which chroma-deploy did not make and will not "
            f"remove; remove it when it is done (docker rm -f {name}), then run again",
        )
    missing = names_without_container(stack, declared)
    taken = host_state.read(NamedContainers, names=missing) if missing else {}
    if taken:
        name, owner = next(iter(taken.items()))
        made = f"by compose project {owner}" if owner else "without compose (no labels)"
        raise refusal(
            host.name,
            f"{key}: a container named {name} exists, made {made}, and compose needs that "
            f"name for this stack; rename it (docker rename {name} {name}-old) or remove it, "
            "then run again",
        )
    for container in stack["containers"]:
        other = container["service"] == "chroma" and container["image"] == settings.image_ref
        found = other_version(stack, container, settings.version) if other else None
        if found:
            raise refusal(
                host.name,
                f"chroma_version: {settings.image_ref} now names {found}, not the Chroma "
                f"{settings.version} that {container['name']} runs; tag that image again "
                f"(docker tag {container['image_id']} {settings.image_ref}), then run again",
            )


def require_dirs(declared: Declared) -> None:
    """Each declared dir is a dir and each declared file a file, or absent (to be created).

    Something else at a declared path (a file where a dir should be, a link) is
    refused here, before the first operation, so nothing is written next to it;
    project.paths checks again when it runs. Data there is never moved or deleted.
    """
    keys = {declared.settings.project_dir: "chroma_project_dir"}
    settings = declared.settings
    names = {
        "chroma_data_dir": settings.data_dir,
        "chroma_fallback_dir": settings.fallback_dir,
        "chroma_logs_dir": settings.logs_dir,
        "chroma_secrets_dir": settings.secrets_dir,
    }
    keys.update({settings.path(name): key for key, name in names.items()})
    found = project.path_states(declared.paths)
    for resource in declared.paths:
        state = found[resource.path]
        wanted = stat_type(resource)
        if state is not None and not has_declared_type(resource, state["type"]):
            key = keys.get(resource.path, keys.get(resource.path.rsplit("/", 1)[0], ""))
            raise refusal(
                host.name,
                f"{key}: {resource.path} is a {state['type']}, not a {wanted}; move it aside "
                "(chroma-deploy never deletes anything there), then run again",
            )


def require_no_other_server(declared: Declared) -> dict[str, Any]:
    """No live container but this project's Chroma mounts the declared data dir (two
    servers corrupt its vectors), read from every container on the host; the reading.

    The deploy's check (require_one_home), and restore.py's before it stops anything: a
    restore switches the data in and starts a server on it.
    """
    settings = declared.settings
    path = settings.path(settings.data_dir)
    homes: dict[str, Any] = host_state.read(DataHomes, data_dir=path)
    others = other_servers(homes, settings.compose_project)
    if others:
        raise refusal(host.name, other_server_refusal(others[0], path, settings.project_dir))
    return homes


def opened_read(where: Declared) -> dict[str, Any]:
    """OpenedDataDir's arguments, as every run reads it: compose's chroma container, at the
    paths any version persists to (the running one may be of another line than declared)."""
    targets = sorted(PERSIST_TARGETS | {where.line.persist_path})
    return {"container": where.chroma_container, "targets": targets}


def require_opened_dir_in_place(declared: Declared, command: str) -> None:
    """The running Chroma has open the dir at its mount's source path, not one moved away
    under it with another put in its place (facts.datahomes.opened_elsewhere): every run
    that stops and starts it (deploy, backup, maintain, restore, prove) would serve the
    other one."""
    settings = declared.settings
    mount = opened_elsewhere(
        host_state.read(DataHomes, data_dir=settings.path(settings.data_dir)),
        host_state.read(OpenedDataDir, **opened_read(declared)),
        declared.chroma_container,
    )
    if mount:
        source = mount["source"]
        raise refusal(
            host.name,
            f"chroma_data_dir: {source} is not the dir the running {mount['name']} has open "
            "(it was moved away while Chroma ran and another put in its place): Chroma serves "
            f"the one it opened, and its next start would serve what is at {source} now; "
            f"nothing was changed: put the dir it serves back at {source}, or, to serve what "
            f"is there now, stop the stack (docker compose stop, in {settings.project_dir}) "
            f"and run {command} again",
        )


def require_stack_as_declared(declared: Declared, command: str) -> None:
    """The stack runs as the inventory declares it, on its data, before a run that takes it
    down and brings it up from the compose file (prove.py): else that ``up`` is not a
    restart of what serves but a new start (of another build of the tag, a file edited by
    hand or named for the next version, a container stopped) or a start on other data (a
    data dir moved away under the server), which nobody backed up or rehearsed. deploy.py
    is the run that converges such a stack, with a backup and a rehearsal first.
    """
    require_opened_dir_in_place(declared, command)
    settings = declared.settings
    files = host_state.read(ProjectFiles, project_dir=settings.project_dir)
    found = host_state.read(ComposeStack, **stack_read(settings))
    state = host_state.read(
        SafetyState, project_dir=settings.project_dir, data_dir=settings.data_dir
    )
    problems = []
    if (files["compose"] or {}).get("content") != declared.compose_content:
        problems.append("docker-compose.yml is not the file the inventory declares")
    if not state["data_has_sqlite"]:
        problems.append(f"{settings.path(settings.data_dir)} holds no chroma.sqlite3")
    problems += stack_problems(found, settings.image_ref)
    if problems:
        more = f"; {len(problems) - 1} more" if len(problems) > 1 else ""
        raise refusal(
            host.name,
            f"docker-compose.yml: the stack does not run as the inventory declares "
            f"({problems[0]}{more}), so {command}'s `down` and `up` would start it anew, not "
            "restart it; nothing was changed: run deploy.py first (it backs up and rehearses "
            f"before it changes a server), then {command}",
        )


def require_one_home(declared: Declared) -> None:
    """One server per data dir, and this project's data found where it really is.

    Read from every container on the host, not from the configuration: a live
    container of anything but this project's Chroma that mounts the declared data
    dir is refused (two servers corrupt its vectors); data this project's Chroma
    serves from another place (a project dir, data dir or volume that a changed
    key or a taken-over stack left) is taken over by migrate.take_over_data, or
    refused here when it cannot be, before anything changes.
    """
    settings = declared.settings
    path = settings.path(settings.data_dir)
    homes = require_no_other_server(declared)
    records = host_state.read(
        SafetyState, project_dir=settings.project_dir, data_dir=settings.data_dir
    )["records"]
    elsewhere = with_collections(
        copied_already(
            data_elsewhere(homes, settings.compose_project, declared.line.persist_path), records
        )
    )
    here = homes["data_dir"] or {}
    pending = any(name in records for name in ("migration-pending.json", "rescue-pending.json"))
    if not elsewhere or (here.get("has_sqlite") and pending):
        return  # nothing to take over, or copied already and waiting for its verification
    listed = "; ".join(f"{spelled(m)} (in {', '.join(m['containers'])})" for m in elsewhere)
    # A legacy volume that migrate.copy_legacy_volume would copy first: a stale one
    # must not win over the data this project's Chroma serves now.
    legacy = host_state.read(
        LegacyVolumes, names=legacy_volume_names(settings.legacy_volumes, settings.adopt_volume)
    )
    sources = {m["source"] for m in elsewhere}
    stale = [
        volume["name"]
        for volume in legacy
        if volume["has_chroma_data"]
        and volume["mountpoint"] not in sources
        and f"migrated-{volume['name']}.json" not in records  # copied and verified already
        and (
            volume["compose_project"] == settings.compose_project
            or volume["name"] == settings.adopt_volume
        )
    ]
    if stale:
        listed += "; " + "; ".join(
            f"the named volume {name} (chroma_legacy_volumes: drop it there to leave it alone)"
            for name in stale
        )
    if len(elsewhere) > 1 or here.get("has_sqlite") or stale:
        also = " and in the data dir " + path if here.get("has_sqlite") else ""
        raise refusal(
            host.name,
            f"chroma_data_dir: Chroma data of compose project {settings.compose_project} is in "
            f"{listed}{also}, and chroma-deploy will not merge or choose; point "
            "chroma_project_dir/chroma_data_dir at the one to keep, or move the others aside "
            "(never delete them), then deploy again",
        )
    source = elsewhere[0]
    foreign = [
        m for m in users_of(homes, source)
        if m["project"] != settings.compose_project and is_live(m)
    ]  # fmt: skip
    if foreign:
        raise refusal(
            host.name,
            f"chroma_data_dir: {spelled(source)}, which this project's Chroma serves, is "
            f"also used by {foreign[0]['name']} (compose project {foreign[0]['project'] or 'none'}"
            f", {foreign[0]['state']}); chroma-deploy never stops another project's containers: "
            f"stop it, then deploy again to copy the data into {path}",
        )
    # The copy replaces the empty data dir in one rename: refused here, before the stack
    # is stopped, where that rename cannot be made.
    if here.get("mount_point") or here.get("entries"):
        what = "is a mount point" if here.get("mount_point") else (
            f"holds {here['entries']} file(s) that are not Chroma data")  # fmt: skip
        raise refusal(
            host.name,
            f"chroma_data_dir: {path} {what}, and taking over {spelled(source)} replaces an "
            "empty data dir with the copy in one rename; move them aside, or stop the stack "
            f"and copy the data yourself (cp -a {source['source']}/. {path}/), then deploy again",
        )
    schema = host_state.read(DataSchema, data_dir=source["source"])
    problem = data_version_problem(settings.version, schema["levels"] or {}, spelled(source))
    if schema["levels"] and problem:
        raise refusal(host.name, problem)


def copied_already(sources: list[dict[str, Any]], records: list[str]) -> list[dict[str, Any]]:
    """The sources no done record says were copied into the data dir and verified: a run
    killed after the verification, before `up` replaced the old containers, leaves them
    mounting the source they were copied from."""

    def done(source: dict[str, Any]) -> bool:
        if source["type"] == "volume":
            return f"migrated-{source['volume']}.json" in records
        stem = "rescued-bind-" + re.sub(r"[^A-Za-z0-9_.-]", "_", source["source"]) + "-"
        return any(name.startswith(stem) for name in records)

    return [source for source in sources if not done(source)]


def with_collections(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sources whose database holds a collection (or cannot be told): a server started
    on a wrong mount (a named volume put at the persist path by hand) leaves an empty
    database there, which is nothing to take over. One read per source, only where this
    project's Chroma serves data from outside the data dir."""
    return [
        source
        for source in sources
        if host_state.read(DataSchema, data_dir=source["source"])["collections"] != 0
    ]


def require_files(declared: Declared) -> None:
    """What the deploy would write into, or what compose would read beside its file.

    Refused here, before the first operation, and never removed: a dir where a
    ``.gitkeep``, the ``.gitignore`` or the compose file belongs (the deploy
    would write a file inside it, on every run); an ACL it cannot remove (no
    setfacl); and the files a ``docker compose`` in the project dir reads besides
    ours (facts.project.COMPOSE_READS): ``.env``'s COMPOSE_PROJECT_NAME wins over
    the file's ``name:`` even for our own ``-f`` (a second stack on the same data
    dir), an override file or a ``compose.yaml`` changes what a user's plain
    ``docker compose up`` there starts (another port, an empty named volume).
    """
    settings = declared.settings
    found = project.path_states(declared.paths)
    names = {
        settings.data_dir: "chroma_data_dir",
        settings.fallback_dir: "chroma_fallback_dir",
        settings.logs_dir: "chroma_logs_dir",
        settings.secrets_dir: "chroma_secrets_dir",
    }
    keys = {settings.path(name): key for name, key in names.items()}
    move_aside = "move it aside (chroma-deploy never deletes anything there), then run again"
    for resource in declared.paths:
        state = found[resource.path]
        key = keys.get(
            resource.path, keys.get(resource.path.rsplit("/", 1)[0], "chroma_project_dir")
        )
        if state is not None and state["gitkeep_kind"]:
            raise refusal(
                host.name,
                f"{key}: {resource.path}/.gitkeep is a {state['gitkeep_kind']}, not a regular "
                f"file; {move_aside}",
            )
        if state is not None and state["acl"] and not state["setfacl"]:
            raise refusal(host.name, f"{key}: {project.acl_refusal(resource.path)}")
        if state is not None and state.get("link"):
            raise refusal(host.name, f"{key}: {project.link_refusal(resource.path, state['link'])}")
    files = host_state.read(ProjectFiles, project_dir=settings.project_dir)
    wanted = {settings.compose_path: "chroma_project_dir"}
    if declared.gitignore:
        wanted[declared.gitignore.path] = "chroma_manage_gitignore"
    for path, key in wanted.items():
        state = files["files"].get(path.rsplit("/", 1)[-1])
        if state is not None and state["type"].replace(" empty", "") != "regular file":
            raise refusal(
                host.name, f"{key}: {path} is a {state['type']}, not a regular file; {move_aside}"
            )
    for item in compose_inputs(declared, files):
        raise refusal(host.name, f"chroma_project_dir: {_compose_input_refusal(item, settings)}")


def _compose_input_refusal(item: DriftItem, settings: Settings) -> str:
    ours = settings.compose_path
    if item.resource.endswith("/.env"):
        name = item.actual.removeprefix("sets ")
        return (
            f"{item.resource} sets {name}, which docker compose obeys over {ours} (even with "
            "-f: COMPOSE_PROJECT_NAME starts a second stack on the same data dir); remove that "
            "line (chroma-deploy never edits your .env), then run again"
        )
    return (
        f"{item.resource} is read by a plain docker compose in {settings.project_dir} with or "
        f"instead of {ours} (another port, an empty volume); move it out of that dir "
        "(chroma-deploy never deletes it), then run again"
    )


def state_reads(where: Declared) -> list[Read]:
    """What a deploy and a drift check both read of the host, with the same arguments.

    The accounts, the declared paths, the stack (with its image), the legacy volumes,
    the project's files, the data dir's database, and cron with root's crontab (the
    scheduled backup): deploy_reads and drift.py's gather add their own to these, so what
    both compare is one list, read alike. ``where``: the declaration for any owner (which
    paths does not depend on it).
    """
    settings = where.settings
    return [
        (Accounts, {"owner": settings.owner, "group": settings.group}),
        project.path_states_read(where.paths),
        (ComposeStack, stack_read(settings)),
        (
            LegacyVolumes,
            {"names": legacy_volume_names(settings.legacy_volumes, settings.adopt_volume)},
        ),
        (ProjectFiles, {"project_dir": settings.project_dir}),
        (DataHomes, {"data_dir": settings.path(settings.data_dir)}),
        (SafetyState, {"project_dir": settings.project_dir, "data_dir": settings.data_dir}),
        # Which database the data dir holds: what wrote it, and whether it names a collection.
        (DataSchema, {"data_dir": settings.path(settings.data_dir)}),
        # Which dir the running server has open: the one at the data dir's path, or another.
        (OpenedDataDir, opened_read(where)),
        (ChromaHealth, health_read(where)),
        (Cron, backup_schedule.cron_read()),
        *([(FactProxyClients, {"proxy_dir": where.proxy_dir})] if where.proxy_dir else []),
    ]


def deploy_reads(
    settings: Settings, token: str | None, clients: ProxyClients | None = None
) -> list[Read]:
    """The facts a deploy of ``settings`` reads, with the arguments its steps read them with.

    Read in one command once the project lock is held (plumbing/lock.py,
    plumbing/host_state.py). A fact left out here, or asked for with other
    arguments, is read on its own: slower, never wrong. bench/bench_converge.py
    counts the commands of a no-op run.
    """
    offsite = offsite_for_host(settings, 0, 0)
    reads: list[Read] = [
        *state_reads(Declared(settings, 0, 0, token, offsite, clients=clients)),
        (PortHolder, {"port": settings.port}),
        (DockerEngine, {}),
    ]
    if settings.auth_proxy:
        reads.append((DockerImage, {"ref": settings.proxy_image}))
    if offsite:
        reads.append(RESTIC_READ)
    return reads
