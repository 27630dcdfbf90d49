"""`nova-jobs`: the operator's command line. Each domain owns its subcommands; this module only
dispatches, importing a domain when its command runs (so `nova-jobs dlq` never loads chdb)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from nova_jobs.lib.redact import RedactingFormatter, redact_text

# subcommand -> (module, help). Each module provides `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = {
    "dev": ("nova_jobs.devstack", "start the local stack and `dagster dev` (what `make dev` runs)"),
    "load-demo": ("nova_jobs.demo.cli", "create the tables and load the generated demo data set"),
    "dlq": ("nova_jobs.deadletter.cli", "list and replay the jobs-dlq dead-letter queue"),
    "exporter": ("nova_jobs.observability.cli", "serve /metrics and /health/jobs from the Dagster instance"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nova-jobs", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub)
    args = parser.parse_args(argv)
    # Every line redacted, also those of libraries (a failed instance read logs its traceback).
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - said redacted: a traceback may quote URLs and secret settings
        logging.getLogger("nova_jobs").error("nova-jobs %s failed:\n%s", args.command, redact_text(traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
