"""Work counters give enrolment stations, and what the stations report
(jpki.registry.station_tasks).

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('station_tasks',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('station', sa.String(length=128), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('proofing', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('serials', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'],
                            name=op.f('fk_station_tasks_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station_tasks'))
    )
    with op.batch_alter_table('station_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_station_tasks_resident_id'), ['resident_id'],
                              unique=False)
        batch_op.create_index('ix_station_tasks_queue', ['station', 'status', 'created_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('station_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_station_tasks_queue')
        batch_op.drop_index(batch_op.f('ix_station_tasks_resident_id'))
    op.drop_table('station_tasks')
