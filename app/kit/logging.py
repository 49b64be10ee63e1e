"""Structured logs with the request id on every line, and secrets scrubbed as a last line of defence."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import TextIO

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Code never logs keys on purpose; this catches the accident (an exception text quoting a header).
_SECRET_PATTERN = re.compile(r"(tg-|sk-)[A-Za-z0-9_\-]{8,}")
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def scrub(text: str) -> str:
    if "tg-" not in text and "sk-" not in text:
        return text  # nearly every line: a substring check is far cheaper than the regex scan
    return _SECRET_PATTERN.sub(lambda m: m.group(1) + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = request_id_var.get()
        base = super().format(record)
        return scrub(f"{base} request_id={rid}" if rid else base)


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """Writes lines without a flush (a syscall) per line: at a thousand requests a second the
    per-request line was a tenth of the CPU. Warnings and errors are flushed at once; the rest
    within ``flush_logs``'s period (the server runs it every second)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)


async def flush_logs() -> None:
    """A coroutine so the lifespan's periodic runner can call it."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def _buffered_stderr() -> TextIO:
    """stderr is line-buffered (a write per line); this is a block-buffered file on a copy of its
    descriptor, so closing it never closes stderr itself."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return sys.stderr  # stderr replaced by something without a descriptor (a test runner's capture)
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=64 * 1024)


def configure_logging(level: str, as_json: bool) -> None:
    # What no formatter here prints is not collected either (the logging HOWTO's "Optimization"):
    # the caller's file and line (a stack walk per record), thread, process and multiprocessing names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStreamHandler(_buffered_stderr())
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Uvicorn's access log would duplicate our own per-request line without the request id.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every upstream request at INFO; our request line already covers it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
