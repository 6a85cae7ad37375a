"""Data written through the real chromadb client survives what used to lose it."""

from __future__ import annotations

import math

import pytest
from conftest import (
    base_data,
    chroma_client,
    compose_down,
    converge,
    read_fact,
    restart_engine,
    sh,
    wait_for_heartbeat,
)

from facts.compose import ContainerMounts

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DIMENSIONS = 8


def _embedding(index: int) -> list[float]:
    """Distinct vectors, so nearest neighbours have one order only."""
    return [math.sin(index * 1.37 + d * 0.71) for d in range(DIMENSIONS)]


def _add_documents(port: int, count: int, collection: str = "persistence") -> list[str]:
    client = chroma_client(port)
    target = client.get_or_create_collection(collection, embedding_function=None)
    ids = [f"doc-{index:04d}" for index in range(count)]
    target.add(
        ids=ids,
        embeddings=[_embedding(index) for index in range(count)],
        documents=[f"document number {index}" for index in range(count)],
        metadatas=[{"index": index, "parity": index % 2} for index in range(count)],
    )
    return ids


def _query_ids(port: int, collection: str = "persistence") -> list[str]:
    target = chroma_client(port).get_collection(collection, embedding_function=None)
    found = target.query(query_embeddings=[_embedding(1000)], n_results=10)
    return found["ids"][0]


def _count(port: int, collection: str = "persistence") -> int:
    return chroma_client(port).get_collection(collection, embedding_function=None).count()


@pytest.mark.serial  # restarts the engine
def test_data_survives_compose_down_redeploy_and_engine_restart(project):
    project_dir, name = project
    data = base_data(project_dir, name)
    port = data["chroma_port"]
    converge(data)
    ids = _add_documents(port, 100)
    nearest = _query_ids(port)
    assert _count(port) == 100

    compose_down(project_dir)
    redeploy = converge(data)
    assert f"Stack {name} up and healthy" in redeploy.changed_operations
    assert _count(port) == 100
    assert _query_ids(port) == nearest
    stored = chroma_client(port).get_collection("persistence", embedding_function=None).get()
    assert sorted(stored["ids"]) == ids

    sh("pkill -x dockerd")
    restart_engine()
    converge(data)
    assert _count(port) == 100
    assert _query_ids(port) == nearest


def test_seed_mount_target_on_1x_loses_data_and_mounts_fact_flags_it(project):
    """The seed's `./chroma_data:/chroma/chroma` on a 1.x image, for real."""
    project_dir, name = project
    port = base_data(project_dir, name)["chroma_port"]
    (project_dir / "chroma_data").mkdir(parents=True)
    (project_dir / "docker-compose.yml").write_text(
        f"name: {name}\n"
        "services:\n"
        "  chroma:\n"
        "    image: chromadb/chroma:1.5.9\n"
        f"    ports: ['127.0.0.1:{port}:8000']\n"
        "    volumes: ['./chroma_data:/chroma/chroma']\n"
    )
    sh(f"cd '{project_dir}' && docker compose up -d")
    wait_for_heartbeat(port)
    _add_documents(port, 10, "seed")
    assert _count(port, "seed") == 10

    mounts = read_fact(ContainerMounts, project_name=name, service="chroma", persist_path="/data")
    assert mounts is not None
    assert any("nothing is mounted at the persist path /data" in p for p in mounts["problems"])
    assert any("/chroma/chroma" in p for p in mounts["problems"])
    assert list((project_dir / "chroma_data").iterdir()) == []  # nothing reached the host

    sh(f"cd '{project_dir}' && docker compose down && docker compose up -d")
    wait_for_heartbeat(port)
    names = [c.name for c in chroma_client(port).list_collections()]
    assert "seed" not in names  # the data was lost with the container
