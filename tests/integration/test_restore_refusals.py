"""A refused restore changes nothing, and backup.py does not start a blocked host's stack.

One 1.5.9 stack with records and one real backup of it serve every test: each
refusal must leave that stack exactly as it was (same container, never stopped,
same records), so the tests do not disturb each other. The archives they are
given are made from that real backup, as a user would have them: one with the
manifest of a 0.6.3 server and damaged bytes, one of another project whose data
dir is named ``vectors``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import click
import httpx
import pytest
from conftest import (
    DeployRun,
    base_data,
    converge,
    read_records,
    run_deploy,
    sh,
    wait_for_heartbeat,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run(deploy_file: str, data: dict) -> DeployRun:
    return run_deploy(data, deploy_file=deploy_file, timeout=600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """A converged 1.5.9 stack with records and one backup of it; torn down afterwards."""
    name = f"cdtest{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp(name)
    project_dir = base / "stack"
    data = base_data(project_dir, name, chroma_backup_dir=str(base / "backups"))
    try:
        converge(data)
        write_records(data["chroma_port"], ("manuals", "tickets"), per_collection=40)
        backed_up = run("backup.py", data)
        assert backed_up.returncode == 0, backed_up.output
        (archive,) = (base / "backups").glob(f"{name}-*.tar.gz")
        yield {"dir": project_dir, "name": name, "data": data, "archive": archive, "base": base}
    finally:
        sh(f"cd '{project_dir}' && docker compose down --timeout 5", check=False)
        sh(
            f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={name}) "
            "2>/dev/null || true",
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def chroma_container(name: str) -> str:
    """Id, start time and state of the stack's Chroma container, read by docker inspect."""
    found = sh(
        f"docker ps -aq --filter label=com.docker.compose.project={name} "
        "--filter label=com.docker.compose.service=chroma"
    ).stdout.split()
    assert len(found) == 1, found
    return sh(
        f"docker inspect --format '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.State.Status}}}}' "
        f"{found[0]}"
    ).stdout.strip()


def image_of(name: str) -> str:
    """The image the stack's Chroma container runs, as docker inspect says."""
    container = chroma_container(name).split()[0]
    return sh(f"docker inspect --format '{{{{.Config.Image}}}}' {container}").stdout.strip()


def sibling(archive: Path, suffix: str) -> Path:
    return archive.with_name(archive.name.removesuffix(".tar.gz") + suffix)


def write_checksum(archive: Path) -> None:
    """The .sha256 backup.py writes: ``<hex>  <file name>``, read from the archive's dir."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    sibling(archive, ".sha256").write_text(f"{digest}  {archive.name}\n")


def refusal_lines(result: DeployRun, key: str) -> list[str]:
    """The refusal's lines; pyinfra's echo of it and a command's raw output are not said."""
    said = click.unstyle(result.output)
    for noise in ("No hosts remaining", "Error: executed", "sha256sum", "FAILED", "WARNING"):
        assert noise not in said, said
    return [line.strip() for line in said.splitlines() if f"@local: {key}:" in line]


def untouched(stack: dict, compose: bytes, container: str, records: dict) -> None:
    """The refused run left the stack as it was: file, container (never stopped), records."""
    project_dir = stack["dir"]
    assert (project_dir / "docker-compose.yml").read_bytes() == compose
    assert chroma_container(stack["name"]) == container
    assert container.endswith(" running")
    assert read_records(stack["data"]["chroma_port"]) == records
    assert not list(project_dir.glob(".chroma_data.restore-staging*"))
    assert not list(project_dir.glob("chroma_data.before-restore-*"))
    assert not (project_dir / ".chroma-deploy" / "restore-pending.json").exists()
    assert not list(project_dir.glob("docker-compose.yml.*"))


def test_a_damaged_archive_of_another_version_changes_nothing_not_even_the_version(stack, tmp_path):
    """It rewrote docker-compose.yml to 0.6.3 first; the next backup.py started 0.6.3 on 1.5.9
    data, and 1.5.9 could not read any collection after that."""
    data, port = stack["data"], stack["data"]["chroma_port"]
    archive = tmp_path / f"{stack['name']}-20200101T000000Z-before-1.5.9.tar.gz"
    shutil.copy(stack["archive"], archive)
    manifest = json.loads(sibling(stack["archive"], ".json").read_text())
    sibling(archive, ".json").write_text(json.dumps(dict(manifest, version="0.6.3")))
    write_checksum(archive)
    raw = archive.read_bytes()  # damaged after its checksum was taken
    archive.write_bytes(raw[: len(raw) // 2] + b"damaged!" + raw[len(raw) // 2 + 8 :])
    records = read_records(port)
    compose = (stack["dir"] / "docker-compose.yml").read_bytes()
    container = chroma_container(stack["name"])
    version = httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=10).json()

    refused = run("restore.py", dict(data, chroma_restore_archive=str(archive)))
    assert refused.returncode == 1, refused.output
    untouched(stack, compose, container, records)
    lines = refusal_lines(refused, "chroma_restore_archive")
    assert len(lines) == 1, refused.output
    assert f"{archive} does not match its .sha256" in lines[0]
    print(lines[0])

    backed_up = run("backup.py", data)  # what started 0.6.3 on this data before
    assert backed_up.returncode == 0, backed_up.output
    assert httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=10).json() == version
    assert image_of(stack["name"]) == "chromadb/chroma:1.5.9"
    assert read_records(port) == records
    print(f"records before and after: {sum(len(ids) for ids in records.values())}")


def test_an_archive_of_another_project_is_refused_before_anything_stops(stack, tmp_path):
    """It stopped Chroma, extracted, found no chroma_data/, and left it stopped and the
    staging dir behind, saying "nothing was changed"."""
    data, port = stack["data"], stack["data"]["chroma_port"]
    unpacked = tmp_path / "unpacked"
    with tarfile.open(stack["archive"]) as packed:
        packed.extractall(unpacked, filter="tar")
    (unpacked / "chroma_data").rename(unpacked / "vectors")
    archive = tmp_path / "otherproject-20200101T000000Z.tar.gz"
    subprocess.run(["tar", "-C", unpacked, "-czf", archive, "vectors"], check=True)
    write_checksum(archive)
    manifest = json.loads(sibling(stack["archive"], ".json").read_text())
    sibling(archive, ".json").write_text(json.dumps(dict(manifest, project="otherproject")))
    records = read_records(port)
    compose = (stack["dir"] / "docker-compose.yml").read_bytes()
    container = chroma_container(stack["name"])

    refused = run("restore.py", dict(data, chroma_restore_archive=str(archive)))
    assert refused.returncode == 1, refused.output
    untouched(stack, compose, container, records)
    lines = refusal_lines(refused, "chroma_restore_archive")
    assert len(lines) == 1, refused.output
    assert "holds vectors/, not chroma_data/" in lines[0]
    print(lines[0])
    print(f"records before and after: {sum(len(ids) for ids in records.values())}")


def test_an_archive_of_a_version_the_settings_do_not_fit_is_refused_before_anything_stops(
    stack, tmp_path
):
    """The manifest's version replaced chroma_version unchecked: a 1.x-only key went on to 0.6.3."""
    data, port = stack["data"], stack["data"]["chroma_port"]
    archive = tmp_path / f"{stack['name']}-20200101T000000Z-before-1.5.9.tar.gz"
    shutil.copy(stack["archive"], archive)
    write_checksum(archive)
    manifest = json.loads(sibling(stack["archive"], ".json").read_text())
    sibling(archive, ".json").write_text(json.dumps(dict(manifest, version="0.6.3")))
    records = read_records(port)
    compose = (stack["dir"] / "docker-compose.yml").read_bytes()
    container = chroma_container(stack["name"])

    restore = dict(data, chroma_restore_archive=str(archive), chroma_max_payload_bytes=1000000)
    refused = run("restore.py", restore)
    assert refused.returncode == 1, refused.output
    untouched(stack, compose, container, records)
    lines = refusal_lines(refused, "chroma_restore_archive")
    assert len(lines) == 1, refused.output
    assert "its manifest names Chroma '0.6.3'" in lines[0]
    assert "chroma_max_payload_bytes: a Chroma 1.x setting" in lines[0]
    print(lines[0])
    print(f"records before and after: {sum(len(ids) for ids in records.values())}")


def test_an_archive_that_fails_to_unpack_leaves_no_staging_and_the_stack_running_again(
    stack, tmp_path
):
    """What no check can see beforehand (here a hard link to a file the archive lacks, which
    tar lists but cannot make) once left the stack stopped and the staging dir behind."""
    data, port = stack["data"], stack["data"]["chroma_port"]
    archive = tmp_path / f"{stack['name']}-20200101T000000Z.tar.gz"
    with tarfile.open(stack["archive"]) as source, tarfile.open(archive, "w:gz") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("chroma_data/unmakeable")
        link.type, link.linkname = tarfile.LNKTYPE, "chroma_data/not-in-the-archive"
        target.addfile(link)
    write_checksum(archive)
    shutil.copy(sibling(stack["archive"], ".json"), sibling(archive, ".json"))
    records = read_records(port)
    compose = (stack["dir"] / "docker-compose.yml").read_bytes()

    failed = run("restore.py", dict(data, chroma_restore_archive=str(archive)))
    assert failed.returncode == 1, failed.output
    assert chroma_container(stack["name"]).endswith(" running")  # started again: it ran
    assert (stack["dir"] / "docker-compose.yml").read_bytes() == compose
    assert read_records(port) == records
    assert not list(stack["dir"].glob(".chroma_data.restore-staging*"))
    assert not list(stack["dir"].glob("chroma_data.before-restore-*"))
    said = [line.strip() for line in click.unstyle(failed.output).splitlines()]
    refused = [line for line in said if line.startswith("@local: ")]
    assert len(refused) == 1, failed.output  # one line, with tar's reason in it
    assert f"{archive} could not be unpacked" in refused[0], failed.output
    assert "Cannot hard link" in refused[0], failed.output
    assert not [line for line in said if line.startswith(("tar:", "[@local] tar:"))], said
    assert not [line for line in said if "Error: executed" in line or "No hosts" in line], said
    print(refused[0])
    print(f"records before and after: {sum(len(ids) for ids in records.values())}")


def test_backup_does_not_start_the_stopped_stack_of_a_blocked_host(stack):
    """A failed verification stops the stack and blocks the host; backup.py started it again."""
    project_dir, data, port = stack["dir"], stack["data"], stack["data"]["chroma_port"]
    records = read_records(port)
    backups = sorted((stack["base"] / "backups").iterdir())
    record = project_dir / ".chroma-deploy" / "failed-upgrade-20200101T000000Z.json"
    sh(f"cd '{project_dir}' && docker compose stop")  # as the failed verification leaves it
    record.write_text(json.dumps({"kind": "upgrade", "subject": "1.5.9", "differences": []}))
    try:
        refused = run("backup.py", data)
        assert refused.returncode == 1, refused.output
        lines = refusal_lines(refused, "chroma_accept_failed_verification")
        assert len(lines) == 1, refused.output
        print(lines[0])
        assert chroma_container(stack["name"]).endswith(" exited")
        assert sorted((stack["base"] / "backups").iterdir()) == backups
        assert record.is_file()
    finally:
        record.unlink(missing_ok=True)
        sh(f"cd '{project_dir}' && docker compose start")
        wait_for_heartbeat(port)
    assert read_records(port) == records
    print(f"records before and after: {sum(len(ids) for ids in records.values())}")
