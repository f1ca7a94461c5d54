"""JSON logs, one object per line, with ``ts``, ``level``, ``msg``, ``service`` and, where they
apply, ``api`` and ``request_id`` (pass them as ``extra={"api": ..., "request_id": ...}``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_CONTEXT_FIELDS = ("api", "request_id", "attempt", "status", "error_type")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "service": self.service,
            "logger": record.name,
        }
        for name in _CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(service: str, level: str = "INFO") -> None:
    """Send every log line of this process to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become JSON lines too
    # Client libraries are chatty at INFO about reconnects they handle themselves.
    for noisy in ("aio_pika", "aiormq", "botocore", "aiobotocore", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
