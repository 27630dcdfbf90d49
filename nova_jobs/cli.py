"""`nova-jobs`: the operator's command line. Each domain owns its subcommands; this module only
dispatches, importing a domain when its command runs (so `nova-jobs dlq` never loads chdb).
`dev` and `load-demo` live in the development package `nova_jobs_dev`, which the runtime
install (and the image) leaves out."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from nova_jobs.lib.redact import RedactingFormatter, redact_text
from nova_jobs.lib.settings import SettingError

DEV_PACKAGE = "nova_jobs_dev"
DEV_INSTALL_HINT = "pip install -e '.[dev]' in a checkout of the repository (what `make` does)"

# subcommand -> (module, help). Each module provides `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = {
    "dev": ("nova_jobs_dev.devstack", "start the local stack and `dagster dev` (what `make dev` runs)"),
    "load-demo": ("nova_jobs_dev.demo.cli", "create the tables and load the generated demo data set"),
    "dlq": ("nova_jobs.deadletter.cli", "list and replay the jobs-dlq dead-letter queue"),
    "exporter": ("nova_jobs.observability.cli", "serve /metrics and /health/jobs from the Dagster instance"),
}


def configure_logging(verbose: bool) -> None:
    """Quiet unless asked: our own INFO lines (a person reads them), warnings from libraries.
    kafka-python logs connection chatter at INFO and a cancelled metadata refresh at ERROR on a
    call that succeeded; a real Kafka failure reaches the user as the command's own error."""
    # Every line redacted, also those of libraries (a failed instance read logs its traceback).
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    for ours in ("nova_jobs", DEV_PACKAGE):
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nova-jobs", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    # -v may come after the subcommand too (`nova-jobs dlq list -v`); no subcommand uses it otherwise.
    verbose = any(arg in ("-v", "--verbose") for arg in argv)
    argv = [arg for arg in argv if arg not in ("-v", "--verbose")]
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            try:
                modules[name] = importlib.import_module(module_name)
            except ModuleNotFoundError as missing:
                if not module_name.startswith(f"{DEV_PACKAGE}."):
                    raise
                # The runtime install has no local stack: say what to install, not a traceback.
                print(f"nova-jobs {name}: error: needs the development package and its dependencies "
                      f"(missing module {missing.name!r}): {DEV_INSTALL_HINT}", file=sys.stderr)
                return 2
            modules[name].add_arguments(sub)
    args = parser.parse_args(argv)
    args.verbose = verbose
    configure_logging(verbose)
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SettingError as error:
        # Bad usage or configuration: one line and exit 2, like argparse's own errors.
        print(f"nova-jobs {args.command}: error: {redact_text(str(error))}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a server down, a refused call: one line, not a traceback
        if args.verbose:
            # Redacted: a traceback may quote URLs and secret settings.
            logging.getLogger("nova_jobs").error("nova-jobs %s failed:\n%s", args.command,
                                                 redact_text(traceback.format_exc()))
            return 1
        text = redact_text(str(error)).strip()
        name = type(error).__name__
        text = text if text.startswith(name) else f"{name}: {text}"
        print(f"nova-jobs {args.command}: failed: {text} (-v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
