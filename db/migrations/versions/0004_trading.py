"""trading: accounts, balances, positions, orders (paper and live) and the kill switch

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trade_orders',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('client_order_id', sa.String(length=36), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_quantity', sa.String(length=48), nullable=True),
    sa.Column('requested_quote_amount', sa.String(length=48), nullable=True),
    sa.Column('executed_quantity', sa.String(length=48), nullable=False),
    sa.Column('quote_quantity', sa.String(length=48), nullable=False),
    sa.Column('price', sa.String(length=48), nullable=True),
    sa.Column('reference_price', sa.String(length=48), nullable=True),
    sa.Column('price_source', sa.String(length=16), nullable=True),
    sa.Column('fee', sa.String(length=48), nullable=False),
    sa.Column('fee_asset', sa.String(length=16), nullable=True),
    sa.Column('realised_pnl', sa.String(length=48), nullable=False),
    sa.Column('reject_code', sa.Integer(), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.Column('exchange_order_id', sa.String(length=32), nullable=True),
    sa.Column('decision_id', sa.String(length=64), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_trade_orders_mode'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mode', 'client_order_id', name='uq_trade_orders_mode_client_order_id')
    )
    with op.batch_alter_table('trade_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trade_orders_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_trade_orders_decision_id'), ['decision_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trade_orders_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_trade_orders_symbol'), ['symbol'], unique=False)

    op.create_table('trading_accounts',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('quote_asset', sa.String(length=16), nullable=False),
    sa.Column('initial_balance', sa.String(length=48), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reset_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_trading_accounts_mode'),
    sa.PrimaryKeyConstraint('mode')
    )
    op.create_table('trading_balances',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.String(length=48), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_trading_balances_mode'),
    sa.PrimaryKeyConstraint('mode', 'asset')
    )
    op.create_table('trading_controls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('halted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('trading_positions',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('base_asset', sa.String(length=16), nullable=False),
    sa.Column('quote_asset', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.String(length=48), nullable=False),
    sa.Column('cost_basis', sa.String(length=48), nullable=False),
    sa.Column('avg_entry_price', sa.String(length=48), nullable=False),
    sa.Column('realised_pnl', sa.String(length=48), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_trading_positions_mode'),
    sa.PrimaryKeyConstraint('mode', 'symbol')
    )


def downgrade() -> None:
    op.drop_table('trading_positions')
    op.drop_table('trading_controls')
    op.drop_table('trading_balances')
    op.drop_table('trading_accounts')
    with op.batch_alter_table('trade_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trade_orders_symbol'))
        batch_op.drop_index(batch_op.f('ix_trade_orders_status'))
        batch_op.drop_index(batch_op.f('ix_trade_orders_decision_id'))
        batch_op.drop_index(batch_op.f('ix_trade_orders_created_at'))

    op.drop_table('trade_orders')
