"""structlog set-up for the command line: readable lines on stderr, stdout kept for results."""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str | None = None) -> None:
    """Send structlog events to stderr at ``level`` (default ``$LEGOML_LOG_LEVEL`` or info)."""
    name = (level or os.environ.get("LEGOML_LOG_LEVEL") or "info").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, name, logging.INFO)),
        # the stderr of the moment, not the one at configuration (tests swap and close it)
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
