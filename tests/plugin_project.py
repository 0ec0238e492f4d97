"""Run pytest on a fresh project as a user would, with the package's pytest plugin installed.

The package is not installed in the development environment, so its entry points are not either:
`run_pytest` lays a ``.dist-info`` with the ``pytest11`` entry points of ``pyproject.toml`` beside
the project, so pytest finds the plugin the way an installed package offers it. Where the package
is installed (``nox``), the same entry point name means it is loaded once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _entry_points_site(directory: Path) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist_info = directory / f"metatwin_functions-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = ["[pytest11]"] + [
        f"{name} = {target}" for name, target in project["entry-points"]["pytest11"].items()
    ]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return directory


def run_pytest(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project``, with no configuration of ours and no cache."""
    site = _entry_points_site(project.parent / f"{project.name}-site")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRBR_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=project,
        env=env,
    )
