"""How long a run process takes to load the code location, beside Dagster's own import.

    python -m nova_jobs_dev.import_bench            # median of 7 fresh processes each
    python -m nova_jobs_dev.bench --only import     # the same, as the first section of `make bench`

Every run (`dagster api execute_run`), step pod and code server imports `nova_jobs.definitions`
before it does anything, so what that import adds over `import dagster` is paid per run. Each
sample is a fresh interpreter timing the import alone (interpreter start-up left out); the two
imports alternate so that a busy machine slows both alike; bytecode is compiled first, as an
install has it. What the code location adds is listed from `python -X importtime`.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

IMPORTS = {"dagster": "import dagster", "nova_jobs.definitions": "import nova_jobs.definitions"}
# A run process imports nothing else first; warnings would only clutter the child's stderr.
_TIMED = "import time, warnings; warnings.simplefilter('ignore'); t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


_PYCACHE = tempfile.mkdtemp(prefix="nova-import-bench-")
atexit.register(shutil.rmtree, _PYCACHE, True)


def _child_env() -> dict[str, str]:
    # Bytecode compiled once, as `pip install` (and so the image) does; kept outside the source
    # tree, and compiled for every module (a prefix replaces __pycache__) by a discarded warm-up.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONWARNINGS": "ignore", "PYTHONPYCACHEPREFIX": _PYCACHE}


def time_import(stmt: str) -> float:
    result = subprocess.run([sys.executable, "-c", _TIMED.format(stmt=stmt)], capture_output=True, text=True,
                            env=_child_env(), check=True, timeout=300)
    return float(result.stdout.strip().splitlines()[-1])


def _import_times(stmt: str) -> list[tuple[str, float, float]]:
    """(module, self seconds, cumulative seconds) per module `stmt` loads, from -X importtime."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", stmt], capture_output=True, text=True,
                            env=_child_env(), check=True, timeout=300)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            own = int(parts[0].removeprefix("import time:").strip())
            rows.append((parts[2].strip(), own / 1e6, int(parts[1]) / 1e6))
    return rows


def added_modules(top: int) -> list[tuple[str, float]]:
    """What `import nova_jobs.definitions` loads beyond `import dagster`, heaviest first: each
    other package's whole import, and our own modules' time of their own (building the
    definitions) as `nova_jobs`."""
    already = {module.split(".")[0] for module, _, _ in _import_times(IMPORTS["dagster"])}
    added: dict[str, float] = {}
    for module, own, cumulative in _import_times(IMPORTS["nova_jobs.definitions"]):
        package = module.split(".")[0]
        if package == "nova_jobs":
            added[package] = added.get(package, 0.0) + own
        elif package not in already and module == package:
            added[package] = added.get(package, 0.0) + cumulative
    return sorted(added.items(), key=lambda item: -item[1])[:top]


def measure(samples: int = 7, top: int = 8) -> dict:
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for stmt in IMPORTS.values():
        time_import(stmt)
    for _ in range(samples):
        for name, stmt in IMPORTS.items():
            times[name].append(time_import(stmt))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "samples": samples,
        "median_seconds": medians,
        # The median of each back-to-back pair's difference: steadier than a difference of medians
        # when the machine's load changes during the measurement.
        "added_seconds": statistics.median(
            ours - theirs for ours, theirs in zip(times["nova_jobs.definitions"], times["dagster"])),
        "all_seconds": times,
        "heaviest_added_modules": added_modules(top),
    }


def report(result: dict) -> str:
    medians = result["median_seconds"]
    lines = [f"Import time, median of {result['samples']} fresh processes each (seconds):",
             f"  import dagster                 {medians['dagster']:.2f}",
             f"  import nova_jobs.definitions   {medians['nova_jobs.definitions']:.2f}",
             f"  added by the code location     {result['added_seconds']:.2f}  (median of the pairs' differences)",
             "  what it adds (python -X importtime; nova_jobs: its own modules' time):"]
    lines += [f"    {module:<28} {seconds:.3f}" for module, seconds in result["heaviest_added_modules"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs_dev.import_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=7, help="fresh processes per import (default 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.samples)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
