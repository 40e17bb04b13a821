"""Writes that stay correct with several writers at once: get-or-create rows, dedupe trials, improve best.

Trials are only ever added, so `best` only ever improves: each write offers a candidate and one
conditional upsert keeps it only when it beats the current best by (median, trial_uid). On SQLite and
PostgreSQL that comparison happens inside the database, atomically; other dialects fall back to a
read-then-write inside the transaction.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from .errors import RecordError
from .models import Best, Device, Kernel, Trial, Variant
from .records import DeviceFingerprint, KernelRef, TrialRecord


def _dialect_insert(session: Session, model: type):
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)
    return None


def _insert_ignoring_duplicates(session: Session, model: type, values: Mapping[str, Any], keys: list[str]) -> None:
    stmt = _dialect_insert(session, model)
    if stmt is not None:
        session.execute(stmt.values(**values).on_conflict_do_nothing(index_elements=keys))
        return
    existing = select(model).filter_by(**{key: values[key] for key in keys})
    if session.execute(existing).first() is None:
        session.execute(insert(model).values(**values))


def _id_of(session: Session, model: type, values: Mapping[str, Any], keys: list[str]) -> int:
    lookup = select(model.id).filter_by(**{key: values[key] for key in keys})
    found = session.execute(lookup).scalar()
    if found is None:
        _insert_ignoring_duplicates(session, model, values, keys)
        found = session.execute(lookup).scalar_one()
    return found


def _without_description(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key != "description"}


class RowIds:
    """Ids of devices, variants and kernels within one transaction, created on first use."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._devices: dict[DeviceFingerprint, int] = {}
        self._variants: dict[str, int] = {}
        self._kernels: dict[KernelRef, int] = {}

    def device(self, device: DeviceFingerprint) -> int:
        if device not in self._devices:
            values = device.to_dict()
            self._devices[device] = _id_of(self.session, Device, values, list(values))
        return self._devices[device]

    def variant(self, spec_hash: str, spec: Mapping[str, Any] | None) -> int:
        if spec_hash not in self._variants:
            lookup = select(Variant.id, Variant.spec).where(Variant.spec_hash == spec_hash)
            row = self.session.execute(lookup).first()
            found = None if row is None else row.id
            if row is not None and spec is not None and _without_description(row.spec) != _without_description(spec):
                raise RecordError("spec", f"variant {spec_hash!r}: the database holds a different spec under "
                                          "this hash; refusing to mix the trials of two specs")
            if found is None:
                if spec is None:
                    raise KeyError(spec_hash)
                found = _id_of(self.session, Variant, {"spec_hash": spec_hash, "spec": dict(spec)}, ["spec_hash"])
            self._variants[spec_hash] = found
        return self._variants[spec_hash]

    def kernel(self, kernel: KernelRef, specs: Mapping[str, Mapping[str, Any]]) -> int:
        if kernel not in self._kernels:
            variant_id = self.variant(kernel.spec_hash, specs.get(kernel.spec_hash))
            values = {"variant_id": variant_id, "plan_name": kernel.plan_name, "template_hash": kernel.template_hash}
            self._kernels[kernel] = _id_of(self.session, Kernel, values, list(values))
        return self._kernels[kernel]


_CHUNK = 500  # rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def insert_trials(
    session: Session, records: Iterable[TrialRecord], specs: Mapping[str, Mapping[str, Any]]
) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """Insert trials whose uid is new, in bulk; returns (added, duplicates) and offers the added to `best`."""
    ids = RowIds(session)
    records = list(records)
    stored: set[str] = set()
    for chunk in _chunks([r.trial_uid for r in records]):
        stored.update(session.execute(select(Trial.trial_uid).where(Trial.trial_uid.in_(chunk))).scalars())
    added: list[TrialRecord] = []
    duplicates: list[TrialRecord] = []
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.trial_uid in stored:
            duplicates.append(record)
            continue
        stored.add(record.trial_uid)
        added.append(record)
        rows.append(_trial_values(record, ids, specs))
    for chunk in _chunks(rows):
        stmt = _dialect_insert(session, Trial)
        # A writer racing us may store the same uid between our check and this insert: then it is kept once.
        stmt = insert(Trial) if stmt is None else stmt.on_conflict_do_nothing(index_elements=["trial_uid"])
        session.execute(stmt, chunk)
    _offer_added_to_best(session, rows, added)
    return added, duplicates


def _offer_added_to_best(session: Session, rows: list[dict[str, Any]], added: list[TrialRecord]) -> None:
    """Offer each group's fastest new ok trial (ties to the smallest uid): one upsert per group."""
    fastest: dict[tuple, tuple[dict[str, Any], TrialRecord]] = {}
    for row, record in zip(rows, added):
        if record.status != "ok":
            continue
        group = (row["kernel_id"], row["device_id"], record.shape_bucket, record.dtype)
        if group not in fastest or (record.median_ms, record.trial_uid) < (
                fastest[group][1].median_ms, fastest[group][1].trial_uid):
            fastest[group] = (row, record)
    trial_ids: dict[str, int] = {}
    for chunk in _chunks([record.trial_uid for _, record in fastest.values()]):
        trial_ids.update(session.execute(select(Trial.trial_uid, Trial.id).where(Trial.trial_uid.in_(chunk))).all())
    for row, record in fastest.values():
        offer_best(session, row, trial_ids[record.trial_uid], record)


def _trial_values(record: TrialRecord, ids: RowIds, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "trial_uid": record.trial_uid,
        "kernel_id": ids.kernel(record.kernel, specs),
        "device_id": ids.device(record.device),
        "shape_bucket": record.shape_bucket,
        "dtype": record.dtype,
        "config": dict(record.config),
        "status": record.status,
        "median_ms": record.median_ms,
        "p20_ms": record.p20_ms,
        "p80_ms": record.p80_ms,
        "n_repeats": record.n_repeats,
        "max_error": record.max_error,
        "sampler": record.sampler,
        "seed": record.seed,
        "host": record.host,
        "slagen_version": record.slagen_version,
        "created_at": record.created_at,
    }


def offer_best(session: Session, trial_values: Mapping[str, Any], trial_id: int, record: TrialRecord) -> None:
    """Make this ok trial its group's best if it beats the current one by (median, trial_uid)."""
    row = {
        "kernel_id": trial_values["kernel_id"],
        "device_id": trial_values["device_id"],
        "shape_bucket": record.shape_bucket,
        "dtype": record.dtype,
        "trial_id": trial_id,
        "median_ms": record.median_ms,
        "trial_uid": record.trial_uid,
    }
    group_keys = ["kernel_id", "device_id", "shape_bucket", "dtype"]
    stmt = _dialect_insert(session, Best)
    if stmt is not None:
        stmt = stmt.values(**row)
        better = or_(
            stmt.excluded.median_ms < Best.median_ms,
            and_(stmt.excluded.median_ms == Best.median_ms, stmt.excluded.trial_uid < Best.trial_uid),
        )
        session.execute(stmt.on_conflict_do_update(
            index_elements=group_keys,
            set_={"trial_id": stmt.excluded.trial_id, "median_ms": stmt.excluded.median_ms,
                  "trial_uid": stmt.excluded.trial_uid},
            where=better,
        ))
        return
    current = session.get(Best, tuple(row[key] for key in group_keys))
    if current is None:
        session.add(Best(**row))
    elif (record.median_ms, record.trial_uid) < (current.median_ms, current.trial_uid):
        current.trial_id, current.median_ms, current.trial_uid = trial_id, record.median_ms, record.trial_uid
    session.flush()
