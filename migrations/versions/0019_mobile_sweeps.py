"""The layered measures' reports (jpki.mobile.sweep): each run of the smartphone sweep and what
it did, item by item; and the index its passes over silent devices read.

Numbered three above the head this branch started from (0014), then, once main had taken 0016
and 0018, the next free number, chained to main's head (0018); the lead rechains at merge.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mobile_sweeps',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('flag_after_days', sa.Integer(), nullable=False),
    sa.Column('hold_after_days', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mobile_sweeps'))
    )
    with op.batch_alter_table('mobile_sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mobile_sweeps_started_at'), ['started_at'],
                              unique=False)
    op.create_table('mobile_sweep_items',
    sa.Column('sweep_id', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['sweep_id'], ['mobile_sweeps.id'],
                            name=op.f('fk_mobile_sweep_items_sweep_id_mobile_sweeps')),
    sa.PrimaryKeyConstraint('sweep_id', 'action', 'subject',
                            name=op.f('pk_mobile_sweep_items'))
    )
    with op.batch_alter_table('mobile_devices', schema=None) as batch_op:
        batch_op.create_index('ix_mobile_devices_status_last_seen', ['status', 'last_seen_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mobile_devices', schema=None) as batch_op:
        batch_op.drop_index('ix_mobile_devices_status_last_seen')
    op.drop_table('mobile_sweep_items')
    with op.batch_alter_table('mobile_sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mobile_sweeps_started_at'))
    op.drop_table('mobile_sweeps')
