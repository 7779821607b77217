"""The ground floor's layering: bench/ and reports/ import each other in neither direction; the record
contract, the metrics engine and the rules vocabulary import neither of them (static scan of every module)."""

import ast

import pytest
from conftest import ROOT

FORBIDDEN = {
    "bench": {"reports"},
    "reports": {"bench"},
    "record": {"bench", "reports", "metrics", "models", "data"},
    "metrics": {"bench", "reports"},
    "rules": {"bench", "reports", "record", "metrics"},
}


def imported_packages(path) -> set[tuple[str, int]]:
    """Top-level package names of every absolute import in a module, with their line numbers."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, package
    crossings = [f"{m.relative_to(ROOT)}:{line} imports {name}" for m in modules
                 for name, line in imported_packages(m) if name in FORBIDDEN[package]]
    assert not crossings, crossings


def test_the_scan_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from reports.tables import x\n    import bench.job as j\n")
    assert imported_packages(module) == {("reports", 2), ("bench", 3)}
