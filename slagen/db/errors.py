"""Errors the tuning database raises; each message says what is wrong and what to do."""

from __future__ import annotations


class TuningDBError(Exception):
    """Base class: anything the tuning store refuses."""


class RecordError(TuningDBError, ValueError):
    """A trial, device or variant field holds a value the store does not accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConnectionFailedError(TuningDBError):
    """The URL is not a database URL, or the database cannot be reached."""


class SchemaTooNewError(TuningDBError):
    """The database was written by a newer slagen than this one."""


class SchemaOutdatedError(TuningDBError):
    """The database uses an older schema; `slagen db upgrade` brings it to this version."""


class SchemaCorruptError(TuningDBError):
    """The database has some of slagen's tables but not their version records."""


class JsonlFormatError(TuningDBError, ValueError):
    """A JSONL tuning file is malformed; the message names the file and the line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
