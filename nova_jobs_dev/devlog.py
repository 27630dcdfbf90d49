"""What `make dev` shows in the terminal: `dagster dev`'s whole output goes to a log file, and the
terminal gets the lines a person reads.

Every run event reaches stderr twice (Dagster's console logger and the correlation handler from
dagster.yaml); the correlation line is the one kept, as it names the id a failure keeps through
its replays. Python warnings (BetaWarning, the `dg dev` supersession notice), the note about a
dagster.yaml in the current folder and the daemons' routine INFO lines stay in the file.
"""

from __future__ import annotations

import re
import threading
from typing import IO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
CORRELATION = re.compile(r"\[correlation_id=[^\]]*\] (?P<level>[A-Z]+) ")
LOGGED = re.compile(r" - (?P<name>[\w.\-]+) - (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) - (?P<rest>.*)$")
# Dagster's console logger: `... - dagster - LEVEL - job - run id - ...`, the twin of a correlation line.
RUN_CONSOLE = re.compile(r"^\S+ - [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12} - ")
PY_WARNING = re.compile(r"\.py:\d+: \w*Warning: ")
NOISE = (
    "Found a dagster instance configuration value (dagster.yaml) in the current folder",
    "ignoring older events",  # the daemon's first start on a new instance
    "so not trying to catch up",  # the scheduler after a restart: missed ticks are not run
)
SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL"}


class TerminalFilter:
    """Decides line by line; a line without a timestamp (a traceback, a warning's source line)
    follows the decision about the line it continues."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.showing = True

    def _decide(self, line: str) -> bool:
        if PY_WARNING.search(line) or any(text in line for text in NOISE):
            return False
        match = CORRELATION.search(line)
        if match:
            # Run events: one line each; DEBUG ones (step started, output handled...) with -v.
            return self.verbose or match["level"] != "DEBUG"
        match = LOGGED.search(line)
        if match:
            if RUN_CONSOLE.match(match["rest"]):
                return False
            return self.verbose or match["level"] in SHOWN_LEVELS
        return True

    def shows(self, line: str) -> bool:
        plain = ANSI.sub("", line)
        if TIMESTAMP.match(plain) or PY_WARNING.search(plain):
            self.showing = self._decide(plain)
        return self.showing


def pump(source: IO[bytes], log_file: IO[bytes], terminal: IO[str], verbose: bool = False,
         mute: threading.Event | None = None) -> None:
    """Copy `source` into `log_file` whole and onto `terminal` filtered, until it closes. Once
    `mute` is set (Ctrl-C), the terminal gets nothing more: the daemons' complaints about code
    servers going away while they stop are expected and stay in the file."""
    keep = TerminalFilter(verbose)
    for raw in iter(source.readline, b""):
        log_file.write(raw)
        log_file.flush()
        line = raw.decode("utf-8", "replace")
        if keep.shows(line) and not (mute is not None and mute.is_set()):
            terminal.write(line)
            terminal.flush()
