"""jobs are claimed from the database by any process: owner, heartbeat, cancel flag, attempts, one live
job per exclusive key, and who changed a job last (for live streams in every process)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_LIVE = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("exclusive_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(length=64), nullable=True))
    op.create_index("ix_jobs_updated_at", "jobs", ["updated_at"])
    op.create_index(
        "uq_jobs_exclusive_live",
        "jobs",
        ["exclusive_key"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_exclusive_live", table_name="jobs")
    op.drop_index("ix_jobs_updated_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "updated_by", "updated_at", "exclusive_key", "attempts", "cancel_requested", "heartbeat_at", "owner"
        ):
            batch.drop_column(column)
