"""replays: Mother AI replay results and their decision chunks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replays',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('symbols', sa.JSON(), nullable=False),
    sa.Column('interval', sa.String(length=4), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=False),
    sa.Column('end_time', sa.BigInteger(), nullable=False),
    sa.Column('n_steps', sa.Integer(), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('series', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('replays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replays_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_replays_job_id'), ['job_id'], unique=False)

    op.create_table('replay_chunks',
    sa.Column('replay_id', sa.String(length=32), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('first_step', sa.Integer(), nullable=False),
    sa.Column('n_steps', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['replay_id'], ['replays.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('replay_id', 'chunk')
    )


def downgrade() -> None:
    op.drop_table('replay_chunks')
    with op.batch_alter_table('replays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replays_job_id'))
        batch_op.drop_index(batch_op.f('ix_replays_created_at'))

    op.drop_table('replays')
