"""The tuning database: trials, best configs, JSONL exchange and merges over any SQLAlchemy URL.

Knows nothing of kernels: it stores JSON configs and numbers. `TuningStore` is the entry point;
`commands` holds the `slagen db ...` functions.
"""

from .errors import (
    JsonlFormatError,
    RecordError,
    SchemaCorruptError,
    SchemaOutdatedError,
    SchemaTooNewError,
    TuningDBError,
)
from .jsonl import FORMAT_NAME, FORMAT_VERSION
from .records import STATUSES, BestConfig, DeviceFingerprint, KernelRef, StoreInfo, TrialRecord
from .schema import SCHEMA_VERSION, UpgradeResult, upgrade_schema
from .store import AddResult, TuningStore

__all__ = [
    "AddResult", "BestConfig", "DeviceFingerprint", "FORMAT_NAME", "FORMAT_VERSION",
    "JsonlFormatError", "KernelRef", "RecordError", "SCHEMA_VERSION", "STATUSES", "SchemaCorruptError",
    "SchemaOutdatedError", "SchemaTooNewError", "StoreInfo", "TrialRecord", "TuningDBError", "TuningStore",
    "UpgradeResult", "upgrade_schema",
]
