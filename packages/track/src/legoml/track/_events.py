"""logs/events.jsonl: structlog-rendered JSON lines, one complete line per event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from legoml.track._lines import LineAppender

__all__ = ["EventLog"]


class _LineSink:
    """A structlog "logger" whose every method appends the rendered line to a file."""

    def __init__(self, appender: LineAppender) -> None:
        self._appender = appender

    def msg(self, message: str) -> None:
        self._appender.write_lines([message])

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class EventLog:
    """JSON-lines event log with ISO timestamps and levels, written through structlog."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._appender = LineAppender(path)
        self._logger: Any = structlog.wrap_logger(
            _LineSink(self._appender),
            processors=[
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(default=repr),
            ],
            wrapper_class=structlog.BoundLogger,
        )

    def write(self, level: str, event: str, **fields: Any) -> None:
        """Append ``{"event": ..., "level": ..., "timestamp": ..., **fields}`` as one line."""
        fields.pop("timestamp", None)
        fields.setdefault("level", level)
        self._logger.msg(event, **fields)

    def close(self) -> None:
        self._appender.close()
