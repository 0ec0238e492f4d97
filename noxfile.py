"""Sessions: ``nox -s tests`` (Python 3.11, 3.12 and 3.13), ``lint``, ``typecheck``, ``bench``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
# On a laptop, versions that are not installed are skipped; CI must run them all.
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() == "true"

# Pinned so that a new release cannot turn main red overnight.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"


def _add_pyenv_interpreters() -> None:
    """Let nox find the pyenv-installed Pythons that are not on PATH."""
    pyenv = shutil.which("pyenv")
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    if pyenv:
        result = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        roots.insert(0, result.stdout.strip())
    for root in filter(None, roots):
        versions = Path(root) / "versions"
        if not versions.is_dir():
            continue
        for version in sorted(versions.iterdir()):
            bin_dir = version / "bin"
            if bin_dir.is_dir() and str(bin_dir) not in os.environ["PATH"].split(os.pathsep):
                os.environ["PATH"] += os.pathsep + str(bin_dir)


_add_pyenv_interpreters()


# The Python that also runs tests/integration: real server processes, several replicas, the broker
# cut through a proxy. They test processes and the network, not the interpreter, and take most
# of the suite's time; the unit tests run on every version.
FULL_SUITE_PYTHON = "3.11"


@nox.session(python=["3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """Unit tests on every Python; on 3.11 the integration tests too (RabbitMQ on 127.0.0.1).

    ``nox -s tests -- ARGS`` passes ARGS to pytest instead (any test, on every Python).
    """
    session.install("-e", ".[tests]")
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    if session.python != FULL_SUITE_PYTHON:
        session.run("pytest", "--ignore=tests/integration")
        return
    # Line and branch coverage of the package (see [tool.coverage] in pyproject.toml), started
    # before pytest so the plugin's early import of the package counts, and in child processes.
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest")
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (checked as Python 3.11, see pyproject.toml)."""
    # Every extra: the modules that use them (JWT, OpenTelemetry, uvicorn, ...) are checked too.
    session.install("-e", ".[tests,cors,reload]", MYPY)
    session.run("mypy", "--strict", "metatwin_functions")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Per-call CPU, latency, start-up and memory of the SDK beside its peers (needs wrk)."""
    if shutil.which("wrk") is None and shutil.which("apt-get") and os.geteuid() == 0:
        session.log("wrk is missing: installing Debian's package")
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "wrk", external=True)
    session.install("-e", ".[uvicorn,otel]", "-r", "benchmarks/requirements.txt")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(name="bench-amqp", python="3.11")
def bench_amqp(session: nox.Session) -> None:
    """Execution over RabbitMQ: throughput, CPU per call, latency, scaling by replicas.

    Needs the broker on 127.0.0.1:5672 (guest/guest); ``-- --quick`` for a short run.
    """
    session.install("-e", ".")
    session.run("python", "benchmarks/amqp_bench.py", *session.posargs)
