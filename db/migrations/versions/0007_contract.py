"""trade_orders.candle_open_time (the candle a decision's order was decided on); backtest_runs name
their strategy by kind, id and version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trade_orders') as batch:
        batch.add_column(sa.Column('candle_open_time', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('backtests') as batch:
        batch.add_column(sa.Column('strategy_kind', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('strategy_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('strategy_version', sa.Integer(), nullable=True))
        batch.create_index('ix_backtests_strategy_id', ['strategy_id'])


def downgrade() -> None:
    with op.batch_alter_table('backtests') as batch:
        batch.drop_index('ix_backtests_strategy_id')
        batch.drop_column('strategy_version')
        batch.drop_column('strategy_id')
        batch.drop_column('strategy_kind')
    with op.batch_alter_table('trade_orders') as batch:
        batch.drop_column('candle_open_time')
