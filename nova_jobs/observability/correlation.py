"""Run logs that carry a correlation id on every line.

Installed for every run of an instance by `python_logs.dagster_handler_config` in dagster.yaml
(the handler factory `correlation_handler`); a run whose run config selects
`loggers: {console: {}}` uses `nova_console_logger` instead of Dagster's default console logger.

The id is `lib.tags.correlation_id`: a replay's `nova/correlation_id` tag, else the root run of
a retried or re-executed run, else the run id: the same id the DLQ message carries, so one failure can be
followed from the UI through every replay to its message on `jobs-dlq`.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg

from nova_jobs.lib.redact import redact_text
from nova_jobs.lib.tags import correlation_id

LINE_FORMAT = "%(asctime)s [correlation_id=%(correlation_id)s] %(levelname)s %(job_name)s %(step_key)s - %(message)s"


class CorrelationFilter(logging.Filter):
    """Adds correlation_id, job_name and step_key to a record from its Dagster metadata."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        if not getattr(record, "correlation_id", None):
            record.correlation_id = correlation_id(meta.get("job_tags"), meta.get("run_id"))
        record.job_name = meta.get("job_name") or "-"
        record.step_key = meta.get("step_key") or "-"
        return True


class CorrelationFormatter(logging.Formatter):
    """Dagster's event line with the error it carries, redacted: stderr reaches log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        # Dagster puts the run id, job and step in front of the message; the prefix says it now.
        meta = getattr(record, "dagster_meta", None) or {}
        original = meta.get("orig_message")
        if original is not None:
            event = meta.get("dagster_event")
            kind = f"{event.event_type_value} " if event is not None else ""
            error = getattr(getattr(event, "event_specific_data", None), "error", None)
            detail = f": {error.message.strip()}" if getattr(error, "message", None) else ""
            record = logging.makeLogRecord({**record.__dict__, "msg": f"{kind}{original}{detail}", "args": ()})
        return redact_text(super().format(record))


def correlation_handler(stream=None, level: str | int = logging.DEBUG) -> logging.Handler:
    """A handler for dagster.yaml: `handlers: {correlation: {"()": this function}}`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(CorrelationFormatter(LINE_FORMAT))
    return handler


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, is_required=False, default_value="DEBUG"),
        "name": dg.Field(str, is_required=False, default_value="nova_jobs"),
    },
    description="Console logs with [correlation_id=...] on every line (the run id, or the id kept across replays).",
)
def nova_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = init_context.logger_config["log_level"].upper()
    logger = logging.Logger(init_context.logger_config["name"], level=level)
    logger.addHandler(correlation_handler())
    return logger
