"""Alembic's revision is the schema's one mark: the `slagen_schema_version` table goes.

Revision ID: 0003_alembic_revision_only
Revises: 0002_trial_host
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_alembic_revision_only"
down_revision = "0002_trial_host"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("slagen_schema_version")


def downgrade() -> None:
    # the table as revisions 0001 and 0002 kept it, at version 2
    op.create_table(
        "slagen_schema_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.execute(sa.text("INSERT INTO slagen_schema_version (id, version) VALUES (1, 2)"))
