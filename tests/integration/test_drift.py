"""drift.py on real hosts: tamper for real, detect the right kind, repair with deploy.py.

One converged stack is shared by the cycle tests (module fixture) and each
test leaves it converged again: that is what the cycle proves.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, base_data, chroma_client, converge, free_port, run_drift, sh
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCHEMA = json.loads((ROOT / "schemas" / "drift.schema.json").read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    name = f"cddrift{uuid.uuid4().hex[:6]}"
    project_dir = tmp_path_factory.mktemp(name) / "stack"
    data = base_data(project_dir, name)
    converge(data)
    yield project_dir, name, data
    sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
    sh(f"docker volume rm {name}_chroma_vol {name}_legacy_chroma_data 2>/dev/null", check=False)


def drift_json(data: dict) -> tuple[int, dict]:
    result = run_drift(data, "--json")
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return result.returncode, document


def kinds(document: dict) -> set[str]:
    return {item["kind"] for host in document["hosts"].values() for item in host["items"]}


def compose_with(project_dir: Path, replace: dict[str, str]) -> str:
    """The declared compose file with some text replaced, for tampering."""
    text = (project_dir / "docker-compose.yml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def run_edited_then_restore(project_dir: Path, replace: dict[str, str], wait: bool = True) -> None:
    """Start the stack from an edited file, then put the declared file back."""
    path = project_dir / "docker-compose.yml"
    declared = path.read_text()
    path.write_text(compose_with(project_dir, replace))
    sh(f"cd '{project_dir}' && docker compose up -d {'--wait' if wait else ''}", check=not wait)
    path.write_text(declared)


def cycle(stack, tamper: Callable[[Path, str, dict], None], expected: set[str]) -> dict:
    """Converged -> tamper -> drift 2 with the kinds -> deploy repairs -> drift 0."""
    project_dir, name, data = stack
    code, before = drift_json(data)
    assert (code, kinds(before)) == (0, set()), before
    tamper(project_dir, name, data)
    code, found = drift_json(data)
    assert code == 2, found
    assert expected <= kinds(found), found
    converge(data)  # repairs, and a second run changes nothing
    code, after = drift_json(data)
    assert (code, kinds(after)) == (0, set()), after
    return found


def test_clean_host_exits_0_and_is_quiet(stack):
    result = run_drift(stack[2])
    assert result.returncode == 0
    assert result.stdout.strip() == "1 host(s): 1 ok, 0 drifted, 0 error(s)"


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("rm -r chroma_db", {"missing"}),
        ("rm logs/.gitkeep", {"missing"}),
        ("chown 4242 chroma_db", {"owner"}),
        ("chgrp 4343 logs", {"group"}),
        ("chmod 0755 chroma_data", {"mode"}),
        ("sed -i '/^!logs\\/.gitkeep$/d' .gitignore", {"gitignore"}),
        ("sed -i 's/retries: 20/retries: 2/' docker-compose.yml", {"compose_file"}),
        ("printf 'services: [oops\\n' > docker-compose.yml", {"compose_file", "compose_invalid"}),
    ],
    ids=[
        "dir missing",
        "gitkeep missing",
        "owner",
        "group",
        "mode",
        "gitignore line",
        "compose edited",
        "compose invalid",
    ],
)
def test_file_drift_is_detected_and_repaired(stack, tamper, expected):
    found = cycle(stack, lambda d, n, data: sh(f"cd '{d}' && {tamper}"), expected)
    if "compose_file" in expected and "compose_invalid" not in expected:
        diff = next(
            i["diff"] for i in found["hosts"]["@local"]["items"] if i["kind"] == "compose_file"
        )
        assert "-      retries: 20\n+      retries: 2\n" in diff


def test_mode_and_owner_items_show_old_and_new(stack):
    project_dir, _, data = stack
    sh(f"chmod 0770 '{project_dir}/chroma_data' && chown 4242 '{project_dir}/logs'")
    result = run_drift(data, "--no-color")
    assert result.returncode == 2
    assert f"mode   {project_dir}/chroma_data: 750 -> 770" in result.stdout
    assert f"owner  {project_dir}/logs: 0 -> 4242" in result.stdout
    converge(data)


def test_container_missing(stack):
    cycle(stack, lambda d, n, data: sh(f"cd '{d}' && docker compose down"), {"container_missing"})


def test_container_stopped(stack):
    cycle(stack, lambda d, n, data: sh(f"docker stop {n}-chroma-1"), {"container_state"})


def test_container_paused_fails_the_heartbeat(stack):
    found = cycle(stack, lambda d, n, data: sh(f"docker pause {n}-chroma-1"),
                  {"container_state", "heartbeat"})  # fmt: skip
    states = [
        i["actual"] for i in found["hosts"]["@local"]["items"] if i["kind"] == "container_state"
    ]
    assert states == ["paused"]


def test_container_restarting(stack):
    project_dir, _, data = stack
    assert drift_json(data)[0] == 0
    run_edited_then_restore(
        # After the environment's last line (the 1.x server's schema guard).
        project_dir, {'MIGRATION_MODE: "validate"': 'MIGRATION_MODE: "validate"\n'
                      '    entrypoint: ["/bin/bash", "-c", "exit 3"]'},
        wait=False,
    )  # fmt: skip
    # The crashing container is "running" for an instant between restarts and
    # "restarting" during Docker's growing back-off: look a few times.
    states: list[str] = []
    for _ in range(5):
        code, found = drift_json(data)
        assert code == 2 and "container_config" in kinds(found)
        items = found["hosts"]["@local"]["items"]
        states = [i["actual"] for i in items if i["kind"] == "container_state"]
        if states == ["restarting"]:
            break
    assert states == ["restarting"]
    converge(data)
    assert drift_json(data)[0] == 0


def test_container_unhealthy(stack):
    def failing_healthcheck(project_dir, name, data):
        run_edited_then_restore(
            project_dir,
            {"/dev/tcp/127.0.0.1/8000": "/dev/tcp/127.0.0.1/9", "interval: 3s": "interval: 1s",
             "retries: 20": "retries: 1", "start_period: 30s": "start_period: 0s"},
            wait=False,
        )  # fmt: skip
        sh(f"for _ in $(seq 60); do docker inspect -f '{{{{.State.Health.Status}}}}' "
           f"{name}-chroma-1 | grep -q unhealthy && exit 0; sleep 0.25; done; exit 1")  # fmt: skip

    cycle(stack, failing_healthcheck, {"container_health", "container_config"})


def test_container_created_from_another_config(stack):
    cycle(
        stack,
        lambda d, n, data: run_edited_then_restore(
            d, {'CHROMA_PERSIST_PATH: "/data"': 'CHROMA_PERSIST_PATH: "/data"\n      EXTRA: "1"'}
        ),
        {"container_config"},
    )


def test_running_image_differs_from_declared_tag(stack):
    sh("docker tag chromadb/chroma:1.5.9 chromadb/chroma:1.5.9-cdtampered")
    try:
        cycle(
            stack,
            lambda d, n, data: run_edited_then_restore(
                d, {'image: "chromadb/chroma:1.5.9"': 'image: "chromadb/chroma:1.5.9-cdtampered"'}
            ),
            {"image", "container_config"},
        )
    finally:
        sh("docker rmi chromadb/chroma:1.5.9-cdtampered", check=False)


@pytest.mark.serial  # moves the chromadb/chroma:1.5.9 tag every other deploy uses
def test_tag_moved_to_another_image(stack, tmp_path):
    original = sh("docker image inspect -f '{{.Id}}' chromadb/chroma:1.5.9").stdout.strip()
    (tmp_path / "Dockerfile").write_text(
        "FROM chromadb/chroma:1.5.9\nLABEL org.chroma-deploy.test=moved-tag\n"
    )
    try:
        found = cycle(
            stack,
            lambda d, n, data: sh(
                f"DOCKER_BUILDKIT=0 docker build -q -t chromadb/chroma:1.5.9 '{tmp_path}'"
            ),
            {"image_tag_moved"},
        )
        assert original[:19] in json.dumps(found)
    finally:
        sh(f"docker tag {original} chromadb/chroma:1.5.9")
        converge(stack[2])  # back on the original image, for the next tests


def test_named_volume_and_wrong_target_are_mount_drift(stack):
    project_dir, name, _data = stack
    # Started by hand, as the seed did: migrating its empty database (the stack's own 1.x
    # server validates its schema, and refuses an empty one).
    applying = {'MIGRATION_MODE: "validate"': 'MIGRATION_MODE: "apply"'}
    named = {
        '      - type: bind\n        source: "./chroma_data"\n        target: "/data"\n'
        "        bind:\n          create_host_path: false\n": "      - chroma_vol:/data\n",
        **applying,
    }
    # A top-level volumes: key, as the seed's BEFORE state had.
    # Not named like a legacy volume (chroma_legacy_volumes), which the deploy would
    # then want to migrate.
    text = compose_with(project_dir, named) + "\nvolumes:\n  chroma_vol: {}\n"

    def use_named_volume(d, n, data):
        path = d / "docker-compose.yml"
        declared = path.read_text()
        path.write_text(text)
        sh(f"cd '{d}' && docker compose up -d --wait")
        path.write_text(declared)

    found = cycle(stack, use_named_volume, {"mount", "container_config"})
    problems = [i["actual"] for i in found["hosts"]["@local"]["items"] if i["kind"] == "mount"]
    assert any(f"named volume '{name}_chroma_vol'" in p for p in problems)

    seed_target = {'target: "/data"': 'target: "/chroma/chroma"', **applying}
    found = cycle(stack, lambda d, n, data: run_edited_then_restore(d, seed_target), {"mount"})
    problems = [i["actual"] for i in found["hosts"]["@local"]["items"] if i["kind"] == "mount"]
    assert any("nothing is mounted at the persist path /data" in p for p in problems)


def test_port_published_on_another_address(stack):
    port = stack[2]["chroma_port"]
    found = cycle(
        stack,
        lambda d, n, data: run_edited_then_restore(
            d, {f'"127.0.0.1:{port}:8000"': f'"127.0.0.2:{port}:8000"'}
        ),
        {"port", "heartbeat"},
    )
    ports = [i for i in found["hosts"]["@local"]["items"] if i["kind"] == "port"]
    assert (ports[0]["expected"], ports[0]["actual"]) == (f"127.0.0.1:{port}", f"127.0.0.2:{port}")


def _tree_checksum(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        digest.update(
            f"{path}|{stat.st_mode}|{stat.st_uid}|{stat.st_gid}|{stat.st_mtime_ns}".encode()
        )
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.serial  # compares every container, image and volume on the engine before and after
def test_drift_check_is_read_only(stack):
    project_dir, name, data = stack
    sh(f"chmod 0755 '{project_dir}/chroma_db' && rm '{project_dir}/logs/.gitkeep' "
       f"&& docker stop {name}-chroma-1")  # fmt: skip
    containers = (
        "docker inspect --format '{{.Id}} {{.Image}} {{.State.Status}} {{.State.StartedAt}} "
        "{{.State.FinishedAt}} {{.RestartCount}}' $(docker ps -aq); docker images -q --no-trunc; "
        "docker volume ls -q"
    )
    before = (_tree_checksum(project_dir), sh(containers).stdout)
    assert run_drift(data).returncode == 2
    assert drift_json(data)[0] == 2
    after = (_tree_checksum(project_dir), sh(containers).stdout)
    assert before == after
    converge(data)


def test_unreachable_host_is_an_error_and_other_hosts_are_still_checked(stack, tmp_path):
    project_dir, _name, data = stack
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        'hosts = ["@local", ("unreachable", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n'
    )
    sh(f"chmod 0700 '{project_dir}/chroma_data'")
    result = run_drift(data, "--json", inventory=str(inventory))
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    assert result.returncode == 1  # the error wins over the drift on @local
    assert document["hosts"]["@local"]["status"] == "drift"
    assert document["hosts"]["unreachable"]["status"] == "error"
    assert "cannot connect" in document["hosts"]["unreachable"]["error"]
    converge(data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--data", "novalue"], "--data 'novalue' is not allowed: use KEY=VALUE"),
        (["--limit", "nosuchhost"], "--limit nosuchhost is not in the inventory"),
        (["--data", "chroma_port=0"], "chroma_port: 0 is not allowed"),
        (["--textfile", "/nonexistent/dir/x.prom"], "/nonexistent/dir is not a directory"),
        (["--inventory", "nosuch.py"], "inventory nosuch.py: no such file; give an inventory file"),
    ],
)
def test_bad_input_exits_1_with_one_clear_line(stack, args, message):
    inventory = args[1] if args[0] == "--inventory" else "@local"
    args = [] if args[0] == "--inventory" else args
    result = run_drift({k: v for k, v in stack[2].items()}, *args, inventory=inventory)
    assert result.returncode == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_legacy_volume_with_data_and_empty_data_dir(stack, tmp_path):
    """Data left in a named volume: detected, then migrated by the deploy, then clean."""
    _project_dir, name, data = stack
    fresh_dir = tmp_path / "fresh"
    fresh = dict(
        data, chroma_project_dir=str(fresh_dir), chroma_legacy_volumes="legacy_chroma_data"
    )
    fresh.update(chroma_compose_project=f"{name}x", chroma_port=free_port())
    converge(fresh)
    volume = f"{name}_legacy_chroma_data"
    fresh["chroma_adopt_volume"] = volume  # made by hand, no compose project: adopted
    collection = chroma_client(fresh["chroma_port"]).create_collection(
        "kept", embedding_function=None
    )
    collection.add(
        ids=[f"r{i}" for i in range(20)], embeddings=[[float(i), 1.0] for i in range(20)]
    )
    try:
        # Move the real data into a named volume, as a setup before bind mounts had it.
        sh(f"cd '{fresh_dir}' && docker compose stop && docker volume create {volume} && "
           f"docker run --rm -v {volume}:/v -v '{fresh_dir}/chroma_data':/src --entrypoint bash "
           "chromadb/chroma:1.5.9 -c 'cp -a /src/. /v/ && rm /v/.gitkeep' && "
           "find chroma_data -mindepth 1 ! -name .gitkeep -delete")  # fmt: skip
        code, found = drift_json(fresh)
        assert code == 2
        legacy = [i for i in found["hosts"]["@local"]["items"] if i["kind"] == "legacy_volume"]
        assert legacy and legacy[0]["resource"] == f"volume {volume}"

        converge(fresh)  # migrates and verifies; the second run changes nothing
        assert drift_json(fresh)[0] == 0
        kept = chroma_client(fresh["chroma_port"]).get_collection("kept", embedding_function=None)
        assert kept.count() == 20
    finally:
        sh(f"cd '{fresh_dir}' && docker compose down", check=False)
        sh(f"docker volume rm {volume}", check=False)  # the test's own throwaway volume


def read_textfile(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Family -> {sorted labels: value}, read by Prometheus' own Python text parser."""
    families = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.documentation, family
        families[family.name] = {
            tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
        }
    return families


def host_metrics(families: dict, host: str) -> dict[str, object]:
    """One host's view: its status, check_success, timing and non-zero drift item counts."""

    def one(name: str, **labels: str) -> float:
        return families[name][tuple(sorted({"host": host, **labels}.items()))]

    items = {
        dict(labels)["kind"]: count
        for labels, count in families["chroma_deploy_drift_items"].items()
        if dict(labels)["host"] == host
    }
    return {
        "status": {s: one("chroma_deploy_host_status", status=s) for s in ("ok", "drift", "error")},
        "success": one("chroma_deploy_check_success"),
        "checked_at": one("chroma_deploy_last_check_timestamp_seconds"),
        "duration": one("chroma_deploy_check_duration_seconds"),
        "kinds_reported": set(items),
        "drifted": {kind: count for kind, count in items.items() if count},
    }


def test_textfile_metrics_follow_a_tamper_and_its_repair(stack, tmp_path):
    """drift.py --textfile on a real host: clean -> ok=1; tampered -> drift=1 and the kinds."""
    project_dir, _name, data = stack
    target = tmp_path / "chroma_deploy.prom"

    started = time.time()
    result = run_drift(data, "--no-color", "--textfile", str(target))
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == "1 host(s): 1 ok, 0 drifted, 0 error(s)"
    clean = host_metrics(read_textfile(target), "@local")
    assert clean["status"] == {"ok": 1, "drift": 0, "error": 0}
    assert clean["success"] == 1
    assert clean["drifted"] == {} and "gitignore" in clean["kinds_reported"]
    assert started <= clean["checked_at"] <= time.time()
    assert 0 < clean["duration"] < time.time() - started

    sh(f"cd '{project_dir}' && chmod 0755 chroma_data && sed -i '/^!logs\\/.gitkeep$/d' .gitignore")
    code, document = drift_json(data)  # --json alone: the items to compare the counts with
    assert code == 2
    result = run_drift(data, "--json", "--textfile", str(target))
    assert result.returncode == 2
    assert json.loads(result.stdout)["hosts"] == document["hosts"], "--json is unchanged"
    drifted = host_metrics(read_textfile(target), "@local")
    assert drifted["status"] == {"ok": 0, "drift": 1, "error": 0}
    assert drifted["success"] == 1
    items = document["hosts"]["@local"]["items"]
    assert drifted["drifted"] == {
        kind: sum(i["kind"] == kind for i in items) for kind in {i["kind"] for i in items}
    }
    assert drifted["drifted"]["mode"] > 0 and drifted["drifted"]["gitignore"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chroma_deploy.prom"]

    converge(data)
    assert run_drift(data, "--textfile", str(target)).returncode == 0
    assert host_metrics(read_textfile(target), "@local")["status"]["ok"] == 1


def test_textfile_shows_an_unreachable_host_as_error(stack, tmp_path):
    _project_dir, _name, data = stack
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        'hosts = ["@local", ("unreachable", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n'
    )
    target = tmp_path / "chroma_deploy.prom"
    result = run_drift(data, "--textfile", str(target), inventory=str(inventory))
    assert result.returncode == 1
    families = read_textfile(target)
    unreachable = host_metrics(families, "unreachable")
    assert unreachable["status"] == {"ok": 0, "drift": 0, "error": 1}
    assert unreachable["success"] == 0
    assert unreachable["kinds_reported"] == set(), "an unchecked host's drift is unknown, not 0"
    local = host_metrics(families, "@local")
    assert (local["status"]["ok"], local["success"]) == (1, 1)


def test_textfile_that_cannot_be_written_is_an_error_and_the_old_file_stays(stack, tmp_path):
    """A full disk under the textfile dir: exit 1 with one line, the last good file whole."""
    data = stack[2]
    mount = tmp_path / "textfile_collector"
    mount.mkdir()
    sh(f"mount -t tmpfs -o size=64k tmpfs '{mount}'")
    try:
        target = mount / "chroma_deploy.prom"
        assert run_drift(data, "--textfile", str(target)).returncode == 0
        good = target.read_text()
        sh(f"cat /dev/zero > '{mount}/filler'", check=False)  # fills the tmpfs: ENOSPC
        inventory = tmp_path / "inventory.py"
        many = ", ".join(f'("down{i}", {{"ssh_hostname": "127.0.0.1", "ssh_port": 1}})'
                         for i in range(40))  # fmt: skip
        inventory.write_text(f"hosts = [{many}]\n")  # a file bigger than what is left
        result = run_drift(data, "--json", "--textfile", str(target), inventory=str(inventory))
        assert result.returncode == 1
        assert json.loads(result.stdout)["exit_code"] == 1
        assert f"drift.py: --textfile {target} was not written: " in result.stderr
        assert "No space left on device" in result.stderr
        assert "Traceback" not in result.output
        assert target.read_text() == good
        assert sorted(p.name for p in mount.iterdir()) == ["chroma_deploy.prom", "filler"]
    finally:
        sh(f"umount '{mount}'")


def test_example_inventory_unreachable_hosts_are_one_line_errors(stack, tmp_path):
    """The shipped inventory.py: db1/db2 do not resolve, db3's key file is missing. Each is
    an error of one line (table, JSON, textfile); @local (this stack) is still checked."""
    data = stack[2]
    target = tmp_path / "chroma_deploy.prom"
    inventory = str(ROOT / "inventory.py")
    result = run_drift(data, "--json", "--textfile", str(target), inventory=inventory)
    assert "Traceback" not in result.output, result.output
    assert result.returncode == 1, result.output
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    hosts = document["hosts"]
    assert hosts["@local"]["status"] == "ok", hosts["@local"]
    unreachable = ("db1.example.com", "db2.example.com", "db3.internal")
    assert {name: hosts[name]["status"] for name in unreachable} == dict.fromkeys(
        unreachable, "error"
    )
    assert "~/.ssh/id_ed25519_db3" in hosts["db3.internal"]["error"]
    assert all("\n" not in hosts[name]["error"] for name in unreachable)
    families = read_textfile(target)
    assert host_metrics(families, "db3.internal")["status"]["error"] == 1
    assert host_metrics(families, "@local")["status"]["ok"] == 1
    table = run_drift(data, inventory=inventory)
    assert table.returncode == 1
    assert "Traceback" not in table.output, table.output
    lines = table.stdout.splitlines()
    db3 = [line for line in lines if line.startswith("db3.internal:")]
    assert db3 == [f"db3.internal: error: {hosts['db3.internal']['error']}"], table.stdout
    assert lines[-1] == "4 host(s): 1 ok, 0 drifted, 3 error(s)", table.stdout
