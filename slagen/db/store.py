"""`TuningStore`: record trials, look up the best config, export/import JSONL, merge databases.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL for a shared store). The store keeps configs as
JSON and never interprets them; validating a config against a kernel's search space is codegen's job.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from ..identity import TuningKey
from .engine import create_store_engine, database_errors, display_url, writer_engine
from .errors import RecordError
from .jsonl import read_tuning_file, write_tuning_file
from .models import Best, Device, Kernel, Trial, Variant
from .records import (
    BestConfig,
    DeviceFingerprint,
    KernelRef,
    StoreInfo,
    TrialRecord,
    check_json_object,
    check_spec_hash,
    check_text,
)
from .schema import SCHEMA_VERSION, open_schema, read_schema_state
from .upserts import insert_trials


@dataclass(frozen=True)
class AddResult:
    """What an import or merge did: trials read, newly added, and already present (same trial_uid)."""

    source: str
    trials_read: int
    trials_added: int
    trials_duplicate: int
    variants_read: int


def _slagen_version() -> str:
    from slagen import __version__  # slagen/__init__ is light: no torch, no codegen

    return __version__


class TuningStore:
    """The tuning database at `url`.

    Opening a database slagen never wrote creates it at the current schema. One from a newer slagen is
    refused (`SchemaTooNewError`); an older one asks for `slagen db upgrade` (`SchemaOutdatedError`).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        """`create=False` (commands that only read): a missing SQLite file, or a database slagen never
        wrote, is refused instead of created."""
        self.url = url
        self.engine = create_store_engine(url, create=create)
        try:
            with database_errors(url):
                open_schema(self.engine, url, create=create)
        except BaseException:
            self.engine.dispose()
            raise
        self._writer = writer_engine(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "TuningStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TuningStore({display_url(self.url)!r})"

    # --- writing ---------------------------------------------------------------------------------

    def record_trial(
        self,
        kernel: KernelRef,
        *,
        spec: Mapping[str, Any],
        device: DeviceFingerprint,
        shape_bucket: str,
        dtype: str,
        config: Mapping[str, Any],
        status: str,
        median_ms: float | None = None,
        p20_ms: float | None = None,
        p80_ms: float | None = None,
        n_repeats: int = 0,
        max_error: float | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        host: str | None = None,
        slagen_version: str | None = None,
        created_at: datetime | None = None,
    ) -> TrialRecord:
        """Store one trial, failed or not; `best` moves to it when it is ok and faster.

        `spec` is the variant's canonical JSON object, stored the first time its hash is seen. `host`
        defaults to this machine's name, `slagen_version` to this slagen's, `created_at` to now (UTC).
        Recording a trial identical to a stored one (same trial_uid) stores nothing new.
        """
        record = TrialRecord(
            kernel=kernel, device=device, shape_bucket=shape_bucket, dtype=dtype, config=config, status=status,
            median_ms=median_ms, p20_ms=p20_ms, p80_ms=p80_ms, n_repeats=n_repeats, max_error=max_error,
            sampler=sampler, seed=seed, host=socket.gethostname() if host is None else host,
            slagen_version=slagen_version or _slagen_version(),
            created_at=created_at or datetime.now(timezone.utc),
        )
        spec = check_json_object("spec", spec)
        with Session(self._writer) as session, session.begin():
            insert_trials(session, [record], {kernel.spec_hash: spec})
        return record

    def add_records(
        self, trials: list[TrialRecord], specs: Mapping[str, Mapping[str, Any]], *, source: str
    ) -> AddResult:
        """Add already-validated trials in one transaction (deterministic order); duplicates are skipped."""
        missing = sorted({t.kernel.spec_hash for t in trials} - set(specs))
        if missing:
            raise RecordError("spec_hash", f"no spec given for variant {missing[0]!r}")
        for spec_hash, spec in sorted(specs.items()):
            check_spec_hash(spec_hash, spec, where=f"{source}: spec_hash")
        ordered = sorted(trials, key=TrialRecord.sort_key)
        with Session(self._writer) as session, session.begin():
            added, duplicates = insert_trials(session, ordered, specs)
        return AddResult(source, len(trials), len(added), len(duplicates), len(specs))

    def recompute_best(self) -> int:
        """Rebuild `best` from all ok trials (lowest median, ties to the smallest trial_uid); returns groups."""
        with Session(self._writer) as session, session.begin():
            session.execute(delete(Best))
            rows = session.execute(
                select(Trial.id, Trial.kernel_id, Trial.device_id, Trial.shape_bucket, Trial.dtype,
                       Trial.median_ms, Trial.trial_uid)
                .where(Trial.status == "ok")
                .order_by(Trial.median_ms, Trial.trial_uid)
            ).all()
            seen: set[tuple] = set()
            for row in rows:
                group = (row.kernel_id, row.device_id, row.shape_bucket, row.dtype)
                if group in seen:
                    continue
                seen.add(group)
                session.add(Best(kernel_id=row.kernel_id, device_id=row.device_id, shape_bucket=row.shape_bucket,
                                 dtype=row.dtype, trial_id=row.id, median_ms=row.median_ms, trial_uid=row.trial_uid))
        return len(seen)

    # --- reading ---------------------------------------------------------------------------------

    def best_config(
        self, kernel: KernelRef, *, device: DeviceFingerprint, shape_bucket: str, dtype: str
    ) -> BestConfig | None:
        """The fastest ok config for this kernel, device, bucket and dtype, or None if none was timed."""
        found = self.best_configs(kernel=kernel, device=device, shape_bucket=shape_bucket, dtype=dtype)
        return found[0] if found else None

    def best_for(self, key: TuningKey) -> BestConfig | None:
        """The `best` entry of one tuning key (`slagen.identity.TuningKey`), or None if none was timed."""
        return self.best_config(KernelRef(key.spec_hash, key.plan_name, key.template_hash), device=key.device,
                                shape_bucket=key.shape_bucket, dtype=key.dtype)

    def best_configs(
        self,
        *,
        kernel: KernelRef | None = None,
        spec_hash: str | None = None,
        device: DeviceFingerprint | None = None,
        device_name: str | None = None,
        shape_bucket: str | None = None,
        dtype: str | None = None,
    ) -> list[BestConfig]:
        """Every best entry matching the filters (all of them by default), in export order."""
        query = self._trial_query(kernel, spec_hash, device, device_name, shape_bucket, dtype, status=None)
        query = query.join(Best, Best.trial_id == Trial.id)
        records = self._records(query)
        return [BestConfig(dict(record.config), record) for record in records]

    def trials(
        self,
        *,
        kernel: KernelRef | None = None,
        spec_hash: str | None = None,
        device: DeviceFingerprint | None = None,
        device_name: str | None = None,
        shape_bucket: str | None = None,
        dtype: str | None = None,
        status: str | None = None,
    ) -> list[TrialRecord]:
        """Trials matching every filter given, failures included, in export order."""
        return self._records(self._trial_query(kernel, spec_hash, device, device_name, shape_bucket, dtype, status))

    def variant_specs(self) -> dict[str, dict[str, Any]]:
        """Spec JSON by spec hash, for every variant stored."""
        with Session(self.engine) as session:
            return {row.spec_hash: dict(row.spec) for row in session.execute(select(Variant.spec_hash, Variant.spec))}

    def info(self) -> StoreInfo:
        with Session(self.engine) as session:
            state = read_schema_state(session.connection())
            count = lambda model: session.execute(select(func.count()).select_from(model)).scalar_one()  # noqa: E731
            by_status = dict(session.execute(select(Trial.status, func.count()).group_by(Trial.status)).all())
            return StoreInfo(
                url=display_url(self.url), dialect=self.engine.dialect.name,
                schema_version=state.version or 0, code_schema_version=SCHEMA_VERSION, revision=state.revision or "",
                variants=count(Variant), kernels=count(Kernel), devices=count(Device), trials=count(Trial),
                trials_by_status=dict(sorted(by_status.items())), best=count(Best),
            )

    # --- exchange --------------------------------------------------------------------------------

    def export_jsonl(self, path: str | os.PathLike, *, device_name: str | None = None) -> int:
        """Write every trial (or one GPU's) as JSONL in a deterministic order; returns the trial count."""
        return write_tuning_file(path, self.variant_specs(), self.trials(device_name=device_name),
                                 schema_version=SCHEMA_VERSION)

    def import_jsonl(self, path: str | os.PathLike) -> AddResult:
        """Validate the whole file, then add its trials in one transaction; re-importing adds nothing."""
        content = read_tuning_file(path)
        return self.add_records(content.trials, content.variants, source=content.path)

    def merge(self, other_url: str) -> AddResult:
        """Add every trial of the database at `other_url`; identical trials dedupe, best is re-chosen.

        The other database must be at this code's schema version (it is only read).
        """
        other = TuningStore(other_url, create=False)  # only read: a mistyped URL must not become an empty DB
        try:
            trials, specs = other.trials(), other.variant_specs()
        finally:
            other.close()
        return self.add_records(trials, specs, source=display_url(other_url))

    # --- internals -------------------------------------------------------------------------------

    def _trial_query(
        self, kernel: KernelRef | None, spec_hash: str | None, device: DeviceFingerprint | None,
        device_name: str | None, shape_bucket: str | None, dtype: str | None, status: str | None,
    ) -> Select:
        query = select(Trial, Kernel, Variant.spec_hash, Device).join(Kernel, Trial.kernel_id == Kernel.id)
        query = query.join(Variant, Kernel.variant_id == Variant.id).join(Device, Trial.device_id == Device.id)
        if kernel is not None:
            query = query.where(Variant.spec_hash == kernel.spec_hash, Kernel.plan_name == kernel.plan_name,
                                Kernel.template_hash == kernel.template_hash)
        if spec_hash is not None:
            query = query.where(Variant.spec_hash == check_text("spec_hash", spec_hash))
        if device is not None:
            query = query.where(*(getattr(Device, name) == value for name, value in device.to_dict().items()))
        if device_name is not None:
            query = query.where(Device.name == device_name)
        if shape_bucket is not None:
            query = query.where(Trial.shape_bucket == shape_bucket)
        if dtype is not None:
            query = query.where(Trial.dtype == dtype)
        if status is not None:
            query = query.where(Trial.status == status)
        return query

    def _records(self, query: Select) -> list[TrialRecord]:
        with Session(self.engine) as session:
            records = [_to_record(trial, kernel, spec_hash, device) for trial, kernel, spec_hash, device
                       in session.execute(query)]
        return sorted(records, key=TrialRecord.sort_key)


def _to_record(trial: Trial, kernel: Kernel, spec_hash: str, device: Device) -> TrialRecord:
    """A stored row as a record. Its uid is the one stored: identity is fixed when a trial is first recorded
    (a downgrade that drops a column must not make rows unreadable); imports are where uids are checked."""
    fingerprint = DeviceFingerprint(**{name: getattr(device, name) for name in DeviceFingerprint.FIELDS})
    record = TrialRecord(
        kernel=KernelRef(spec_hash, kernel.plan_name, kernel.template_hash), device=fingerprint,
        shape_bucket=trial.shape_bucket, dtype=trial.dtype, config=trial.config, status=trial.status,
        median_ms=trial.median_ms, p20_ms=trial.p20_ms, p80_ms=trial.p80_ms, n_repeats=trial.n_repeats,
        max_error=trial.max_error, sampler=trial.sampler, seed=trial.seed, host=trial.host,
        slagen_version=trial.slagen_version, created_at=trial.created_at,
    )
    object.__setattr__(record, "trial_uid", trial.trial_uid)
    return record
