"""The compose file and the running stack.

pyinfra's stock ``docker.compose`` runs ``up`` on every deploy. Here ``up``
runs only when the file changed or the facts show the stack is not what the
file declares, so a converged host reports no change and is not restarted.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from checks.compare import (
    exposed_containers,
    extra_containers,
    hardening_problems,
    image_moved,
    stack_problems,
)
from checks.runtime import runtime_differences
from declaration.resources import ComposeFile
from declaration.targets import DataTarget, HealthCheck, StackTarget
from facts.chroma import ChromaHealth, answers
from facts.compose import (
    VERDICT_RECORD,
    ComposeStack,
    ContainerLayerData,
    PortHolder,
    verdict_key_command,
)
from facts.project import ProjectFiles
from operations.host_failure import fail_host
from operations.schema import up_or_refused
from plumbing import host_state
from plumbing.host_tools import stage_command, upload_tools
from plumbing.pyinfra_internals import is_executing
from plumbing.report import step

COMPOSE_FILE = "docker-compose.yml"

# Before a recreate for "no answer through the port": three more readings, 2 s and 5 s
# apart (about 20 s at most with curl's 5 s each), paid only when the first one failed.
RECHECK_PAUSES = (0, 2, 5)


def compose_command(project_dir: str, *args: str) -> str:
    """``docker compose`` on the project's file, from any working dir, as one quoted command."""
    compose_file = f"{project_dir}/{COMPOSE_FILE}"
    return shlex.join(["docker", "compose", "--project-directory", project_dir, "-f", compose_file,
                       *args])  # fmt: skip


def compose_up(project_dir: str, project_name: str, wait_timeout: int, *extra: str) -> str:
    """``up --detach --wait`` (fails unless every service is healthy), then record_verdict."""
    up = compose_command(
        project_dir, "up", "--detach", "--wait", "--wait-timeout", str(wait_timeout), *extra
    )
    return f"{up} && {{ {record_verdict(project_dir, project_name)}; }}"


def record_verdict(project_dir: str, project_name: str) -> str:
    """Write what compose says of the file and the containers it just made (facts.compose).

    Compose itself is the costliest part of reading a stack (``config --hash``
    and ``up --dry-run``: about 0.2 s of CPU on every run, on every host). Right
    after a successful ``up`` its verdict is known: these containers match
    this file. Recorded with the file's digest and the container ids, it
    answers every following read until one of them changes; any change, or no
    record, and ComposeStack asks compose again. Written to a name of its own
    (the shell's pid) and renamed, so a killed run leaves the old record or none;
    a record that cannot be written (a full disk) is said, and is no failure.
    """
    record = f"{project_dir}/{VERDICT_RECORD}"
    directory = shlex.quote(record.rsplit("/", 1)[0])
    hashes = compose_command(project_dir, "config", "--hash", "*")
    return (
        f"{verdict_key_command(project_dir, project_name)} && hashes=$({hashes}) && "
        f"mkdir -p {directory} && t={directory}/.compose-verdict.$$ && "
        """printf '%s\\n%s\\n' "$key" "$hashes" > "$t" && """
        f'mv "$t" {shlex.quote(record)} || {{ rm -f "$t"; echo {shlex.quote(_NOT_RECORDED)} >&2; }}'
    )


# Not a failure: the stack is up; without a record the next run asks compose itself.
_NOT_RECORDED = "chroma-deploy: could not record compose's verdict; the next run asks compose again"


@operation()
def compose_file(project_dir: str, file: ComposeFile):
    """Put the rendered compose file in place, only after compose accepts it.

    The new file is uploaded beside the live one and checked with
    ``docker compose config``; a file compose rejects is removed and the live
    file stays as it was.

    + project_dir: the project dir
    + file: declaration.resources.Declared.compose_file: the rendered file, its owner and mode
    """
    files = host_state.read(ProjectFiles, project_dir=project_dir)
    content, uid, gid, mode = file.content, file.uid, file.gid, file.mode
    wanted = hashlib.sha256(content.encode()).hexdigest()
    if files["compose"] and files["compose"]["sha256"] == wanted:
        found = files["files"][COMPOSE_FILE]
        if (found["uid"], found["gid"], found["mode"]) == (uid, gid, mode):
            host.noop(f"{project_dir}/{COMPOSE_FILE} is as rendered ({wanted[:12]})")
            return
        # As rendered, but another may write it (or may not read it): owner and mode only.
        live = f"{project_dir}/{COMPOSE_FILE}"
        owner = shlex.join(["chown", f"{uid}:{gid}", live])
        yield f"{owner} && {shlex.join(['chmod', mode, live])}"
        return

    live = f"{project_dir}/{COMPOSE_FILE}"
    candidate = f"{live}.chroma-deploy.new"
    check = ["docker", "compose", "--project-directory", project_dir, "-f", candidate, "config",
             "--quiet"]  # fmt: skip
    rejected = (
        f"the rendered compose file was rejected by docker compose; {live} was left as it was"
    )
    yield FileUploadCommand(StringIO(content), candidate)
    yield (
        f"{shlex.join(check)} || {{ {shlex.join(['rm', '-f', candidate])}; "
        f"{shlex.join(['echo', rejected])} >&2; exit 1; }}"
    )
    owner = shlex.join(["chown", f"{uid}:{gid}", candidate])
    yield f"{owner} && {shlex.join(['chmod', mode, candidate])}"
    yield shlex.join(["mv", "-f", candidate, live])


@operation()
def stack_up(
    stack: StackTarget,
    port: int | None = None,
    file_changed: bool = False,
    data: DataTarget | None = None,
    restart: list[str] | None = None,
    runtime: dict | None = None,
    health: HealthCheck | None = None,
    schema_guard: bool = False,
):
    """Bring the stack up (``up -d --wait``) only when needed.

    ``up`` removes and recreates containers, and with them their own layers.
    So before it, a container of the project that keeps Chroma data in its
    layer (the seed's compose file on a 1.x image) has that data copied into
    the data dir first (migrate.stage_command, verified after the start).

    + stack: the compose project, its chroma image (to notice a tag that moved),
      the seconds to wait for healthy, and the stop grace: a restart or recreate stops
      the old container with it (``--timeout``), not with the timeout it was created with
      (Docker's 10 s for one made before chroma_stop_grace_seconds)
    + port: the published host port, to refuse one another program holds
    + file_changed: the compose file is being replaced in this run
    + data: the declared data dir, to rescue data a container keeps outside it
    + restart: services whose running containers start again, because a file they
      bind-mount is created anew in this run (project.services_fed_by_missing_files)
    + runtime: declaration.runtime.expected_runtime of the file: a container that
      runs otherwise (a ``docker update``, one re-made by hand) is recreated
    + health: where Chroma answers (ChromaHealth's arguments): a stack that looks
      converged but does not answer there (a container taken off its network) is
      recreated, never "No change"
    + schema_guard: Chroma validates its schema (1.x): an ``up`` that fails because it refused
      the data says so in one line (operations/schema.py up_or_refused)
    """
    project_dir, project_name, image = stack.project_dir, stack.project_name, stack.image
    wait_timeout, grace = stack.wait_timeout, ("--timeout", str(stack.stop_grace))
    found = host_state.read(ComposeStack, **stack.read)
    problems = stack_problems(found, image, runtime)
    unreachable = False
    if health and not problems and not file_changed:
        answer = host_state.read(ChromaHealth, **health.read)
        for pause in RECHECK_PAUSES:
            if answers(answer):
                break
            # Asked again, afresh, before a recreate: a busy host's slow answer (curl
            # gives up after 5 s) is no cause to restart a healthy server.
            if is_executing(host) is not None:  # None: a recorded host, nothing to wait for
                time.sleep(pause)
            answer = host.get_fact(ChromaHealth, **health.read)
        if not answers(answer):
            unreachable = True
            reason = answer["error"] or f"HTTP {answer['status']}"
            problems.append(f"Chroma does not answer on {health.url}: {reason}")
    stale_mounts = sorted(
        container["name"]
        for container in found["containers"]
        if container["service"] in (restart or []) and container["state"] == "running"
    )
    if stale_mounts:
        # Stop and start, not recreate: the container and its layer stay, the mount is new.
        yield step(f"restarting {', '.join(stale_mounts)}: a file it bind-mounts was created anew")
        yield compose_command(project_dir, "restart", *grace, *sorted(set(restart or [])))
        if not problems and not file_changed:
            yield compose_up(project_dir, project_name, wait_timeout, *grace)  # waits for healthy
            return
    if not problems and not file_changed:
        services = ", ".join(sorted(found["declared_hashes"]))
        host.noop(f"stack {project_name} ({services}) is running, healthy and matches the file")
        return

    # A restarting container shows no ports but its proxy may hold them: while any
    # container of ours is active, the listener may be ours and compose decides.
    ours_active = any(
        container["state"] in ("running", "paused", "restarting")
        for container in found["containers"]
    )
    if port and not ours_active and host_state.read(PortHolder, port=port)["listener"]:
        yield fail_host(
            f"chroma_port: port {port} is in use by another program; stop it, "
            "or set chroma_port to a free port"
        )
        return
    if data:
        yield from _rescue_layer_data(found, data, stack.stop_grace)
    # Only the paused ones: `compose unpause` of the whole project fails on a container
    # that is not paused (one of the pair behind the proxy).
    paused = [container["name"] for container in found["containers"]
              if container["state"] == "paused"]  # fmt: skip
    if paused:
        yield shlex.join(["docker", "unpause", *paused])
    extras = extra_containers(found, list(found["declared_hashes"]))
    if extras:
        # Said before `up` removes them: the deploy did not make them.
        yield step(
            f"removing {', '.join(extras)}: more containers of a service than the file declares"
            " (docker compose --scale), on the same data dir"
        )
    extra = ["--remove-orphans", *grace]
    # Only the declared services' containers: an orphan of ours is removed, not a
    # reason to recreate Chroma (preflight refuses a container the deploy did not make).
    declared = [
        container
        for container in found["containers"]
        if container["service"] in found["declared_hashes"] and not container.get("oneoff")
    ]
    if unreachable or any(
        container["health"] == "unhealthy"
        # Only a container of the chroma image: the proxy's and the application's images
        # are other images, not a tag that moved (before, every up behind the proxy
        # recreated Chroma too).
        or (container["image"] == image and image_moved(found, container))
        or hardening_problems(container)
        # A container the new file changes is recreated by up alone (its config hash
        # differs): its differences are no reason to recreate the others (a new proxy
        # config recreated Chroma too).
        or (runtime and container["service"] in runtime
            and container["config_hash"] == found["declared_hashes"][container["service"]]
            and runtime_differences(container, runtime[container["service"]]))
        for container in declared
    ):  # fmt: skip
        extra.append("--force-recreate")
    yield step(f"starting {project_name}, waiting up to {wait_timeout} s for healthy")
    up = compose_up(project_dir, project_name, wait_timeout, *extra)
    if schema_guard and data:
        yield up_or_refused(up, f"{project_name}-chroma-1", image, data.path)
    else:
        yield up


@operation()
def published_answers(stack: StackTarget, health: HealthCheck):
    """After a run started the stack: Chroma answers through the published port.

    ``up --wait`` waits for the containers' own healthchecks, which run inside
    them; a firewall rule or a network in front of the published port leaves
    every container healthy and every client refused. So once stack_up has
    started, recreated or restarted the stack (declare this with
    ``_if=<stack_up>.did_change``: a no-op run asks nothing more), the heartbeat
    is read as clients and drift read it (ChromaHealth, the token from its 0600
    file), for up to the stack's wait timeout; no answer fails the host.

    Read by the fact on the control machine, not by a tool in files/: the same
    read as stack_up's and drift's (curl, else bash), no upload and no python3
    on the host, and a failure is the host's one refusal line. Only while
    pyinfra executes: a plan is made before ``up`` has run, nothing to ask yet.

    + stack: declaration.targets.StackTarget: its project dir (where ``docker compose
      logs`` tells more) and wait timeout (how long Chroma may take to answer)
    + health: declaration.targets.HealthCheck: where clients reach Chroma
    """
    url = health.url.rstrip("/") + health.heartbeat_path
    if is_executing(host) is False:  # None: a recorded host (tests/fixtures)
        host.noop(f"asked on {url} once the stack has started in this run")
        return
    deadline = time.monotonic() + stack.wait_timeout
    while True:
        answer = host.get_fact(ChromaHealth, **health.read)
        if answers(answer):
            host.noop(f"Chroma answers on {url}")
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(2)
    reason = " ".join((answer["error"] or f"HTTP {answer['status']}").split())
    yield fail_host(
        f"chroma_port: Chroma does not answer on {url} after this deploy started it ({reason}), "
        "while its containers report healthy: something between the port and Chroma refuses "
        "clients (a firewall rule, another network); fix it (docker compose logs in "
        f"{stack.project_dir} tells more), then deploy again"
    )


def _rescue_layer_data(stack: dict, data: DataTarget, stop_grace: int):
    """Copy data a container keeps in its own layer before ``up`` recreates it."""
    exposed = exposed_containers(stack, data.path, data.persist_path)
    if not exposed:
        return
    found = host_state.read(ContainerLayerData, containers=exposed)
    if not found:
        return
    if len(found) > 1 or any(len(paths) > 1 for paths in found.values()):
        listed = "; ".join(f"{name}: {', '.join(paths)}" for name, paths in found.items())
        yield fail_host(
            f"chroma_data_dir: several Chroma databases live in containers' own layers ({listed}) "
            "and chroma-deploy will not guess which to keep; copy the one you want into the data "
            "dir by hand (docker cp), then deploy again"
        )
        return
    container, paths = next(iter(found.items()))
    source = f"{container}:{paths[0].rsplit('/', 1)[0] or '/'}"
    yield from upload_tools(data.project_dir)
    yield stage_command(
        data.project_dir, "layer", container, source, data.path, data.uid, data.gid, data.mode,
        [container], compose_file=f"{data.project_dir}/{COMPOSE_FILE}", stop_grace=stop_grace,
    )  # fmt: skip
