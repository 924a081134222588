"""The layers of docs/architecture.md ("Layers"), checked on the source: every import of every module of each
top-level package, at the top of a file or inside a function, must be of a package its layer may use. A new
import that points the wrong way fails here, with the file and the line."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DJANGO = {"django", "rest_framework", "drf_spectacular", "django_htmx", "celery", "whitenoise"}

# What each package may import of Ferry's packages and of Django. Third-party libraries are not checked.
MAY_IMPORT = {
    "contracts": set(),
    "autoscaler": {"contracts"},
    "processors": {"contracts"},
    "gateway": {"contracts"},
    "cli": {"contracts"},
    "services": {"contracts", "autoscaler", "processors"} | DJANGO,
    "deployer": {"contracts", "autoscaler", "processors", "services"} | DJANGO,
    "config": {"contracts", "autoscaler", "processors", "services", "deployer", "gateway"} | DJANGO,
}
FERRY = set(MAY_IMPORT)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import in a file."""
    try:
        return imports_in(path.read_text())
    except SystemError:
        # CPython 3.11 can raise "AST constructor recursion depth mismatch" when an earlier test in the same
        # process left its recursion counter off (a deep recursion caught elsewhere): a fresh process parses.
        found = subprocess.run(
            [sys.executable, "-c", "import json, sys; from tests.unit.test_layers import imports_in; "
                                   "print(json.dumps(imports_in(open(sys.argv[1]).read())))", str(path)],
            cwd=REPO, capture_output=True, text=True, check=True)
        return [tuple(pair) for pair in json.loads(found.stdout)]


def imports_in(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        relative = path.relative_to(REPO)
        if "migrations" in relative.parts:
            continue
        for line, name in imports(path):
            if name == package or name not in FERRY | DJANGO:
                continue
            if name not in MAY_IMPORT[package]:
                found.append(f"{relative}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_what_its_layer_may(package):
    assert violations(package) == []


def test_the_rules_cover_every_top_level_package():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert packages == FERRY


def test_the_check_finds_an_import_that_points_the_wrong_way(tmp_path, monkeypatch):
    """The check itself can fail: a services module importing the deployer, even inside a function, is found."""
    package = tmp_path / "services"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("def f():\n    from deployer.tasks import reconcile_service\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert violations("services") == ["services/bad.py:2 imports deployer"]
