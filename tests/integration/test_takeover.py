"""Data-safety second pass (#11): stacks users really have, on one engine with others.

Each test reproduces a way an earlier version lost, hid or took data, for real.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import (
    base_data,
    converge,
    free_port,
    read_records,
    run_deploy,
    run_drift,
    sh,
    wait_for_heartbeat,
    write_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def other_database(port: int, create: bool = False):
    """A client on the database `other` of the default tenant (made first when ``create``)."""
    import chromadb
    from chromadb.config import Settings

    if create:
        settings = Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=port,
        )
        chromadb.AdminClient(settings).create_database("other")
    return chromadb.HttpClient(host="127.0.0.1", port=port, database="other")


def drift_json(data: dict) -> tuple[int, dict]:
    result = run_drift(data, "--json")
    return result.returncode, json.loads(result.stdout)


SEED_AFTER = """\
services:
  chroma:
    image: chromadb/chroma:1.5.9
    ports: ['127.0.0.1:{port}:8000']
    volumes:
      - ./chroma_data:/chroma/chroma
      - ./chroma_db:/chroma/db
"""


def test_seed_after_stack_on_1x_keeps_its_layer_data_when_taken_over(project):
    """The seed's AFTER file on 1.x writes /data in the container's layer: rescued, verified."""
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    project_dir.mkdir(parents=True)
    (project_dir / "docker-compose.yml").write_text(SEED_AFTER.format(port=port))
    sh(f"cd '{project_dir}' && docker compose -p {name} up -d")
    wait_for_heartbeat(port)
    written = write_records(port, ("knowledge",), per_collection=120)
    elsewhere = other_database(port, create=True).create_collection(
        "elsewhere", embedding_function=None
    )
    elsewhere.add(  # list, bool and float metadata: read back the same from SQLite and API
        ids=["far"], embeddings=[[1.0, 2.0, 3.0, 4.0]], documents=["in another db"],
        metadatas=[{"tags": ["b", "a"], "ok": True, "weight": 2.0}],
    )  # fmt: skip
    assert not (project_dir / "chroma_data" / "chroma.sqlite3").exists()  # the seed's mistake

    code, found = drift_json(data)
    assert code == 2
    kinds = {item["kind"] for item in found["hosts"]["@local"]["items"]}
    assert "data_outside_mount" in kinds

    first = converge(data)
    assert "Stack " + name + " up and healthy" in first.changed_operations
    assert read_records(port) == {k: sorted(v) for k, v in written.items()}
    assert (project_dir / "chroma_data" / "chroma.sqlite3").is_file()
    state = project_dir / ".chroma-deploy"
    rescued = [json.loads(p.read_text()) for p in state.glob("rescued-layer-*.json")]
    assert len(rescued) == 1
    assert sorted(rescued[0]["before"]["collections"]) == [
        "default_tenant/default_database/knowledge", "default_tenant/other/elsewhere",
    ]  # fmt: skip
    far = other_database(port).get_collection("elsewhere", embedding_function=None)
    assert far.get(ids=["far"])["documents"] == ["in another db"]
    assert drift_json(data)[0] == 0
    kept = rescued[0]["kept_as"]  # the old layer lives on as an image, never deleted
    assert sh(f"docker image inspect {kept}").returncode == 0
    sh(f"docker image rm {kept}", check=False)  # the test's own throwaway image


@pytest.fixture
def other_project(project, tmp_path):
    """Another compose project on the same engine, its data in its own named volume."""
    _project_dir, name = project
    other = tmp_path / "other"
    other.mkdir()
    port = free_port()
    (other / "docker-compose.yml").write_text(
        f"name: {name}other\nservices:\n  chroma:\n    image: chromadb/chroma:1.5.9\n"
        f"    ports: ['127.0.0.1:{port}:8000']\n    volumes: ['chroma_data:/data']\n"
        "volumes:\n  chroma_data: {}\n"
    )
    sh(f"cd '{other}' && docker compose up -d")
    try:
        wait_for_heartbeat(port)
        yield port
    finally:
        sh(f"cd '{other}' && docker compose down -v", check=False)  # the test's own volume


def other_state(name: str) -> str:
    return sh(f"docker inspect -f '{{{{.State.Status}}}}' {name}other-chroma-1").stdout.strip()


def test_another_projects_volume_and_containers_are_left_alone(project, other_project):
    """A running project `other` with data in other_chroma_data: not stopped, not copied."""
    project_dir, name = project
    write_records(other_project, ("theirs",), per_collection=50)
    data = base_data(project_dir, name)
    converge(data)
    said = run_deploy(data, "-v").output  # no-op messages show from -v on
    assert "other projects left alone" in said
    assert (
        f"{name}other_chroma_data (compose project {name}other, 1 collections, 50 records)" in said
    )
    assert "chroma_adopt_volume" in said
    assert other_state(name) == "running"
    assert read_records(data["chroma_port"]) == {}  # ours did not take their data
    assert len(read_records(other_project)["theirs"]) == 50


def test_this_projects_volume_used_by_another_project_is_refused(project, other_project):
    """Adopting a volume that another project's container uses: refused, nothing stopped."""
    project_dir, name = project
    write_records(other_project, ("theirs",), per_collection=5)
    data = base_data(project_dir, name, chroma_adopt_volume=f"{name}other_chroma_data")
    result = run_deploy(data)
    assert result.returncode != 0
    assert "is used by containers of another project" in result.output
    assert other_state(name) == "running"
    assert not (project_dir / "chroma_data" / "chroma.sqlite3").exists()


def test_prune_keeps_other_projects_and_the_way_back(project, tmp_path):
    """keep=1 with p-x's archive and p's pre-upgrade archive beside: both kept."""
    project_dir, name = project
    backups = tmp_path / "backups"
    backups.mkdir()
    foreign = backups / f"{name}-x-20200101T000000Z.tar.gz"
    foreign.write_text("another project's archive")
    (backups / f"{name}-x-20200101T000000Z.json").write_text(
        json.dumps({"project": f"{name}-x", "collections": {}, "created": "20200101T000000Z"})
    )
    way_back = backups / f"{name}-20200101T000000Z-before-1.5.9.tar.gz"
    way_back.write_text("the way back")
    (backups / f"{name}-20200101T000000Z-before-1.5.9.json").write_text(
        json.dumps(
            {
                "project": name,
                "version": "0.6.3",
                "before_version": "1.5.9",
                "collections": {},
                "created": "20200101T000000Z",
            }
        )
    )
    data = base_data(project_dir, name, chroma_backup_dir=str(backups), chroma_backup_keep=1)
    converge(data)
    for _ in range(2):
        result = run_deploy(data, deploy_file="backup.py", timeout=600)
        assert result.returncode == 0, result.output
        subprocess.run(["sleep", "1.1"], check=True)
    assert foreign.read_text() == "another project's archive"
    assert way_back.read_text() == "the way back"
    ours = [p for p in backups.glob(f"{name}-2*.tar.gz") if "before" not in p.name]
    assert len(ours) == 1  # keep=1 of the two new ones
