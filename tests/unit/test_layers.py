"""The layers stay one-way: the declaration imports no operation and no fact, facts
import neither the declaration nor an operation. Read from the source, so a new import
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


FORBIDDEN = {
    "declaration": {"operations", "facts"},
    "facts": {"operations", "declaration"},
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
