"""Logging for the runner pod: one line per record on stderr, credentials never printed.

Library errors can echo configuration back (an endpoint, a bucket); a filter replaces
the values of the credential variables the pod receives from its Secret, so neither
the logs nor the termination message can leak them even if a library quotes one.
"""

from __future__ import annotations

import logging
import os
import sys

#: Environment variables whose values must never appear in output.
SECRET_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
#: Environment variable naming the log level (default INFO).
LOG_LEVEL_ENV = "KUBEGYM_LOG_LEVEL"
#: One line per record, on stderr and in the copy kept in S3 (:mod:`kubegym_runner.runlog`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """``text`` with the values of :data:`SECRET_ENV_VARS` replaced by ``***``."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """Formats each record's message and redacts it before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging() -> None:
    """Configure the root logger for the pod (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get(LOG_LEVEL_ENV, "INFO").upper())
    logging.captureWarnings(True)  # library warnings get the same format and redaction
