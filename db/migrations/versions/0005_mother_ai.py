"""mother_ai: predictions, decisions, equity snapshots and daily-loss state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('decisions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('symbols', sa.JSON(), nullable=False),
    sa.Column('action', sa.String(length=4), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=True),
    sa.Column('size_quote', sa.String(length=48), nullable=True),
    sa.Column('size_fraction', sa.Float(), nullable=True),
    sa.Column('executed', sa.Boolean(), nullable=False),
    sa.Column('client_order_id', sa.String(length=36), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('order_status', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_decisions_mode'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mode', 'client_order_id', name='uq_decisions_mode_client_order_id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_created_at'), ['created_at'], unique=False)

    op.create_table('equity_snapshots',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('equity', sa.String(length=48), nullable=False),
    sa.Column('realised', sa.String(length=48), nullable=False),
    sa.Column('unrealised', sa.String(length=48), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_equity_snapshots_mode'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('equity_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_equity_snapshots_mode_time', ['mode', 'time'], unique=False)

    op.create_table('predictions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('agent', sa.String(length=40), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('interval', sa.String(length=4), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.String(length=40), nullable=False),
    sa.Column('as_of', sa.BigInteger(), nullable=False),
    sa.Column('prob_up', sa.Float(), nullable=False),
    sa.Column('action', sa.String(length=4), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('expected_return', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decision_id', sa.String(length=32), nullable=True),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('realised_return', sa.Float(), nullable=True),
    sa.Column('hit', sa.Boolean(), nullable=True),
    sa.Column('brier', sa.Float(), nullable=True),
    sa.Column('follow_pnl', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_agent_as_of', ['agent', 'as_of'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_decision_id'), ['decision_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_resolved'), ['resolved'], unique=False)

    op.create_table('risk_days',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('start_equity', sa.String(length=48), nullable=False),
    sa.Column('baseline_equity', sa.String(length=48), nullable=False),
    sa.Column('breached_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('paper', 'live')", name='ck_risk_days_mode'),
    sa.PrimaryKeyConstraint('mode', 'day')
    )


def downgrade() -> None:
    op.drop_table('risk_days')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictions_resolved'))
        batch_op.drop_index(batch_op.f('ix_predictions_decision_id'))
        batch_op.drop_index(batch_op.f('ix_predictions_created_at'))
        batch_op.drop_index('ix_predictions_agent_as_of')

    op.drop_table('predictions')
    with op.batch_alter_table('equity_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_equity_snapshots_mode_time')

    op.drop_table('equity_snapshots')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_created_at'))

    op.drop_table('decisions')
