"""The package's stages import only the stages below them, and each package says what it owns."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "cocoseg"
# Lowest first; a package may import its own modules and those of lower levels.
LEVELS = {"shared": 0, "masks": 1, "training": 2, "evaluation": 3, "deploy": 4, "report": 4}
TOP = 5  # cli, workflow_checks, __main__: may import any stage


def stage_of(path: Path) -> str:
    """`shared` for src/cocoseg/shared/files.py; the module's name for a top-level module."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def level(stage: str) -> int:
    return LEVELS.get(stage, TOP)


def package_imports(source: str) -> set[str]:
    """The stages a module imports from (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import: the package imports by full name"
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = (name or "").split(".")
            if parts[0] == "cocoseg" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_a_module_imports_only_its_own_stage_and_those_below(path):
    assert upward_imports(stage_of(path), path.read_text()) == []


def upward_imports(stage: str, source: str) -> list[str]:
    """The stages `source`, a module of `stage`, imports that are not below it (the top-level
    modules may import any)."""
    if level(stage) == TOP:
        return []
    return sorted(other for other in package_imports(source) - {stage} if level(other) >= level(stage))


def test_every_stage_is_a_package_whose_init_only_says_what_it_owns():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LEVELS)
    for name in packages:
        tree = ast.parse((PACKAGE / name / "__init__.py").read_text())
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), f"{name}/__init__.py holds code"
        assert "May import" in ast.get_docstring(tree), f"{name}/__init__.py does not say what it may import"


def test_the_check_catches_an_upward_import_and_a_sideways_one():
    assert upward_imports("masks", "from cocoseg.training.variants import Variant\n") == ["training"]
    assert upward_imports("report", "def f():\n    from cocoseg.deploy import predict\n") == ["deploy"]
    assert upward_imports("deploy", "from cocoseg.evaluation.predictor import Predictor\n") == []
