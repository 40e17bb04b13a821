"""SQLAlchemy models of the tuning database at the head schema.

The tables are created and changed only by the alembic revisions under `migrations/versions/`; these
models describe the head and a test checks the two agree. JSON columns, never pickle.
Every table is prefixed `slagen_`: optuna may keep its own tables (among them `trials`) in the same database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..identity import DeviceFingerprint


class Base(DeclarativeBase):
    pass


DEVICE_FINGERPRINT_COLUMNS = DeviceFingerprint.FIELDS  # one row per slagen.identity fingerprint


class Device(Base):
    """A GPU and its software stack; another driver or triton version is another device."""

    __tablename__ = "slagen_devices"
    __table_args__ = (UniqueConstraint(*DEVICE_FINGERPRINT_COLUMNS, name="uq_devices_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    compute_capability: Mapped[str] = mapped_column(String, nullable=False)
    sm_count: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    driver_version: Mapped[str] = mapped_column(String, nullable=False)
    cuda_version: Mapped[str] = mapped_column(String, nullable=False)
    triton_version: Mapped[str] = mapped_column(String, nullable=False)
    torch_version: Mapped[str] = mapped_column(String, nullable=False)


class Variant(Base):
    """A variant spec, by hash, with its canonical JSON (kept so a DB explains itself)."""

    __tablename__ = "slagen_variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_hash: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class Kernel(Base):
    """One plan of one variant rendered from one template version."""

    __tablename__ = "slagen_kernels"
    __table_args__ = (UniqueConstraint("variant_id", "plan_name", "template_hash", name="uq_kernels_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("slagen_variants.id"), nullable=False)
    plan_name: Mapped[str] = mapped_column(String, nullable=False)
    template_hash: Mapped[str] = mapped_column(String(128), nullable=False)

    variant: Mapped[Variant] = relationship()


class Trial(Base):
    """One candidate config timed (or failed) on one device for one shape bucket and dtype."""

    __tablename__ = "slagen_trials"
    __table_args__ = (Index("ix_slagen_trials_group", "kernel_id", "device_id", "shape_bucket", "dtype"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_uid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("slagen_kernels.id"), nullable=False)
    device_id: Mapped[int] = mapped_column(ForeignKey("slagen_devices.id"), nullable=False)
    shape_bucket: Mapped[str] = mapped_column(String, nullable=False)
    dtype: Mapped[str] = mapped_column(String, nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    median_ms: Mapped[float | None] = mapped_column(Float)
    p20_ms: Mapped[float | None] = mapped_column(Float)
    p80_ms: Mapped[float | None] = mapped_column(Float)
    n_repeats: Mapped[int] = mapped_column(Integer, nullable=False)
    max_error: Mapped[float | None] = mapped_column(Float)
    sampler: Mapped[str | None] = mapped_column(String)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str | None] = mapped_column(String)  # added in schema version 2
    slagen_version: Mapped[str] = mapped_column(String, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)  # naive UTC

    kernel: Mapped[Kernel] = relationship()
    device: Mapped[Device] = relationship()


class Best(Base):
    """The winning ok trial per (kernel, device, bucket, dtype).

    `median_ms` and `trial_uid` are copied from the trial so that one conditional upsert can compare a
    new trial with the current best atomically, with several writers at once.
    """

    __tablename__ = "slagen_best"

    kernel_id: Mapped[int] = mapped_column(ForeignKey("slagen_kernels.id"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("slagen_devices.id"), primary_key=True)
    shape_bucket: Mapped[str] = mapped_column(String, primary_key=True)
    dtype: Mapped[str] = mapped_column(String, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("slagen_trials.id"), nullable=False)
    median_ms: Mapped[float] = mapped_column(Float, nullable=False)
    trial_uid: Mapped[str] = mapped_column(String(64), nullable=False)

    trial: Mapped[Trial] = relationship()
