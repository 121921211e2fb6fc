"""backtests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('backtests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('interval', sa.String(length=4), nullable=False),
    sa.Column('strategy', sa.String(length=100), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('data_source', sa.String(length=16), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=False),
    sa.Column('end_time', sa.BigInteger(), nullable=False),
    sa.Column('n_bars', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('trades', sa.JSON(), nullable=False),
    sa.Column('open_trade', sa.JSON(), nullable=True),
    sa.Column('equity_blob', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backtests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backtests_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_backtests_strategy'), ['strategy'], unique=False)
        batch_op.create_index(batch_op.f('ix_backtests_symbol'), ['symbol'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('backtests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backtests_symbol'))
        batch_op.drop_index(batch_op.f('ix_backtests_strategy'))
        batch_op.drop_index(batch_op.f('ix_backtests_created_at'))

    op.drop_table('backtests')

