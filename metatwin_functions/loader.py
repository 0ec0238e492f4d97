"""Importing the user's modules for the command line: by module name or by file path alike."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import MetaTwinFunctionsError

__all__: list[str] = []


class ModuleLoadError(MetaTwinFunctionsError):
    """A module named on the command line cannot be imported; the message says why."""


def looks_like_path(target: str) -> bool:
    """True for ``x.py``, ``./x``, ``sub/dir/mod.py`` and absolute paths; False for ``a.b``."""
    return target.endswith(".py") or "/" in target or os.sep in target or Path(target).is_file()


def load(target: str) -> ModuleType:
    """Import ``target``, a module name (``examples.simple_function``) or a file path.

    Like ``python -m``, module names are found relative to the working directory. A file is
    imported under its dotted name when it sits in the working directory's packages (so
    ``examples/simple_function.py`` is ``examples.simple_function``), else by its location.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if looks_like_path(target):
        return _load_path(target)
    try:
        module = importlib.import_module(target)
    except (ImportError, SyntaxError, TypeError, ValueError) as exc:
        raise ModuleLoadError(f"cannot import '{target}': {exc}") from exc
    _refuse_standard_library(target, module, Path(cwd))
    return module


def _load_path(path: str) -> ModuleType:
    file = Path(path).resolve()
    if file.is_dir() and (file / "__init__.py").is_file():
        file = file / "__init__.py"
    if not file.is_file():
        raise ModuleLoadError(f"cannot import '{path}': no such file")
    dotted = _dotted_name(file, Path.cwd())
    if dotted is not None:
        spec = importlib.util.find_spec(dotted)
        if spec is not None and spec.origin and Path(spec.origin).resolve() == file:
            try:
                return importlib.import_module(dotted)
            except (ImportError, SyntaxError) as exc:
                raise ModuleLoadError(f"cannot import '{path}': {exc}") from exc
    return _load_file(file, path)


def _dotted_name(file: Path, root: Path) -> str | None:
    try:
        parts = list(file.relative_to(root).with_suffix("").parts)
    except ValueError:
        return None
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    # Only real packages: a file in a plain directory is a script, imported by its location.
    packages = [root.joinpath(*parts[:depth]) for depth in range(1, len(parts))]
    if not all((package / "__init__.py").is_file() for package in packages):
        return None
    return ".".join(parts)


def _load_file(file: Path, shown: str) -> ModuleType:
    # Like ``python path/to/script.py``: the file's directory comes first, for its siblings.
    directory = str(file.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = file.parent.name if file.name == "__init__.py" else file.stem
    if name in sys.modules or name in sys.stdlib_module_names or not name.isidentifier():
        # Never replace an imported (or standard library) module of the same name.
        name = f"_metatwin_functions_file_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"cannot import '{shown}': not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as exc:
        del sys.modules[name]
        raise ModuleLoadError(f"cannot import '{shown}': {exc}") from exc
    return module


def _refuse_standard_library(target: str, module: ModuleType, cwd: Path) -> None:
    top = target.partition(".")[0]
    if top not in sys.stdlib_module_names:
        return
    origin = getattr(module, "__file__", None)
    if origin is not None and Path(origin).resolve().is_relative_to(cwd.resolve()):
        return
    local = next((p for p in (cwd / f"{top}.py", cwd / top) if p.exists()), None)
    hint = (
        f": your {local.name} is shadowed by it; pass the path (./{local.name}) or rename it"
        if local is not None
        else ""
    )
    raise ModuleLoadError(f"'{target}' is a module of Python's standard library{hint}")
