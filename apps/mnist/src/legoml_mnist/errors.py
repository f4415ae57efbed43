"""Errors of the MNIST app; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["AppError"]


class AppError(Exception):
    """A problem the user can fix: the message names it and the fix."""
