"""Compose's recorded verdict answers a no-op, and never hides a change.

A no-op reads the stack without starting ``docker compose``: the run that last
brought the stack up recorded what compose said (operations/stack.record_verdict),
keyed by the compose file's digest and the containers' ids. These tests attack
that shortcut on a real stack behind the auth proxy (Chroma in the proxy's
network namespace, the case compose's own hash cannot judge):

- containers recreated by hand from an edited file, the file then put back
  byte for byte: the record must not be believed (drift 2, the deploy repairs);
- containers recreated by hand from the very same file: compose is asked again,
  and finds nothing to do (no false drift, no change);
- a ``.env`` beside the file (compose reads it): compose is asked again;
- a record edited to claim other hashes: compose's own labels disagree (drift 2).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import base_data, converge, read_fact, run_deploy, run_drift, sh

from facts.compose import VERDICT_RECORD, ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _stack(data: dict[str, Any]) -> dict[str, Any]:
    return read_fact(
        ComposeStack, project_dir=data["chroma_project_dir"],
        project_name=data["chroma_compose_project"], image="chromadb/chroma:1.5.9",
    )  # fmt: skip


def _drift(data: dict[str, Any], env: dict[str, str]) -> tuple[int, str]:
    run = run_drift(data, env=env)
    return run.returncode, run.output


def _compose(project_dir: Path, *args: str) -> None:
    sh(f"cd '{project_dir}' && docker compose {' '.join(args)}")


@pytest.fixture
def stack(project):
    project_dir, name = project
    data = base_data(project_dir, name, chroma_auth_proxy="true", chroma_upgrade_rehearsal="false")
    env = {**os.environ, "CHROMA_AUTH_TOKEN": "verdict-" + uuid.uuid4().hex}
    converge(data, env=env)
    return project_dir, data, env


def test_a_noop_reads_the_recorded_verdict_and_an_edit_behind_its_back_is_still_found(stack):
    project_dir, data, env = stack
    assert _stack(data)["verdict"] == "recorded"
    assert _drift(data, env)[0] == 0

    # Recreate Chroma from an edited file, then put the original back byte for byte.
    compose_file = project_dir / "docker-compose.yml"
    original = compose_file.read_bytes()
    edited = yaml.safe_load(original)
    edited["services"]["chroma"]["environment"]["EDITED_BEHIND_OUR_BACK"] = "1"
    compose_file.write_text(yaml.safe_dump(edited))
    _compose(project_dir, "up", "--detach", "--wait")
    compose_file.write_bytes(original)

    stack_now = _stack(data)
    assert stack_now["verdict"] == "compose"  # the ids moved: the record is not believed
    code, output = _drift(data, env)
    assert code == 2, output
    assert "container_config" in output and f"{data['chroma_compose_project']}-chroma-1" in output

    repaired = run_deploy(data, env=env)
    assert repaired.returncode == 0, repaired.output
    assert "Stack" in " ".join(repaired.changed_operations), repaired.output
    assert _stack(data)["verdict"] == "recorded"
    assert _drift(data, env)[0] == 0
    again = run_deploy(data, env=env)
    assert again.changed_operations == [], again.output


def test_containers_recreated_from_the_same_file_are_asked_about_and_found_in_order(stack):
    project_dir, data, env = stack
    _compose(project_dir, "up", "--detach", "--wait", "--force-recreate")
    assert _stack(data)["verdict"] == "compose"
    assert _drift(data, env)[0] == 0
    noop = run_deploy(data, env=env)
    assert noop.changed_operations == [], noop.output


def test_a_dot_env_beside_the_file_makes_the_record_stale(stack):
    project_dir, data, env = stack
    assert _stack(data)["verdict"] == "recorded"
    (project_dir / ".env").write_text("UNUSED_BY_THE_FILE=1\n")  # compose reads it
    assert _stack(data)["verdict"] == "compose"
    assert _drift(data, env)[0] == 0
    (project_dir / ".env").unlink()
    assert _stack(data)["verdict"] == "recorded"


def test_a_record_edited_to_other_hashes_is_contradicted_by_the_containers(stack):
    project_dir, data, env = stack
    record = project_dir / VERDICT_RECORD
    lines = record.read_text().splitlines()
    forged = [*lines[:2], *(f"{line.split()[0]} {'0' * 64}" for line in lines[2:])]
    record.write_text("\n".join(forged) + "\n")
    assert _stack(data)["verdict"] == "recorded"
    code, output = _drift(data, env)
    assert code == 2, output  # the containers' own config-hash labels disagree
    repaired = run_deploy(data, env=env)
    assert repaired.returncode == 0, repaired.output
    assert _drift(data, env)[0] == 0
    # Written again from compose's own answer: the same file, the true hashes.
    rewritten = record.read_text().splitlines()
    assert (rewritten[0], rewritten[2:]) == (lines[0], lines[2:])
    assert _stack(data)["verdict"] == "recorded"
