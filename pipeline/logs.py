"""Logging for the long-running service: every line about a job carries its id.

``job_log(job_id)`` gives a logger adapter that stamps ``job=<id>`` on its
records; ``setup(fmt)`` installs a text or JSON (one object per line) handler on
stderr. Worker processes call ``setup`` too, so their lines look the same.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LOGGER = "hushdrop"


class _JobAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        kwargs.setdefault("extra", {})["job"] = self.extra["job"]
        return msg, kwargs


def job_log(job_id: int | None, name: str = LOGGER) -> logging.LoggerAdapter:
    return _JobAdapter(logging.getLogger(name), {"job": job_id})


def log(name: str = LOGGER) -> logging.Logger:
    return logging.getLogger(name)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        job = getattr(record, "job", None)
        where = f" job={job}" if job is not None else ""
        line = f"{stamp} {record.levelname:<7} [{record.processName if record.processName != 'MainProcess' else 'watch'}]{where} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "process": record.processName,
            "pid": os.getpid(),
            "job": getattr(record, "job", None),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
