"""The noxfile's docstring names the Python versions its sessions really run."""

from __future__ import annotations

import ast
from pathlib import Path

NOXFILE = Path(__file__).resolve().parent.parent / "noxfile.py"


def _session_versions(tree: ast.Module, name: str) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg == "python":
                            value = ast.literal_eval(keyword.value)
                            return [value] if isinstance(value, str) else list(value)
    return []


def test_docstring_lists_every_python_version_of_the_tests_session() -> None:
    tree = ast.parse(NOXFILE.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree) or ""
    versions = _session_versions(tree, "tests")
    assert versions
    for version in versions:
        assert version in docstring, f"{version} is run by `nox -s tests` but not documented"
