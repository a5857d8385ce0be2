"""Structured logging set-up shared by the services (structlog; JSON or console)."""

from __future__ import annotations

import logging
import sys

import structlog


def _stderr_logger(*_args) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog once at a service's edge.

    Args:
        level: log level name.
        fmt: ``"json"`` (containers), ``"console"`` (terminals) or ``"auto"``
            (console when stderr is a TTY, else JSON).
    """
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # sys.stderr is looked up at every log call, not captured once: a test runner (or
        # a daemon) may replace it after configuration.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
