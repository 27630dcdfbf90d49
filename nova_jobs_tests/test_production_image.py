"""The Dockerfile, checked statically: no Docker engine runs here (CI neither), so these tests
parse it and check what `docker build` would produce; they do not build it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, rest in steps:
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, rest))
    return out


@pytest.fixture
def dockerfile(project_root: Path) -> list[tuple[str, str]]:
    return instructions(project_root / "Dockerfile")


def test_final_stage_runs_as_a_non_root_user(dockerfile):
    final = stages(dockerfile)[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage never switches user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_image_holds_the_source_tree_with_pyproject(dockerfile, project_root):
    final = stages(dockerfile)[-1]
    copied = " ".join(rest for keyword, rest in final if keyword == "COPY")
    assert "pyproject.toml" in copied
    assert "nova_jobs" in copied
    build = stages(dockerfile)[0]
    installs = [rest for keyword, rest in build if keyword == "RUN" and "pip install" in rest]
    assert any(rest.rstrip().endswith(" .") or " . " in rest for rest in installs), installs
    # Every path the Dockerfile copies from the context exists and is not ignored.
    ignore = (project_root / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, rest in dockerfile:
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in shlex.split(rest) if not part.startswith("--")][:-1]
        for source in sources:
            assert source in allowed, f"{source} is excluded by .dockerignore"
            if source != "README.md":  # README.md is the project's, written with the docs
                assert (project_root / source).exists(), source


def test_default_command_is_the_code_server_and_not_an_entrypoint(dockerfile):
    final = stages(dockerfile)[-1]
    assert not [rest for keyword, rest in final if keyword == "ENTRYPOINT"], (
        "Kubernetes run/step pods and the exporter set args; an ENTRYPOINT would prefix them"
    )
    cmd = json.loads([rest for keyword, rest in final if keyword == "CMD"][-1])
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("-m") + 1] == "nova_jobs.definitions"
    assert cmd[cmd.index("-h") + 1] == "0.0.0.0"
    assert cmd[cmd.index("-p") + 1] == "3030"


def test_exporter_is_a_second_command_of_the_same_image(project_root):
    from nova_jobs.cli import COMMANDS

    assert "exporter" in COMMANDS
    scripts = (project_root / "pyproject.toml").read_text()
    assert 'nova-jobs = "nova_jobs.cli:main"' in scripts


def test_image_installs_the_runtime_only(dockerfile, project_root):
    # The local stack, demo data and benchmarks (nova_jobs_dev) and their extra stay out.
    copied = [rest for keyword, rest in dockerfile if keyword == "COPY"]
    assert not [rest for rest in copied if "nova_jobs_dev" in rest or rest.split()[0] == "."], copied
    installs = [rest for keyword, rest in dockerfile if keyword == "RUN" and "pip install" in rest]
    assert installs and not [rest for rest in installs if "[" in rest], installs
    ignore = (project_root / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and not [line for line in ignore if line.startswith("!nova_jobs_dev")]
