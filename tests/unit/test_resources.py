"""One list of resources: whatever the declaration holds, the deploy converges and drift checks.

Both sides are enumerated from ``Declared.resources`` itself, never from a list
kept here: a new resource (or a new kind of resource) that one side misses fails.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from pyinfra.api.util import get_kwargs_str
from pyinfra.context import ctx_host
from test_operation_fixtures import RecordedHost, describe

from checks.compare import COMPARISONS, HostFacts, compare
from declaration.resources import Declared, Directory, File, Resource
from declaration.settings import load_settings
from operations import project

ROOT = "/tmp/fx/stack"
TOKEN = "resource-test-token-0123456789"
FACTS = Path(__file__).resolve().parent.parent / "fixtures" / "facts"


def _declared(**data: object) -> Declared:
    settings = load_settings(
        {"chroma_project_dir": ROOT, "chroma_compose_project": "fx", "chroma_port": 18777, **data}
    )
    return Declared(settings, 0, 0, TOKEN if settings.auth_proxy else None)


# Every optional resource switched on somewhere: the proxy's secrets, the 0.x log file.
DECLARATIONS = {
    "1.x with the auth proxy": _declared(chroma_auth_proxy=True),
    "0.x with the auth proxy": _declared(chroma_version="0.6.3", chroma_auth_proxy=True),
    "0.x without .gitignore lines": _declared(
        chroma_version="0.6.3", chroma_manage_gitignore=False
    ),
}


def test_every_kind_of_resource_has_a_comparison() -> None:
    assert set(typing.get_args(Resource)) == set(COMPARISONS)


@pytest.mark.parametrize("declared", DECLARATIONS.values(), ids=DECLARATIONS.keys())
def test_the_declaration_holds_the_optional_resources(declared: Declared) -> None:
    paths = [resource.path for resource in declared.paths]
    assert (declared.token_file in paths) == declared.settings.auth_proxy
    assert (declared.log_file in paths) == (declared.settings.version.startswith("0."))
    assert (declared.gitignore is not None) == declared.settings.manage_gitignore
    assert len(paths) == len(set(paths))
    # Parents before what they hold: the deploy creates them in this order.
    for index, path in enumerate(paths):
        assert all(not other.startswith(path + "/") for other in paths[:index])


def _nothing_there(declared: Declared) -> HostFacts:
    """A host on which no declared path exists yet, the stack down, no compose file."""
    stack = json.loads((FACTS / "compose.ComposeStack" / "no_file_no_containers.json").read_text())
    health = json.loads((FACTS / "chroma.ChromaHealth" / "down.json").read_text())
    return HostFacts(
        data_dirs={resource.path: None for resource in declared.paths},
        project_files={
            "gitignore": None,
            "compose": None,
            "dir": None,
            "files": {},
            "env_compose": [],
        },
        stack=stack["fact"],
        health=health["fact"],
        legacy_volumes=[],
    )


@pytest.mark.parametrize("declared", DECLARATIONS.values(), ids=DECLARATIONS.keys())
def test_drift_reports_every_declared_path_missing(declared: Declared) -> None:
    reported = {item.resource for item in compare(declared, _nothing_there(declared))}
    for resource in declared.paths:
        assert resource.path in reported, f"drift does not check {resource.path}"
    if declared.gitignore:
        assert declared.gitignore.path in reported
    assert declared.compose_file.path in reported


@pytest.mark.parametrize("declared", DECLARATIONS.values(), ids=DECLARATIONS.keys())
def test_the_deploy_creates_every_declared_path(declared: Declared) -> None:
    _, kwargs = project.path_states_read(declared.paths)
    nothing = {resource.path: None for resource in declared.paths}
    facts = {"datadirs.DataDirs": {get_kwargs_str(kwargs): nothing}}
    with ctx_host.use(RecordedHost(facts)):
        commands = "\n".join(describe(c) for c in project.paths.__wrapped__(declared.paths))
    for resource in declared.paths:
        assert resource.path in commands, f"the deploy does not create {resource.path}"
        if isinstance(resource, Directory) and resource.gitkeep:
            assert f"{resource.path}/.gitkeep" in commands


def test_a_secret_file_is_compared_by_digest_and_never_shown() -> None:
    declared = _declared(chroma_auth_proxy=True)
    token_file = next(r for r in declared.paths if isinstance(r, File) and r.secret)
    assert TOKEN not in repr(token_file) and TOKEN not in repr(declared)
    facts = _nothing_there(declared)
    facts.data_dirs[token_file.path] = {
        "type": "regular file", "uid": 0, "gid": 0, "user": "root", "group": "root",
        "mode": "600", "has_sqlite": False, "size_bytes": 40, "gitkeep": None,
        "gitkeep_kind": None, "sha256": "0" * 64, "acl": False, "setfacl": False, "foreign": None,
    }  # fmt: skip
    items = [item for item in compare(declared, facts) if item.resource == token_file.path]
    assert [(item.kind, item.actual) for item in items] == [("secret", "another token")]
    assert all(TOKEN not in json.dumps(item.as_dict()) for item in items)
