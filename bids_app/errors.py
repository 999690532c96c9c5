"""Exceptions carrying BIDS-Apps (BEP027) exit codes.

Every module raises these instead of ``SystemExit``; only :mod:`bids_app.cli` turns
them into a process exit status and a one-line message.
"""

from __future__ import annotations

EXIT_VALIDATION = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NO_DATA = 18
EXIT_USAGE = 64
EXIT_BAD_DATA = 65
EXIT_MISSING_INPUT = 66
EXIT_CANNOT_CREATE = 73


class AlsmriError(Exception):
    """Base class: a user-facing failure with a BIDS-Apps exit code."""

    exit_code: int = 1


class ValidationFailed(AlsmriError):
    """The input dataset failed BIDS validation (16)."""

    exit_code = EXIT_VALIDATION


class UnknownAnalysisLevel(AlsmriError):
    """The analysis level is not one the app knows (17)."""

    exit_code = EXIT_UNKNOWN_LEVEL


class NoDataError(AlsmriError):
    """Labels or filters matched no data (18)."""

    exit_code = EXIT_NO_DATA


class UsageError(AlsmriError):
    """The command line or a configuration file is malformed (64)."""

    exit_code = EXIT_USAGE


class BadDataError(AlsmriError):
    """An input file is unreadable or inconsistent (65)."""

    exit_code = EXIT_BAD_DATA


class MissingInputError(AlsmriError):
    """A required input does not exist (66)."""

    exit_code = EXIT_MISSING_INPUT


class CannotCreateOutput(AlsmriError):
    """An output location cannot be created or written (73)."""

    exit_code = EXIT_CANNOT_CREATE
