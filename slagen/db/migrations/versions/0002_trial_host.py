"""Trials record the host that timed them; an index serves best-config lookups by group.

Revision ID: 0002_trial_host
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_trial_host"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

SCHEMA_VERSION = 2


def upgrade() -> None:
    op.add_column("slagen_trials", sa.Column("host", sa.String, nullable=True))  # null for older trials
    op.create_index("ix_slagen_trials_group", "slagen_trials", ["kernel_id", "device_id", "shape_bucket", "dtype"])
    op.execute(sa.text("UPDATE slagen_schema_version SET version = :v").bindparams(v=SCHEMA_VERSION))


def downgrade() -> None:
    op.drop_index("ix_slagen_trials_group", table_name="slagen_trials")
    with op.batch_alter_table("slagen_trials") as batch:
        batch.drop_column("host")
    op.execute(sa.text("UPDATE slagen_schema_version SET version = :v").bindparams(v=SCHEMA_VERSION - 1))
