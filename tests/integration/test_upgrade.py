"""0.6.3 -> 1.x with real data: backed up first, mount target moved, counts verified."""

from __future__ import annotations

import os
import subprocess
import time

import click
import httpx
import pytest
import yaml
from conftest import (
    PYINFRA,
    ROOT,
    base_data,
    chroma_client,
    converge,
    read_records,
    run_deploy,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_upgrade_from_0_6_keeps_every_record_and_a_downgrade_is_refused(project, tmp_path):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    client = chroma_client(port)  # records written by the 0.6 server
    for collection_name in ("faq", "docs"):
        collection = client.create_collection(collection_name, embedding_function=None)
        collection.add(
            ids=[f"{collection_name}-{i}" for i in range(150)],
            embeddings=[[float(i % 5), float(i % 7), 1.0] for i in range(150)],
            metadatas=[{"i": i} for i in range(150)],
        )
    before = read_records(port)

    upgraded = converge(dict(data, chroma_version="1.5.9"))
    assert "Migrated data verified on the bind mount" in upgraded.changed_operations
    assert read_records(port) == before
    chroma = yaml.safe_load((project_dir / "docker-compose.yml").read_text())["services"]["chroma"]
    assert chroma["volumes"][0]["source"] == "./chroma_data"
    assert chroma["volumes"][0]["target"] == "/data"
    backups = list((tmp_path / "backups").glob(f"{name}-*-before-1.5.9.tar.gz"))
    assert len(backups) == 1
    assert (project_dir / ".chroma-deploy" / "upgraded-0.6.3-to-1.5.9.json").is_file()

    compose = (project_dir / "docker-compose.yml").read_text()
    refused = run_deploy(dict(data, chroma_version="0.6.3"))
    assert refused.returncode == 1
    said = click.unstyle(refused.output)  # once, as `<host>: <key>: ...`, and nothing more
    assert said.count("@local: chroma_version: 0.6.3 is older than the 1.5.9 deployed") == 1
    assert "No hosts remaining" not in said and "executed 0 commands" not in said, said
    assert (project_dir / "docker-compose.yml").read_text() == compose
    assert read_records(port) == before

    # The way back: restoring the pre-upgrade archive brings back the version it was
    # taken with, and the data as it was then (not migrated forward again).
    chroma_client(port).get_collection("faq", embedding_function=None).delete(ids=["faq-0"])
    back = dict(data, chroma_restore_archive=str(backups[0]))
    restored = run_deploy(back, deploy_file="restore.py", timeout=600)
    assert restored.returncode == 0, restored.output
    assert "keep chroma_version=0.6.3" in restored.output
    chroma = yaml.safe_load((project_dir / "docker-compose.yml").read_text())["services"]["chroma"]
    assert chroma["image"].endswith(":0.6.3")
    assert chroma["volumes"][0]["target"] == "/chroma/chroma"
    version = httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=10).json()
    assert version == "0.6.3"
    assert read_records(port) == before
    again = run_deploy(back, deploy_file="restore.py", timeout=600)  # nothing changed since
    assert again.returncode == 0 and again.result["totals"]["success"] == 0, again.output
    converge(dict(data, chroma_version="0.6.3"))  # the version the user now keeps


BROKEN = """\
FROM chromadb/chroma:1.5.9
ENTRYPOINT ["/bin/bash", "-c", "echo 'InternalError: no such column: x' >&2; exit 1"]
"""


@pytest.fixture
def broken_image():
    """chromadb/chroma:1.99.0 that cannot open the data, as an early 1.0 failed on 0.6.3 data."""
    tag = "chromadb/chroma:1.99.0"
    built = subprocess.run(
        ["docker", "build", "-t", tag, "-"], input=BROKEN, text=True, capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)  # the test's own


def test_a_failed_rehearsal_stops_the_upgrade_and_the_old_stack_keeps_serving(
    project, tmp_path, broken_image
):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_backup_dir=str(tmp_path / "backups"))
    port = data["chroma_port"]
    converge(data)
    collection = chroma_client(port).create_collection("kept", embedding_function=None)
    collection.add(
        ids=[f"k{i}" for i in range(100)], embeddings=[[float(i), 1.0] for i in range(100)]
    )
    before = read_records(port)
    compose = (project_dir / "docker-compose.yml").read_text()

    failed = run_deploy(dict(data, chroma_version="1.99.0"))
    assert failed.returncode != 0
    assert "upgrade rehearsal FAILED, nothing was switched" in failed.output
    assert "InternalError" in failed.output  # the new server's own words
    assert (project_dir / "docker-compose.yml").read_text() == compose
    assert read_records(port) == before  # the live stack serves the old data again
    assert not (project_dir / ".chroma-deploy" / "rehearsal").exists()
    rehearsal = f"label=chroma-deploy.rehearsal={project_dir}/chroma_data"
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", rehearsal],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert leftovers.stdout == ""
    converge(data)  # still the old version, and nothing to change


# serial: it must see the switch's gap before the new stack is up; a busy machine closes it.
@pytest.mark.serial
def test_no_write_can_land_between_the_backup_and_the_switch(project, tmp_path):
    """Finding 4: the backup restarted the old stack before the switch; writes made then
    were missing from the archive the user is told to restore."""
    project_dir, name = project
    backups = tmp_path / "backups"
    data = base_data(project_dir, name, chroma_backup_dir=str(backups))
    port = data["chroma_port"]
    converge(dict(data, chroma_version="0.6.3"))
    collection = chroma_client(port).create_collection("before", embedding_function=None)
    collection.add(ids=["b1"], embeddings=[[1.0, 2.0]])
    args = [PYINFRA, "-y", "@local", "deploy.py"]
    for key, value in dict(data, chroma_version="1.5.9").items():
        args += ["--data", f"{key}={value}"]
    upgrade = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    archive_seen = None
    for _ in range(1200):  # the archive gets its final name once it is complete
        archive_seen = next(iter(backups.glob("*-before-1.5.9.tar.gz")), None)
        if archive_seen or upgrade.poll() is not None:
            break
        time.sleep(0.05)
    assert archive_seen, "no pre-upgrade archive appeared"
    with pytest.raises(httpx.TransportError):  # nothing answers to write to
        httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
    output, _ = upgrade.communicate(timeout=900)
    assert upgrade.returncode == 0, output
    assert read_records(port) == {"before": ["b1"]}
