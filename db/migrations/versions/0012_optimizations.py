"""optimizations: strategy optimisation results (the Optuna studies behind them are Optuna's own tables)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "optimizations",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("interval", sa.String(length=4), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("strategy_kind", sa.String(length=8), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=True),
        sa.Column("strategy_version", sa.Integer(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
    )
    op.create_index("ix_optimizations_job_id", "optimizations", ["job_id"])
    op.create_index("ix_optimizations_created_at", "optimizations", ["created_at"])
    op.create_index("ix_optimizations_symbol", "optimizations", ["symbol"])
    op.create_index("ix_optimizations_strategy_id", "optimizations", ["strategy_id"])


def downgrade() -> None:
    op.drop_table("optimizations")
