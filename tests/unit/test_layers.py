"""The layers stay one-way, and each room holds what its name promises.

The declaration imports no operation and no fact; facts import neither the
declaration nor an operation; the read-only checks and the rollout planning
declare nothing; operations/ holds ``@operation`` modules only (the plumbing
of a run lives in plumbing/). Read from the source, so a new import or module
anywhere in these packages is checked without a list to keep up to date."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


ROOMS = {"checks", "declaration", "deploys", "facts", "fleet", "operations", "plumbing"}
FORBIDDEN = {
    "declaration": ROOMS - {"declaration"},
    "facts": ROOMS - {"facts"},
    "checks": {"operations", "plumbing", "deploys", "fleet"},
    "fleet": ROOMS - {"fleet"},
}


@pytest.mark.parametrize(
    "path",
    [p for package in FORBIDDEN for p in sorted((ROOT / package).glob("*.py"))],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_layer_imports_point_one_way(path: Path) -> None:
    wrong = _imported_packages(path) & FORBIDDEN[path.parent.name]
    assert not wrong, f"{path.parent.name}/{path.name} imports {sorted(wrong)}"


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from operations.stack import compose_up\nimport facts.docker\n")
    assert _imported_packages(module) == {"operations", "facts"}


def _declares_an_operation(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id == "operation":
                    return True
    return False


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "operations").glob("*.py") if p.name != "__init__.py"),
    ids=lambda p: p.name,
)
def test_operations_holds_operation_modules_only(path: Path) -> None:
    assert _declares_an_operation(path), (
        f"operations/{path.name} declares no @operation: it belongs in plumbing/ or checks/"
    )


def test_the_room_check_sees_a_module_without_an_operation(tmp_path: Path) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text("def read(): return 1\n")
    declared = tmp_path / "declared.py"
    declared.write_text("from pyinfra.api import operation\n@operation()\ndef op(): yield 'x'\n")
    assert not _declares_an_operation(helper)
    assert _declares_an_operation(declared)
