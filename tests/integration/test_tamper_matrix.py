"""drift.py and deploy.py agree on every resource: the tamper matrix.

One converged stack (Chroma 1.5.9 behind the auth proxy, so the secrets dir and
token file are declared too), then one tamper at a time. After each tamper
``drift.py`` must exit 2 **and** ``pyinfra --dry`` must plan at least one
change; after the deploy, drift exits 0 and the dry run plans nothing. Any
disagreement (drift says ok while the deploy would change the host, or the
reverse) fails the row. A row the deploy refuses must be refused with one line,
and be clean once the user takes the way out it names. Every row counts the
records Chroma serves (the real client, through the published port) before the
tamper and after the repair: the same. A second stack on 0.6.3 covers the log
file only the 0.x server writes, and declares memory and CPU limits.

The rows run in order on one stack (each one's deploy repairs it for the next);
a row that finds the stack drifted (an earlier row failed) deploys first, so each
row stands on its own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import PYINFRA, ROOT, base_data, compose_down, run_command, run_deploy, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A repository of its own for the image, so that moving its tag moves no one else's.
IMAGE_REPO = f"cdtamper{uuid.uuid4().hex[:6]}/chroma"


@dataclass
class Stack:
    """The converged stack the rows tamper with, and how to run the tools on it."""

    project_dir: Path
    name: str
    data: dict[str, Any]
    env: dict[str, str]
    log: list[dict[str, Any]] = field(default_factory=list)
    clean: bool = False  # drift and the dry run both found nothing after the last row
    records: int = 0  # written by the real client when the stack was made

    def count_records(self) -> int:
        """Every record Chroma serves, by the real client, as an application reaches it."""
        import chromadb

        token = self.env["CHROMA_AUTH_TOKEN"] if self.data["chroma_auth_proxy"] == "true" else None
        client = chromadb.HttpClient(
            host="127.0.0.1", port=int(self.data["chroma_port"]),
            headers={"X-Chroma-Token": token} if token else None,
        )  # fmt: skip
        return sum(collection.count() for collection in client.list_collections())

    def path(self, relative: str) -> Path:
        return self.project_dir / relative

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        args = list(command)
        for key, value in self.data.items():
            args += ["--data", f"{key}={value}"]
        return run_command(args, ROOT, self.env, 600)

    def check(self) -> tuple[tuple[int, list[str]], tuple[int, list[str]]]:
        """drift.py's verdict and `pyinfra --dry`'s plan, read side by side (both only read).

        ``(drift exit, drift items), (dry-run exit, operations that would change)``.
        """
        with ThreadPoolExecutor(2) as pool:
            drifting = pool.submit(self._run, sys.executable, "drift.py", "@local", "--json")
            dry = self._run(PYINFRA, "--dry", "--json", "@local", "deploy.py")
            drift = drifting.result()
        assert drift.returncode in (0, 2), drift.stdout + drift.stderr
        items = json.loads(drift.stdout)["hosts"]["@local"]["items"]
        verdict = (drift.returncode, [f"{item['kind']} {item['resource']}" for item in items])
        if dry.returncode != 0:
            lines = [line for line in dry.stderr.splitlines() if line.strip()]
            return verdict, (dry.returncode, lines[-2:])
        plan = json.loads(dry.stdout)["plan"]
        return verdict, (0, [op["name"] for op in plan if op["hosts_with_change"]])

    def deploy(self) -> None:
        run = run_deploy(self.data, env=self.env)
        assert run.returncode == 0, run.output

    def container(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def compose(self, *args: str) -> str:
        """``docker compose`` on the stack's own file, as a user in its dir would run it."""
        return shlex.join(["docker", "compose", "-f", str(self.path("docker-compose.yml")), *args])


def _token() -> str:
    return "tamper-" + uuid.uuid4().hex


def _stack(tmp: Path, version: str, proxy: bool, **extra: str) -> Iterator[Stack]:
    name = f"cdtamper{uuid.uuid4().hex[:6]}"
    project_dir = tmp / name / "stack"
    sh(f"docker tag chromadb/chroma:{version} {IMAGE_REPO}:{version}")
    data = base_data(
        project_dir, name, chroma_version=version, chroma_image=IMAGE_REPO,
        chroma_image_source="pull", chroma_auth_proxy=str(proxy).lower(),
        chroma_upgrade_rehearsal="false", **extra,
    )  # fmt: skip
    stack = Stack(project_dir, name, data, {**os.environ, "CHROMA_AUTH_TOKEN": _token()})
    stack.deploy()
    _write_records(stack, 40)
    stack.records = stack.count_records()
    yield stack
    if (project_dir / "docker-compose.yml").exists():
        compose_down(project_dir)
    # What a row made beside the stack and a failed row may have left: one-offs, orphans,
    # a container under compose's name.
    sh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
       f"{name}-chroma-1 {name}-chroma-1-old 2>/dev/null", check=False)  # fmt: skip
    sh(f"docker volume rm -f {name}_chroma_data", check=False)


def _write_records(stack: Stack, count: int) -> None:
    import chromadb

    token = stack.env["CHROMA_AUTH_TOKEN"] if stack.data["chroma_auth_proxy"] == "true" else None
    client = chromadb.HttpClient(
        host="127.0.0.1", port=int(stack.data["chroma_port"]),
        headers={"X-Chroma-Token": token} if token else None,
    )  # fmt: skip
    collection = client.create_collection("tamper", embedding_function=None)
    collection.add(
        ids=[f"r{i}" for i in range(count)],
        embeddings=[[float(i), 1.0, 0.5] for i in range(count)],
        documents=[f"record {i}" for i in range(count)],
    )


def _report(stack: Stack) -> None:
    """With TAMPER_MATRIX_REPORT=<file>, the rows as they ran (for the closing note)."""
    target = os.environ.get("TAMPER_MATRIX_REPORT")
    if target:
        with open(target, "a") as report:
            report.writelines(json.dumps(entry) + "\n" for entry in stack.log)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for made in _stack(tmp_path_factory.mktemp("tamper"), "1.5.9", proxy=True):
        yield made
        _report(made)
    sh(f"docker image rm {IMAGE_REPO}:1.5.9 {IMAGE_REPO}:moved", check=False)


@pytest.fixture(scope="module")
def stack_0x(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Limits declared, so a `docker update` is told from the declaration, not from none.
    limits = {"chroma_mem_limit": "1g", "chroma_cpus": "1.5"}
    for made in _stack(tmp_path_factory.mktemp("tamper0x"), "0.6.3", proxy=False, **limits):
        yield made
        _report(made)
    sh(f"docker image rm {IMAGE_REPO}:0.6.3", check=False)


# --- the tampers: each changes one resource as a person or a tool on the host might


def _gitignore_without(stack: Stack, line: str) -> None:
    path = stack.path(".gitignore")
    path.write_text("".join(x for x in path.read_text().splitlines(True) if x.strip() != line))


def _gitignore_out_of_order(stack: Stack) -> None:
    path = stack.path(".gitignore")
    lines = path.read_text().splitlines()
    lines.remove("chroma_data/*")
    lines.insert(lines.index("!chroma_data/.gitkeep") + 1, "chroma_data/*")
    path.write_text("\n".join(lines) + "\n")


def _edit_compose_name(stack: Stack) -> None:
    path = stack.path("docker-compose.yml")
    text = path.read_text()
    assert f'\nname: "{stack.name}"\n' in text
    path.write_text(text.replace(f'\nname: "{stack.name}"\n', f'\nname: "{stack.name}x"\n', 1))


def _edit_compose_stop_grace(stack: Stack) -> None:
    """Docker's 10 s instead of the declared grace: a stop would kill Chroma mid-flush."""
    path = stack.path("docker-compose.yml")
    text = path.read_text()
    declared = re.search(r"\n    stop_grace_period: \"[0-9]+s\"\n", text)
    assert declared, "the compose file declares no stop_grace_period"
    path.write_text(text.replace(declared[0], '\n    stop_grace_period: "10s"\n', 1))


def _token_file(stack: Stack) -> Path:
    return stack.path("secrets/chroma-token.env")


def _new_token_on_the_control_machine(stack: Stack) -> None:
    stack.env["CHROMA_AUTH_TOKEN"] = _token()


def _move_the_image_tag(stack: Stack) -> None:
    """Another image under the declared tag, as a `docker pull` of a moved tag leaves it."""
    sh(
        f"printf 'FROM {IMAGE_REPO}:1.5.9\\nLABEL moved=yes\\n' | "
        f"docker build -q -t {IMAGE_REPO}:moved - >/dev/null"
    )
    sh(f"docker tag {IMAGE_REPO}:moved {IMAGE_REPO}:1.5.9")


def _legacy_volume_with_data(stack: Stack) -> None:
    """This project's named volume holding a Chroma database, beside a data dir with data."""
    volume = f"{stack.name}_chroma_data"
    sh(
        f"docker volume create --label com.docker.compose.project={stack.name} "
        f"--label com.docker.compose.volume=chroma_data {volume} >/dev/null"
    )
    sh(
        f"docker run --rm --entrypoint sh -v {volume}:/v {IMAGE_REPO}:1.5.9 "
        "-c 'echo x > /v/chroma.sqlite3'"
    )


def _unadopt_legacy_volume(stack: Stack) -> None:
    """The way out a user takes: say that volume is not this stack's data."""
    stack.data["chroma_legacy_volumes"] = "none_such_volume"


def _inspect(container: str) -> dict[str, Any]:
    return json.loads(sh(f"docker inspect {container}").stdout)[0]


def _remake_by_hand(stack: Stack, *changes: str, labels: bool = True) -> None:
    """The chroma container removed and made again with `docker run`, as a person might.

    Its image, user, command, hardening, restart policy, network, mounts and environment
    copied from the old one (and, with ``labels``, every label: compose's config hash
    too), then ``changes``.
    """
    name = stack.container("chroma")
    old = _inspect(name)
    args = ["docker", "run", "-d", "--name", name, "--user", old["Config"]["User"]]
    if labels:
        for key, value in old["Config"]["Labels"].items():
            args += ["--label", f"{key}={value}"]
    host_config = old["HostConfig"]
    for capability in host_config["CapDrop"] or []:
        args += ["--cap-drop", capability]
    for option in host_config["SecurityOpt"] or []:
        args += ["--security-opt", option]
    args += ["--restart", host_config["RestartPolicy"]["Name"]]
    mode = host_config["NetworkMode"]
    args += ["--network", mode]
    for mount in old["Mounts"]:
        args += ["-v", f"{mount['Source']}:{mount['Destination']}"]
    for variable in old["Config"]["Env"]:
        args += ["-e", variable]
    if not mode.startswith("container:"):
        for port, bindings in (old["HostConfig"]["PortBindings"] or {}).items():
            args += ["-p", f"{bindings[0]['HostIp']}:{bindings[0]['HostPort']}:{port}"]
    args += [*changes, old["Config"]["Image"], *(old["Config"]["Cmd"] or [])]
    sh(f"docker rm -f {name} >/dev/null && {shlex.join(args)} >/dev/null")


def _update_by_hand(stack: Stack) -> None:
    """Restart policy and limits changed on the running container: its labels stay."""
    limits = "--restart=no --memory 8g --memory-swap 16g --cpus 2"
    sh(f"docker update {limits} {stack.container('chroma')}")


def _restore_the_tag(stack: Stack) -> None:
    """What the refusal says: tag the image the stack runs again."""
    running = _inspect(stack.container("chroma"))["Image"]
    sh(f"docker tag {running} {stack.data['chroma_image']}:{stack.data['chroma_version']}")


def _sidecar(stack: Stack) -> None:
    """A container with the project's label and another service: `docker run` by hand."""
    labels = f"--label com.docker.compose.project={stack.name} "
    labels += "--label com.docker.compose.service=sidecar"
    image = f"{IMAGE_REPO}:1.5.9"
    sh(f"docker run -d --name {stack.name}-sidecar {labels} --entrypoint sleep {image} 600")


def _orphan_of_another_file(stack: Stack) -> None:
    """Another compose file, the same project name: its service is an orphan to ours."""
    other = stack.project_dir.parent / "other"
    other.mkdir(exist_ok=True)
    (other / "docker-compose.yml").write_text(
        f"name: {stack.name}\n"
        "services:\n"
        "  worker:\n"
        f"    image: {IMAGE_REPO}:1.5.9\n"
        "    entrypoint: [sleep, '600']\n"
        "    network_mode: none\n"
    )
    sh(f"cd '{other}' && docker compose up -d 2>&1")


def _one_off(stack: Stack) -> None:
    """`docker compose run -d` of the chroma service, left behind."""
    sh(stack.compose("run", "-d", "--no-deps", "--entrypoint", "sleep", "chroma", "600"))


def _remove(*containers: str) -> Callable[[Stack], Any]:
    """What the refusal says: remove the container it names (when it is done)."""
    return lambda s: sh(
        f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.oneoff=True "
        f"--filter label=com.docker.compose.project={s.name}) "
        + " ".join(name.format(name=s.name) for name in containers)
        + " 2>/dev/null; true"
    )


def _failed_verification(stack: Stack) -> None:
    """A verification that did not match, as migrate or restore records it."""
    state = stack.path(".chroma-deploy")
    state.mkdir(exist_ok=True)
    (state / "failed-migration-tamper.json").write_text('{"reason": "tamper"}\n')


def _accept_failed(stack: Stack) -> None:
    """One way out the refusal names: go on as it is (the records become accepted-*)."""
    stack.data["chroma_accept_failed_verification"] = "true"


@dataclass(frozen=True)
class Row:
    name: str
    tamper: Callable[[Stack], Any]
    # How the user resolves a row the deploy refuses (None: the deploy repairs it).
    resolve: Callable[[Stack], Any] | None = None
    # Rows with the same batch are tampered at once, checked by one drift and one dry
    # run and repaired by one deploy: each changes a path no other row of its batch
    # touches, each is repaired by a command of its own (operations/project.py yields
    # one per difference), none is refused, none restarts a container. ``finds``: the
    # drift items ("kind resource", {p} the project dir) that must name this row's tamper,
    # so that in a batch each row is seen on its own.
    batch: str = ""
    finds: tuple[str, ...] = ()


ROWS = (
    Row("project dir mode", lambda s: s.project_dir.chmod(0o755),
        batch="files", finds=("mode {p}",)),
    Row("data dir mode", lambda s: s.path("chroma_data").chmod(0o700),
        batch="files and the compose file", finds=("mode {p}/chroma_data",)),
    Row("data dir owner: unknown uid", lambda s: os.chown(s.path("chroma_data"), 4242, -1),
        batch="files", finds=("owner {p}/chroma_data",)),
    Row("fallback dir group", lambda s: os.chown(s.path("chroma_db"), -1, 4243),
        batch="files", finds=("group {p}/chroma_db",)),
    Row("logs dir removed", lambda s: sh(f"rm -r '{s.path('logs')}'"),
        batch="files", finds=("missing {p}/logs",)),
    Row(".gitkeep removed", lambda s: s.path("chroma_data/.gitkeep").unlink(),
        batch="files", finds=("missing {p}/chroma_data/.gitkeep",)),
    Row(".gitignore line removed", lambda s: _gitignore_without(s, "logs/*"),
        batch="files", finds=("gitignore {p}/.gitignore",)),
    Row(".gitignore block out of order", _gitignore_out_of_order,
        batch="files and the compose file", finds=("gitignore {p}/.gitignore",)),
    Row("compose name: edited", _edit_compose_name,
        batch="files and the compose file", finds=("compose_file {p}/docker-compose.yml",)),
    Row("compose stop grace: edited", _edit_compose_stop_grace,
        batch="files", finds=("compose_file {p}/docker-compose.yml",)),
    Row("compose file removed", lambda s: s.path("docker-compose.yml").unlink()),
    Row("secrets dir mode", lambda s: s.path("secrets").chmod(0o755),
        batch="files", finds=("mode {p}/secrets",)),
    Row("token file mode", lambda s: _token_file(s).chmod(0o644),
        batch="files", finds=("mode {p}/secrets/chroma-token.env",)),
    Row("token file owner", lambda s: os.chown(_token_file(s), 4242, -1),
        batch="files and the compose file", finds=("owner {p}/secrets/chroma-token.env",)),
    Row("token file content", lambda s: _token_file(s).write_text(f"CHROMA_AUTH_TOKEN={_token()}")),
    Row("token file removed", lambda s: _token_file(s).unlink()),
    Row("new token on the control machine", _new_token_on_the_control_machine),
    Row("proxy container stopped", lambda s: sh(f"docker stop -t 2 {s.container('auth-proxy')}")),
    Row("chroma container stopped", lambda s: sh(f"docker stop -t 2 {s.container('chroma')}")),
    Row("chroma container removed", lambda s: sh(f"docker rm -f {s.container('chroma')}")),
    Row("image tag moved", _move_the_image_tag),
    Row("legacy volume with data beside a data dir with data", _legacy_volume_with_data,
        resolve=_unadopt_legacy_volume),
    # The containers as they run, not as their labels say (issue #28).
    Row("chroma remade by hand: labels copied, no healthcheck, another persist path",
        lambda s: _remake_by_hand(s, "--no-healthcheck", "-e", "CHROMA_PERSIST_PATH=/elsewhere")),
    Row("docker update: restart no, 8g memory, 2 cpus", lambda s: _update_by_hand(s)),
    Row("proxy off its network", lambda s: sh(
        f"docker network disconnect {s.name}_default {s.container('auth-proxy')}")),
    Row("proxy joined the default bridge network", lambda s: sh(
        f"docker network connect bridge {s.container('auth-proxy')}")),
    Row("chroma remade by hand without labels", lambda s: _remake_by_hand(s, labels=False),
        resolve=_remove("{name}-chroma-1")),
    Row("image tag moved to another version", lambda s: sh(
        f"docker tag chromadb/chroma:0.6.3 {IMAGE_REPO}:1.5.9"), resolve=_restore_the_tag),
    Row("image untagged", lambda s: sh(f"docker rmi {IMAGE_REPO}:1.5.9"),
        resolve=_restore_the_tag),
    Row("orphan: the project label, another service", _sidecar,
        resolve=_remove("{name}-sidecar")),
    Row("orphan of another compose file with the project name", _orphan_of_another_file,
        resolve=_remove("{name}-worker-1")),
    Row("one-off compose run container", _one_off, resolve=_remove()),
    Row("failed verification record", _failed_verification, resolve=_accept_failed),
)  # fmt: skip


def _assert_clean(stack: Stack, when: str) -> None:
    (drift, items), (plan_rc, planned) = stack.check()
    assert (drift, plan_rc, planned) == (0, 0, []), f"{when}: drift {items}, plan {planned}"
    stack.clean = True


def _run_rows(stack: Stack, rows: tuple[Row, ...]) -> None:
    """One row, or a batch of rows (Row.batch) tampered at once: drift names each row's
    tamper, the dry run plans a change, one deploy repairs them all, and then drift and
    the dry run find nothing."""
    name = " + ".join(row.name for row in rows)
    assert len(rows) == 1 or all(row.batch and row.resolve is None for row in rows), name
    if not stack.clean:  # the first row, or an earlier row failed: repair, then start clean
        stack.deploy()
        _assert_clean(stack, f"before {name!r}")
    stack.clean = False
    before = stack.count_records()
    for row in rows:
        row.tamper(stack)
    (drift, items), (plan_rc, planned) = stack.check()
    entry = {"row": name, "drift_exit": drift, "drift_items": items,
             "plan_exit": plan_rc, "planned": planned, "records_before": before}  # fmt: skip
    stack.log.append(entry)
    assert drift == 2, f"{name}: drift exit {drift} ({items}) though the host was tampered"
    for row in rows:
        unnamed = [f for f in (x.format(p=stack.project_dir) for x in row.finds) if f not in items]
        assert not unnamed, f"{row.name}: drift did not name {unnamed} (it found {items})"
    resolve = rows[0].resolve
    if resolve is None:
        assert plan_rc == 0 and planned, f"{name}: drift {items}, but the dry run plans none"
        stack.deploy()
    else:
        # The deploy refuses this host: the dry run shows the refusing operation as a
        # change (it fails when run), and the real run fails with one line.
        assert plan_rc == 1 or planned, f"{name}: drift {items}, dry run: {planned}"
        refused = run_deploy(stack.data, env=stack.env)
        assert refused.returncode == 1, refused.output
        entry["refused"] = [line for line in refused.stderr.splitlines() if "@local" in line][-1:]
        resolve(stack)
        stack.deploy()
    _assert_clean(stack, f"after repairing {name!r}")
    entry["after"] = "clean"
    entry["records_after"] = stack.count_records()
    assert before == entry["records_after"] == stack.records, entry


def _run_row(stack: Stack, row: Row) -> None:
    _run_rows(stack, (row,))


def runs(rows: tuple[Row, ...]) -> list[tuple[Row, ...]]:
    """The rows as they run: each batch at its first row's place, the others alone."""
    batches: dict[str, list[Row]] = {}
    order: list[list[Row]] = []
    for row in rows:
        if row.batch and row.batch in batches:
            batches[row.batch].append(row)
            continue
        order.append([row])
        if row.batch:
            batches[row.batch] = order[-1]
    return [tuple(run) for run in order]


RUNS = runs(ROWS)


@pytest.mark.parametrize("rows", RUNS, ids=[" + ".join(row.name for row in run) for run in RUNS])
def test_drift_and_the_deploy_agree_after_each_tamper(stack: Stack, rows: tuple[Row, ...]) -> None:
    _run_rows(stack, rows)


ROWS_0X = (
    Row("0.x log file removed", lambda s: s.path("logs/chroma.log").unlink()),
    Row("0.x log file owner", lambda s: os.chown(s.path("logs/chroma.log"), 4242, -1)),
    Row("0.x chroma off its network", lambda s: sh(
        f"docker network disconnect {s.name}_default {s.container('chroma')}")),
    Row("0.x docker update against the declared limits", lambda s: _update_by_hand(s)),
)  # fmt: skip


@pytest.mark.parametrize("row", ROWS_0X, ids=[row.name for row in ROWS_0X])
def test_drift_and_the_deploy_agree_on_the_0x_stack(stack_0x: Stack, row: Row) -> None:
    _run_row(stack_0x, row)


def test_the_matrix_covers_at_least_twenty_kinds_of_resource() -> None:
    names = [row.name for row in (*ROWS, *ROWS_0X)]
    assert len(set(names)) == len(names) >= 20
    assert all(re.fullmatch(r"[\w .:,/-]+", name) for name in names)
