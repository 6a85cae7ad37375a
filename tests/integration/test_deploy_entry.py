"""The stack as a @deploy: another deploy file includes it with overrides, beside its own step."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import (
    ROOT,
    base_data,
    converge,
    free_port,
    run_deploy,
    run_drift,
    wait_for_heartbeat,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_second_deploy_file_includes_the_stack_with_overrides_next_to_its_own_operation(
    project, tmp_path
):
    project_dir, name = project
    port = free_port()
    own_dir = tmp_path / "site-owned"
    site = tmp_path / "site" / "site.py"
    site.parent.mkdir()
    site.write_text(
        textwrap.dedent(
            f"""\
            import sys
            sys.path.insert(0, {str(ROOT)!r})

            from pyinfra.operations import files

            from deploys.chroma import chroma_stack

            files.directory(name="Site: a dir of its own", path={str(own_dir)!r}, mode="750")
            chroma_stack(overrides={{"chroma_port": {port}}})
            """
        )
    )
    # The port comes only from the override: the host data holds another one.
    data = base_data(project_dir, name)
    assert data["chroma_port"] != port
    first = converge(data, deploy_file=str(site), cwd=site.parent)
    assert "Site: a dir of its own" in first.changed_operations
    assert f"Stack {name} up and healthy" in first.changed_operations
    raw = json.loads(first.stdout)["results"]["operations"]
    assert f"Chroma stack | Stack {name} up and healthy" in [op["name"] for op in raw]
    assert own_dir.is_dir()
    wait_for_heartbeat(port)
    # deploy.py and drift.py with the same values see the very same stack: nothing to do.
    drift = run_drift({**data, "chroma_port": port}, "--json")
    assert drift.returncode == 0, drift.output
    again = run_deploy({**data, "chroma_port": port})
    assert again.returncode == 0 and again.changed_operations == [], again.output
    # drift.py with the host's own data checks deploy.py's declaration: the override's port
    # is drift there. With --deploy it checks what site.py declares (its overrides): none.
    plain = run_drift(data, "--json")
    assert plain.returncode == 2, plain.output
    assert "port" in {item["kind"] for item in json.loads(plain.stdout)["hosts"]["@local"]["items"]}
    checked = run_drift(data, "--json", "--deploy", str(site))
    assert checked.returncode == 0, checked.output
    assert json.loads(checked.stdout)["hosts"]["@local"] == {
        "status": "ok",
        "error": None,
        "items": [],
    }
    # A real tamper on the stack site.py declares is drift with --deploy too.
    (project_dir / "chroma_data").chmod(0o700)
    tampered = run_drift(data, "--json", "--deploy", str(site))
    assert tampered.returncode == 2, tampered.output
    items = json.loads(tampered.stdout)["hosts"]["@local"]["items"]
    assert [(i["kind"], i["resource"], i["actual"]) for i in items] == [
        ("mode", str(project_dir / "chroma_data"), "700")
    ]
