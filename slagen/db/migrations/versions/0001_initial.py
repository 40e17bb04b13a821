"""Initial schema: schema_version, devices, variants, kernels, trials, best.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_VERSION = 1


def upgrade() -> None:
    op.create_table(
        "slagen_schema_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "slagen_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("compute_capability", sa.String, nullable=False),
        sa.Column("sm_count", sa.Integer, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("driver_version", sa.String, nullable=False),
        sa.Column("cuda_version", sa.String, nullable=False),
        sa.Column("triton_version", sa.String, nullable=False),
        sa.Column("torch_version", sa.String, nullable=False),
        sa.UniqueConstraint("name", "compute_capability", "sm_count", "memory_bytes", "driver_version",
                            "cuda_version", "triton_version", "torch_version", name="uq_devices_fingerprint"),
    )
    op.create_table(
        "slagen_variants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("spec_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
    )
    op.create_table(
        "slagen_kernels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("variant_id", sa.Integer, sa.ForeignKey("slagen_variants.id"), nullable=False),
        sa.Column("plan_name", sa.String, nullable=False),
        sa.Column("template_hash", sa.String(128), nullable=False),
        sa.UniqueConstraint("variant_id", "plan_name", "template_hash", name="uq_kernels_identity"),
    )
    op.create_table(
        "slagen_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trial_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("kernel_id", sa.Integer, sa.ForeignKey("slagen_kernels.id"), nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("slagen_devices.id"), nullable=False),
        sa.Column("shape_bucket", sa.String, nullable=False),
        sa.Column("dtype", sa.String, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("median_ms", sa.Float),
        sa.Column("p20_ms", sa.Float),
        sa.Column("p80_ms", sa.Float),
        sa.Column("n_repeats", sa.Integer, nullable=False),
        sa.Column("max_error", sa.Float),
        sa.Column("sampler", sa.String),
        sa.Column("seed", sa.BigInteger),
        sa.Column("slagen_version", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "slagen_best",
        sa.Column("kernel_id", sa.Integer, sa.ForeignKey("slagen_kernels.id"), primary_key=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("slagen_devices.id"), primary_key=True),
        sa.Column("shape_bucket", sa.String, primary_key=True),
        sa.Column("dtype", sa.String, primary_key=True),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("slagen_trials.id"), nullable=False),
        sa.Column("median_ms", sa.Float, nullable=False),
        sa.Column("trial_uid", sa.String(64), nullable=False),
    )
    op.execute(sa.text("INSERT INTO slagen_schema_version (id, version) VALUES (1, :v)").bindparams(v=SCHEMA_VERSION))


def downgrade() -> None:
    for table in ("slagen_best", "slagen_trials", "slagen_kernels", "slagen_variants", "slagen_devices",
                  "slagen_schema_version"):
        op.drop_table(table)
