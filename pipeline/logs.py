"""Logging for the long-running service: every line about a job carries its id.

``job_log(job_id)`` gives a logger adapter that stamps ``job=<id>`` on its
records; ``setup(fmt)`` installs a text or JSON (one object per line) handler on
stderr. Worker processes call ``setup`` too, so their lines look the same. Neither kind
can be forged by a file name: a text record is one line with controls shown as escapes
(its traceback indented below it), a JSON record is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback

from hushdrop.pipeline.text import terminal_text

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
    """One record: a line that starts with its time, then its traceback (if any) indented.

    Everything that comes from outside (a file name in the message, an exception's text)
    has its control and bidi characters shown as escapes (:func:`pipeline.text.terminal_text`),
    so an exception's message stays on its one line of the traceback, and every line of a
    traceback is indented: a line at the left margin that starts with a time is always a
    record's own first line, whatever a name or an error message holds.
    """

    CONTINUATION = "    "

    def formatException(self, ei) -> str:
        te = traceback.TracebackException(*ei)
        messages = set(_exception_lines(te))
        lines: list[str] = []
        for chunk in te.format():
            if chunk in messages:  # "OSError: <message>", whatever the message holds, on one line
                lines.append(terminal_text(chunk.removesuffix("\n")))
            else:  # a frame: its file and source lines
                lines += [terminal_text(line) for line in chunk.removesuffix("\n").split("\n")]
        return "\n".join(lines)

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        job = getattr(record, "job", None)
        where = f" job={terminal_text(job)}" if job is not None else ""
        process = record.processName if record.processName != "MainProcess" else "watch"
        line = f"{stamp} {record.levelname:<7} [{terminal_text(process)}]{where} {terminal_text(record.getMessage())}"
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            line += "".join(f"\n{self.CONTINUATION}{terminal_text(part)}" for part in detail.split("\n"))
        return line


def _exception_lines(te: traceback.TracebackException, seen: set[int] | None = None):
    """Every "Type: message" (and note) line ``te.format()`` writes, for its whole chain."""
    seen = set() if seen is None else seen
    if id(te) in seen:
        return
    seen.add(id(te))
    yield from te.format_exception_only()
    for linked in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if linked is not None:
            yield from _exception_lines(linked, seen)


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
