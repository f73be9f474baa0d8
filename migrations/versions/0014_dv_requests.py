"""Requests to set or lift DV support measures, decided by a second person
(jpki.registry.dv_support).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dv_requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('turn_on', sa.Boolean(), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('decided_by', sa.String(length=128), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'],
                            name=op.f('fk_dv_requests_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dv_requests'))
    )
    with op.batch_alter_table('dv_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dv_requests_resident_id'), ['resident_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_dv_requests_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dv_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dv_requests_status'))
        batch_op.drop_index(batch_op.f('ix_dv_requests_resident_id'))

    op.drop_table('dv_requests')
